"""The trainer: one run of `main.py --mode train`, readable top to bottom.

Sections follow the data flow: checks; mesh, model, durations, optimizer and the sharded
state (`run_setup.py`, shared with `--mode eval`); update step; checkpoint load (resume /
converted weights); input; evaluators and writers; loop. Everything that runs per step is a pure function under jax.jit; Python only
decides when to log, evaluate, save and stop.
"""

import time

import jax
import numpy as np
from absl import logging
from etils import epath

from vit_jax_stems import data, mfu, models
from vit_jax_stems.data import device_augment
from vit_jax_stems.train import (
  checkpointing,
  config_checks,
  evaluate,
  metrics,
  precise_bn,
  pretrained,
  run_setup,
  sharding,
  steps,
  train_state,
)


class NonFiniteLossError(FloatingPointError):
  """The loss or the gradients became NaN/inf at `step`; the run stopped without saving that
  state (a sweep counts the run as diverged)."""

  def __init__(self, message, step=None):
    super().__init__(message)
    self.step = step


def check_config(config, info=None):
  """All config checks, before anything is compiled; returns the dataset info (`info` given:
  that one, for a run on synthetic batches that reads no dataset)."""
  if config.init_weights:
    try:  # a wrong path stops here, before the dataset is read and anything compiled
      pretrained.is_run(config.init_weights)
    except FileNotFoundError as e:
      raise config_checks.ConfigError(str(e)) from None
  info = info or data.get_dataset_info(config.data)
  config_checks.check(
    config,
    model_names=models.list_models(),
    spec_fn=lambda: train_state.spec_from_config(config, info.num_classes),
  )
  evaluate.check_evals(config, info.num_classes)
  return info


def jit_train_step(config, setup, augment):
  """The update step as the loop runs it: jitted over the run's shardings, the state donated."""
  replicated = jax.sharding.NamedSharding(setup.mesh, jax.sharding.PartitionSpec())
  return jax.jit(
    steps.make_train_step(
      setup.model,
      setup.tx,
      setup.lr_schedule,
      setup.plan,
      config.ema,
      augment,
      head_only=config.linear_probe,
    ),
    in_shardings=(setup.state_shardings, setup.batch_sharding),
    out_shardings=(setup.state_shardings, replicated),
    donate_argnums=(0,),
  )


def train_and_evaluate(config, workdir, *, train_batches=None):
  """Trains (resuming from `workdir` if it holds checkpoints) and evaluates; returns the last
  train and eval metrics. `train_batches`: an iterator of host batches to train on instead of the
  input pipeline's (vit_jax_stems/bench/host_overhead.py times the loop so)."""
  # ------------------------------------------------------------------ Checks, logging
  info = check_config(config)
  workdir = epath.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  logging.info(
    'Devices: %d (%s) over %d processes',
    jax.device_count(),
    jax.devices()[0].device_kind,
    jax.process_count(),
  )

  # ------------------------------------------------------------------ Mesh, model, optimizer, state
  setup = run_setup.make_run_setup(config, info)
  mesh, model, spec, plan = setup.mesh, setup.model, setup.spec, setup.plan
  state_shardings, batch_sharding = setup.state_shardings, setup.batch_sharding
  logging.info('Plan: %s', plan)
  macs = models.complexity.count(spec)['flops']
  peak, peak_source = mfu.peak_for(jax.devices()[0].device_kind, config.dtype)

  # ------------------------------------------------------------------ Update step
  augment = device_augment.DeviceAugment.from_config(config.data, info.num_classes)
  train_step = jit_train_step(config, setup, augment)

  # ------------------------------------------------------------------ Checkpoint load or init
  ckpt = checkpointing.Checkpointer(
    workdir / 'checkpoints', keep=config.keep_checkpoints, asynchronous=config.async_checkpoints
  )
  if ckpt.latest_step() is not None:
    checkpointing.check_same_model(config, workdir)
  restored = ckpt.restore_newest(
    checkpointing.abstract_like(setup.abstract_state, state_shardings), set_aside_bad=True
  )
  if restored is not None:
    logging.info('Resuming from checkpoint step %d in %s', restored[0], ckpt.directory)
    state = restored[1]
  else:
    state = jax.jit(setup.init_fn, out_shardings=state_shardings)(jax.random.PRNGKey(config.seed))
    if config.init_weights:
      state = _start_from_converted(state, config.init_weights, state_shardings, spec)
  start_step = int(jax.device_get(state['step']))
  if jax.process_index() == 0:  # after the checks above: a workdir of another run keeps its own
    (workdir / checkpointing.CONFIG_JSON).write_text(config.to_json_best_effort(indent=2))

  # ------------------------------------------------------------------ Input
  if train_batches is None:
    train_batches = data.make_train_iterator(
      config.data, global_batch_size=plan.micro_batch, seed=config.seed, start_step=start_step
    )
  train_iter = precise_bn.PeekableIterator(train_batches)

  # ------------------------------------------------------------------ Evaluators, writers
  evaluator = evaluate.Evaluators(config, model, mesh)  # config.data.eval_split and config.evals
  writer = metrics.create_writer(workdir, start_step=start_step)
  progress = metrics.ProgressPrinter(plan.total_steps, start_step)
  report, hooks = metrics.periodic_hooks(
    workdir,
    total_steps=plan.total_steps,
    every_steps=plan.log_every,
    profile_first_step=config.profile_first_step,
    profile_steps=config.profile_num_steps,
  )
  hooks.append(progress.step_finished)
  if start_step == 0 and jax.process_index() == 0:
    writer.write_hparams({k: v for k, v in config.items() if isinstance(v, (int, float, str))})
  mfu_note = f'MFU vs {peak_source}' if peak else peak_source
  logging.info('%s; %.3f GMACs/image (pycls count)', mfu_note, macs / 1e9)

  use_precise_bn = config.precise_bn_samples > 0 and bool(
    jax.tree_util.tree_leaves(state['batch_stats'])
  )
  if use_precise_bn:
    bn_stats = jax.jit(precise_bn.make_batch_stats_fn(model, augment, spec.batch_norm_momentum))

  def with_precise_bn(state, step):
    """pycls: BN statistics recomputed over the next training batches, raw and EMA, before eval."""
    if not use_precise_bn:
      return state
    with report.timed('precise_bn'):
      n = precise_bn.num_batches(config.precise_bn_samples, plan.micro_batch)
      batches = [sharding.global_batch(b, batch_sharding) for b in train_iter.peek(n)]
      key = precise_bn.precise_bn_key(state['rng'], step)
      state = dict(state)
      state['batch_stats'] = jax.device_put(
        precise_bn.precise_batch_stats(
          bn_stats, train_state.variables_of(state, 'params'), batches, key
        ),
        state_shardings['batch_stats'],
      )
      if 'ema' in state:
        ema_stats = precise_bn.precise_batch_stats(
          bn_stats, train_state.variables_of(state, 'ema'), batches, key
        )
        state['ema'] = dict(
          state['ema'], batch_stats=jax.device_put(ema_stats, state_shardings['ema']['batch_stats'])
        )
    return state

  def run_eval(step):
    names = {'params': train_state.variables_of(state, 'params')}
    if config.ema.enabled:
      names['ema'] = train_state.variables_of(state, 'ema')
    with report.timed('eval'):
      result = evaluator(names)
    writer.write_scalars(step, {f'eval/{k}': v for k, v in result.items()})
    shown = {k: v for k, v in result.items() if k.endswith('top1') or k.endswith('top5')}
    progress(step, {f'eval {k}': v for k, v in shown.items()})
    return result

  # ------------------------------------------------------------------ Loop
  last = {'train': {}, 'eval': {}, 'stopped': None}
  if start_step == 0 and config.eval_at_start:  # the starting weights: a fine-tune's "before"
    last['start'] = run_eval(0)
  window, prev = [], None
  t_window, s_window = time.monotonic(), start_step

  def check_finite(m, step):
    if not bool(jax.device_get(m['finite'])):
      ckpt.wait()
      good = ckpt.latest_step()
      ckpt.close()
      writer.flush()
      message = _non_finite_message(step, float(m['loss']), good, ckpt, config)
      raise NonFiniteLossError(message, step)

  with checkpointing.PreemptionWatch(ckpt) as preemption:
    for step in range(start_step + 1, plan.total_steps + 1):
      with jax.profiler.StepTraceAnnotation('train', step_num=step):
        batch = sharding.global_batch(next(train_iter), batch_sharding)
        state, m = train_step(state, batch)
      if prev is not None:  # one step in flight: check the previous step's loss
        check_finite(prev, step - 1)
      prev = m
      window.append(m)
      for hook in hooks:
        hook(step)

      if step % plan.log_every == 0 or step == plan.total_steps:
        check_finite(m, step)
        means = {
          k: float(np.mean([float(x) for x in v]))
          for k, v in jax.device_get(
            {k: [w[k] for w in window] for k in window[0] if k != 'finite'}
          ).items()
        }
        dt = time.monotonic() - t_window
        img_s = (step - s_window) * plan.micro_batch / max(dt, 1e-9)
        row = {f'train/{k}': v for k, v in means.items()}
        row.update(
          {
            'train/images_per_sec': img_s,
            'train/images_per_sec_per_device': img_s / jax.device_count(),
            'train/epoch': step / plan.accum / plan.steps_per_epoch,
            'train/steps_averaged': len(window),  # fewer than log_every after a resume
          }
        )
        if peak:
          images = (step - s_window) * plan.micro_batch
          row['train/mfu'] = mfu.mfu(mfu.train_flops(macs, images), dt, peak, jax.device_count())
        writer.write_scalars(step, row)
        shown = dict(means, **{'img/s': img_s, 'MFU': row.get('train/mfu', 'n/a')})
        progress(step, shown)
        last['train'] = row
        window, t_window, s_window = [], time.monotonic(), step

      if plan.evaluates_at(step):
        state = with_precise_bn(state, step)
        last['eval'] = run_eval(step)
        t_window = time.monotonic()  # eval time is not training throughput

      if step == plan.total_steps:  # before the final save: `--mode eval` sees the same stats
        state = with_precise_bn(state, step)
      preempted = preemption.should_stop(step)
      if preempted or plan.saves_at(step):
        check_finite(m, step)
        ckpt.save(step, state)
      if preempted:
        ckpt.wait()
        logging.warning('Preempted: saved checkpoint step %d; exiting cleanly.', step)
        print(
          f'Preempted at step {step}: checkpoint saved in {ckpt.directory}; '
          'rerun the same command to resume.',
          flush=True,
        )
        last['stopped'] = f'preempted at step {step}'
        break

  if last['stopped'] is None:
    last['eval'] = run_eval(plan.total_steps)
    if 'start' in last and jax.process_index() == 0:
      print(_before_and_after(last['start'], last['eval'], plan.total_steps), flush=True)
  ckpt.close()
  writer.flush()
  return last


def _before_and_after(start, end, steps):
  """One line for a run that evaluated its starting weights (config.eval_at_start)."""
  shown = [
    f'{name} {100 * start[f"{name}_top1"]:.1f}% -> {100 * end[f"{name}_top1"]:.1f}%'
    for name in ('params', 'ema')
    if f'{name}_top1' in end
  ]
  return f'top-1 of the starting weights -> after {steps} steps: ' + ', '.join(shown)


def _non_finite_message(step, loss, good, ckpt, config):
  saved = (
    f'the last good checkpoint is step {good} in {ckpt.directory} (rerunning resumes there)'
    if good is not None
    else 'there is no checkpoint yet'
  )
  return (
    f'Non-finite loss or gradient at step {step} (loss={loss}); stopping. The state of step '
    f'{step} was not saved; {saved}. To train on, lower config.optimizer.lr (now '
    f'{config.optimizer.lr}) or lengthen the warmup (config.schedule.warmup_*), or set '
    f'config.optimizer.grad_clip_norm (now {config.optimizer.grad_clip_norm}).'
  )


def _start_from_converted(state, directory, shardings, spec):
  """Replaces params / BN stats (and the EMA copy) by converted weights (fine-tuning start)."""
  _, loaded = pretrained.load(directory)
  init = {'params': state['params'], 'batch_stats': state['batch_stats']}
  host = jax.device_get(init)
  merged = pretrained.merge(host, loaded, source=directory, spec=spec)
  merged.setdefault('batch_stats', {})
  state = dict(state)
  state['params'] = jax.device_put(merged['params'], shardings['params'])
  state['batch_stats'] = jax.device_put(merged['batch_stats'], shardings['batch_stats'])
  if 'ema' in state:
    state['ema'] = jax.device_put(
      {'params': merged['params'], 'batch_stats': merged['batch_stats']}, shardings['ema']
    )
  logging.info('Started from converted weights in %s', directory)
  return state
