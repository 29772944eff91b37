"""K trials of one model and recipe trained as one compiled program: the trainer's train step,
`jax.vmap`ped over the stacked train states of the trials.

Why: a demo-size model leaves most of an accelerator idle, and K trials in one step fill it with
one input pipeline and one dispatch per step instead of K. On a CPU the step is already
compute-bound and grouping does not pay; `grouped_pays` measures which is faster on the device at
hand (`vit_jax_stems/sweep/bench.py` prints the whole table).

What the trials of a group share, and what is theirs:
- shared: everything in the config but `PER_TRIAL_FIELDS` (model, optimizer, schedule shape,
  batch, durations, augmentation), and the input batches: one pipeline, seeded with the base
  config's seed, so every trial sees the same images in the same order (common random numbers,
  a paired comparison).
- per trial: the peak lr and the weight decay, arrays in each trial's optimizer state
  (`optimizer.make_injected_optimizer`), and `seed` (the initial weights and the step keys of
  dropout and augmentation) when a trial sets it; by default every trial starts from the same
  weights and draws the same augmentation.

The group state is {'step': micro-steps done (the data position, as the trainer's 'step'),
'alive': bool (K,), 'trials': the trainer's train state with a leading axis of size K}. A trial
whose loss or gradient norm becomes non-finite is frozen from that step on (its update is
dropped and `alive` turns false) and reported as diverged, at error 100% as P1 counts it; the
others go on. Checkpoints of the group state go to `group_workdir/checkpoints` every
config.checkpoint_every_*; a killed group resumes from the newest one exactly.

A trial of a group ends with the weights of the same trial trained alone by
`trainer.train_and_evaluate` up to float rounding: the forward pass is bit-identical, but the
weight gradients become batched dots that XLA sums in another order (tests/sweep/test_grouped.py
states the tolerance). Runs on any mesh of config.mesh: the trial axis is whole on every device,
the batch and FSDP splits are the trainer's.
"""

import copy
import dataclasses
import json
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from etils import epath
from flax import traverse_util

from vit_jax_stems import data
from vit_jax_stems.data import device_augment
from vit_jax_stems.sweep import runner
from vit_jax_stems.sweep import trials as trials_lib
from vit_jax_stems.train import (
  checkpointing,
  config_checks,
  evaluate,
  metrics,
  precise_bn,
  run_setup,
  sharding,
  steps,
  train_state,
  trainer,
)
from vit_jax_stems.train import optimizer as optimizer_lib

# The config fields that may differ between the trials of a group.
PER_TRIAL_FIELDS = ('optimizer.lr', 'optimizer.weight_decay', 'seed')
GROUP_JSON = 'group.json'  # the trials of a group workdir (ids and overrides)
# The keys of a trial dict (COMMON design of vit_jax_stems.sweep) copied into its result.
_TRIAL_KEYS = ('trial_id', 'index', 'model', 'optimizer', 'epochs', 'overrides', 'group')


class Preempted(Exception):
  """SIGTERM arrived: the group saved a checkpoint and stopped; rerunning resumes it."""


# ---------------------------------------------------------------------- configs of a group
def trial_config(base_config, overrides):
  """A copy of `base_config` with the trial's dotted `overrides` ({'optimizer.lr': 1e-3})."""
  return trials_lib.apply_overrides(copy.deepcopy(base_config), overrides)


def _flat(config):
  return traverse_util.flatten_dict(config.to_dict(), sep='.')


def check_group(configs):
  """ConfigError naming the first field outside PER_TRIAL_FIELDS where two trials differ."""
  first = _flat(configs[0])
  for i, config in enumerate(configs[1:], 1):
    other = _flat(config)
    for field in sorted(set(first) | set(other)):
      if field not in PER_TRIAL_FIELDS and first.get(field) != other.get(field):
        raise config_checks.ConfigError(
          f'Trials 0 and {i} of a group differ in config.{field} ({first.get(field)!r} vs '
          f'{other.get(field)!r}); a group may differ only in {", ".join(PER_TRIAL_FIELDS)}. '
          'Put them in separate groups or train them sequentially.'
        )


# ---------------------------------------------------------------------- the program
@dataclasses.dataclass(frozen=True)
class GroupProgram:
  """The jitted K-trial step and what builds, shards and restores its state."""

  setup: run_setup.RunSetup  # of the shared config (the single-trial pieces)
  configs: tuple  # one config per trial
  augment: device_augment.DeviceAugment
  init_one: Any  # jitted rng -> one trial's state (the group optimizer's opt_state)
  one_shardings: Any  # NamedSharding per leaf of one trial's state
  shardings: Any  # NamedSharding per leaf of the group state
  abstract: Any  # ShapeDtypeStructs of the group state
  step: Any  # jitted (group state, batch) -> (group state, metrics with a leading K axis)
  take: Any  # jitted (group state, i) -> trial i's train state, sharded as a lone trial's

  @property
  def k(self):
    return len(self.configs)

  def initial_state(self):
    """The group state at step 0: each trial initialised as the trainer initialises it alone
    (jit of the same init function, PRNGKey(trial seed)), with its own peak lr and weight decay."""
    states = []
    for config in self.configs:
      state = self.init_one(jax.random.PRNGKey(config.seed))
      hyper = {
        'peak_lr': jnp.asarray(
          optimizer_lib.base_lr(config.optimizer, config.batch_size), jnp.float32
        ),
        'weight_decay': jnp.asarray(config.optimizer.weight_decay, jnp.float32),
      }
      state['opt_state'] = state['opt_state']._replace(hyperparams=hyper)
      states.append(state)
    trials = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *states)
    group = {
      'step': jnp.zeros((), jnp.int32),
      'alive': jnp.ones((self.k,), bool),
      'trials': trials,
    }
    return jax.device_put(group, self.shardings)


def _stacked(s):
  """The sharding of a leaf with a leading trial axis: that axis whole on every device."""
  return jax.sharding.NamedSharding(s.mesh, jax.sharding.PartitionSpec(None, *s.spec))


def _per_trial(mask, x):
  """`mask` (K,) broadcast against `x` (K, ...)."""
  return mask.reshape(mask.shape + (1,) * (x.ndim - 1))


def make_program(config, info, configs, *, donate=True):
  """The GroupProgram of trials `configs` (checked with check_group) sharing `config`'s recipe."""
  setup = run_setup.make_run_setup(config, info)
  plan, mesh = setup.plan, setup.mesh

  def schedule_of_peak(peak):
    return run_setup.lr_schedule_of(config, plan, peak)

  tx = optimizer_lib.make_injected_optimizer(
    config.optimizer,
    schedule_of_peak,
    peak_lr=optimizer_lib.base_lr(config.optimizer, config.batch_size),
  )
  init_fn = train_state.make_init_fn(setup.model, tx, with_ema=config.ema.enabled)
  one_abstract = jax.eval_shape(init_fn, jax.random.PRNGKey(0))
  one_shardings = sharding.tree_shardings(
    one_abstract,
    mesh,
    config.sharding_rules,
    min_size_to_shard_mb=config.min_size_to_shard_mb,
  )
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  shardings = {
    'step': replicated,
    'alive': replicated,
    'trials': jax.tree_util.tree_map(_stacked, one_shardings),
  }
  k = len(configs)
  abstract = {
    'step': jax.ShapeDtypeStruct((), jnp.int32),
    'alive': jax.ShapeDtypeStruct((k,), jnp.bool_),
    'trials': jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct((k, *x.shape), x.dtype), one_abstract
    ),
  }
  augment = device_augment.DeviceAugment.from_config(config.data, info.num_classes)
  one_step = steps.make_train_step(setup.model, tx, setup.lr_schedule, plan, config.ema, augment)

  def group_step(group, batch):
    new, out = jax.vmap(one_step, in_axes=(0, None))(group['trials'], batch)
    alive = group['alive'] & out['finite']
    trials = jax.tree_util.tree_map(
      lambda n, o: jnp.where(_per_trial(alive, n), n, o), new, group['trials']
    )
    peaks = group['trials']['opt_state'].hyperparams['peak_lr']
    opt_step = group['step'] // plan.accum
    out['lr'] = jax.vmap(lambda peak: schedule_of_peak(peak)(opt_step))(peaks)
    return {'step': group['step'] + 1, 'alive': alive, 'trials': trials}, out

  step = jax.jit(
    group_step,
    in_shardings=(shardings, setup.batch_sharding),
    out_shardings=(shardings, replicated),
    donate_argnums=(0,) if donate else (),
  )
  return GroupProgram(
    setup=setup,
    configs=tuple(configs),
    augment=augment,
    init_one=jax.jit(init_fn, out_shardings=one_shardings),
    one_shardings=one_shardings,
    shardings=shardings,
    abstract=abstract,
    step=step,
    take=jax.jit(
      lambda group, i: jax.tree_util.tree_map(lambda x: x[i], group['trials']),
      out_shardings=one_shardings,
    ),
  )


# ---------------------------------------------------------------------- training
def _check_same_group(workdir, trials):
  """CheckpointError when `workdir` holds another group's checkpoints; else writes group.json."""
  path = epath.Path(workdir) / GROUP_JSON
  mine = [{'trial_id': t.get('trial_id'), 'overrides': t['overrides']} for t in trials]
  if path.exists():
    there = json.loads(path.read_text())
    if there != json.loads(json.dumps(mine)):
      raise checkpointing.CheckpointError(
        f'{workdir} holds another group of trials ({path} lists '
        f'{[t["trial_id"] for t in there]}); pass another group workdir.'
      )
  elif jax.process_index() == 0:
    path.write_text(json.dumps(mine, indent=2))


def _previous_wall_s(workdir, start_step):
  """The wall time the group had spent up to `start_step` (its metrics.jsonl rows)."""
  path = epath.Path(workdir) / 'metrics.jsonl'
  if not start_step or not path.exists():
    return 0.0
  rows = [r for r in metrics.read_jsonl(path) if r['step'] <= start_step and 'wall_s' in r]
  return rows[-1]['wall_s'] if rows else 0.0


def _masked(values, alive):
  """Per-trial values as a JSON list, None where the trial has diverged."""
  return [float(v) if a else None for v, a in zip(values, alive)]


def train_group(base_config, trials, group_workdir):
  """Trains `trials` (dicts with 'overrides' on `base_config`) as one vmapped program in
  `group_workdir`, resuming from its checkpoints; returns one result dict per trial, in order.

  Result keys: the trial's own keys, 'final_error' / 'best_error' (percent, of the weights the
  recipe evaluates: EMA when config.ema.enabled, else raw), 'final_error_raw', 'final_error_ema'
  (None without EMA), 'diverged', 'steps' (micro-steps trained; of a diverged trial the good
  steps before the non-finite one), 'wall_s' (the group's wall time / K: the time each trial
  cost) and 'execution': 'grouped'. Raises Preempted after saving on SIGTERM.
  """
  t_start = time.monotonic()
  # ------------------------------------------------------------------ Checks, before any compile
  if not trials:
    raise ValueError('train_group needs at least one trial.')
  configs = [trial_config(base_config, t['overrides']) for t in trials]
  for c in configs:
    info = trainer.check_config(c)
  check_group(configs)
  config = copy.deepcopy(configs[0])
  config.seed = base_config.seed  # the input pipeline's seed, shared by the group
  if config.init_weights or config.linear_probe:
    raise config_checks.ConfigError(
      'Grouped training trains every weight from a random start; unset config.init_weights and '
      'config.linear_probe, or train these trials sequentially (--execution sequential).'
    )
  if config_checks.eval_entries(config):
    raise config_checks.ConfigError(
      'Grouped training evaluates config.data.eval_split only; unset config.evals or train '
      'these trials sequentially.'
    )
  workdir = epath.Path(group_workdir)
  workdir.mkdir(parents=True, exist_ok=True)

  # ------------------------------------------------------------------ Program, state
  program = make_program(config, info, configs)
  setup, k = program.setup, program.k
  plan, model = setup.plan, setup.model
  logging.info('Group of %d trials in %s; plan: %s', k, workdir, plan)
  ckpt = checkpointing.Checkpointer(
    workdir / 'checkpoints', keep=config.keep_checkpoints, asynchronous=config.async_checkpoints
  )
  if ckpt.latest_step() is not None:
    checkpointing.check_same_model(config, workdir)
  _check_same_group(workdir, trials)
  restored = ckpt.restore_newest(
    checkpointing.abstract_like(program.abstract, program.shardings), set_aside_bad=True
  )
  if restored is not None:
    logging.info('Resuming the group from checkpoint step %d in %s', restored[0], ckpt.directory)
    state = restored[1]
  else:
    state = program.initial_state()
  start_step = int(jax.device_get(state['step']))
  if jax.process_index() == 0:
    (workdir / checkpointing.CONFIG_JSON).write_text(config.to_json_best_effort(indent=2))
  wall_before = _previous_wall_s(workdir, start_step)

  # ------------------------------------------------------------------ Input, evaluator, writer
  train_iter = precise_bn.PeekableIterator(
    data.make_train_iterator(
      config.data, global_batch_size=plan.micro_batch, seed=config.seed, start_step=start_step
    )
  )
  evaluator = evaluate.Evaluator(
    model,
    config.data,
    split=config.data.eval_split,
    batch_size=config.eval_batch_size,
    mesh=setup.mesh,
  )
  writer = (
    metrics.JsonlWriter(workdir / 'metrics.jsonl', start_step) if jax.process_index() == 0 else None
  )
  progress = metrics.ProgressPrinter(plan.total_steps, start_step)
  names = ('params', 'ema') if config.ema.enabled else ('params',)

  with_precise_bn = _precise_bn(program, config, names, train_iter)

  def run_eval(state, step):
    """Top-1 / top-5 of each live trial's raw and EMA weights; None for diverged trials."""
    alive = np.asarray(jax.device_get(state['alive']))
    variables = {}
    for i in np.flatnonzero(alive):
      one = program.take(state, i)
      for name in names:
        variables[f'{i}/{name}'] = train_state.variables_of(one, name)
    result = evaluator(variables) if variables else {}
    row = {'eval_count': result.get('eval_count')}
    for name in names:
      for metric in ('top1', 'top5'):
        row[f'eval/{name}_{metric}'] = [
          result[f'{i}/{name}_{metric}'] if alive[i] else None for i in range(k)
        ]
    if writer:
      writer.write_scalars(step, row)
    shown = [v for v in row[f'eval/{names[-1]}_top1'] if v is not None]
    progress(step, {f'eval {names[-1]} top1 (best)': max(shown) if shown else 'n/a'})
    return row

  # ------------------------------------------------------------------ Loop
  window = []
  with checkpointing.PreemptionWatch(ckpt) as preemption:
    for step in range(start_step + 1, plan.total_steps + 1):
      batch = sharding.global_batch(next(train_iter), setup.batch_sharding)
      state, m = program.step(state, batch)
      window.append(m)
      progress.step_finished(step)
      if step % plan.log_every == 0 or step == plan.total_steps:
        got = jax.device_get({'window': window, 'alive': state['alive']})
        alive = got['alive']
        means = {
          key: np.mean([w[key] for w in got['window']], axis=0)
          for key in window[0]
          if key != 'finite'
        }
        row = {f'train/{key}': _masked(v, alive) for key, v in means.items()}
        row['alive'] = [bool(a) for a in alive]
        row['wall_s'] = wall_before + time.monotonic() - t_start
        if writer:
          writer.write_scalars(step, row)
        live = [v for v in row['train/loss'] if v is not None]
        progress(
          step,
          {
            'loss (mean of live trials)': np.mean(live) if live else 'n/a',
            'live': f'{sum(alive)}/{len(alive)}',
          },
        )
        window = []
      if plan.evaluates_at(step):
        state = with_precise_bn(state, step)
        run_eval(state, step)
      if step == plan.total_steps:
        state = with_precise_bn(state, step)
      preempted = preemption.should_stop(step)
      if preempted or plan.saves_at(step):
        ckpt.save(step, state)
      if preempted:
        ckpt.close()
        if writer:
          writer.close()
        raise Preempted(
          f'Preempted at step {step}: the group checkpoint is saved in {ckpt.directory}; '
          'rerun the same command to resume.'
        )

  final = run_eval(state, plan.total_steps)
  ckpt.close()
  if writer:
    writer.close()
  wall_s = wall_before + time.monotonic() - t_start
  # Every evaluation of the group, those before a resume included (process 0 wrote them).
  jsonl = workdir / 'metrics.jsonl'
  evals = [r for r in metrics.read_jsonl(jsonl) if 'eval_count' in r] if jsonl.exists() else []
  alive = np.asarray(jax.device_get(state['alive']))
  trial_steps = np.asarray(jax.device_get(state['trials']['step']))
  return [
    _result(
      trials[i],
      i,
      final,
      evals or [final],
      diverged=not alive[i],
      steps=int(trial_steps[i]),
      ema=config.ema.enabled,
      wall_s=wall_s / k,
    )
    for i in range(k)
  ]


def _precise_bn(program, config, names, train_iter):
  """with_precise_bn(state, step): the trainer's precise BN (before each eval and the final
  save) for every live trial at once, over the same peeked training batches; `state` unchanged
  when it is off or the model has no BatchNorm."""
  setup = program.setup
  has_bn = bool(jax.tree_util.tree_leaves(program.abstract['trials']['batch_stats']))
  if config.precise_bn_samples <= 0 or not has_bn:
    return lambda state, step: state
  stats_fn = precise_bn.make_batch_stats_fn(
    setup.model, program.augment, setup.spec.batch_norm_momentum
  )
  n = precise_bn.num_batches(config.precise_bn_samples, setup.plan.micro_batch)

  @jax.jit
  def new_stats(group, batches, step):
    def one(trial):
      key = precise_bn.precise_bn_key(trial['rng'], step)
      return {
        name: precise_bn.precise_batch_stats(
          stats_fn, train_state.variables_of(trial, name), batches, key
        )
        for name in names
      }

    stats = jax.vmap(one)(group['trials'])
    keep = lambda new, old: jnp.where(_per_trial(group['alive'], new), new, old)
    trials = dict(group['trials'])
    trials['batch_stats'] = jax.tree_util.tree_map(keep, stats['params'], trials['batch_stats'])
    if 'ema' in trials:
      ema_stats = jax.tree_util.tree_map(keep, stats['ema'], trials['ema']['batch_stats'])
      trials['ema'] = dict(trials['ema'], batch_stats=ema_stats)
    return dict(group, trials=trials)

  def with_precise_bn(state, step):
    batches = [sharding.global_batch(b, setup.batch_sharding) for b in train_iter.peek(n)]
    return jax.device_put(new_stats(state, batches, step), program.shardings)

  return with_precise_bn


def _result(trial, i, final, evals, *, diverged, steps, ema, wall_s):
  """Trial `i`'s result from the group's eval rows (per-trial lists), as runner.make_result
  makes it for a lone trial."""
  rows = [*evals, final]  # the best over every evaluation; the final one last
  names = ('params_top1', 'ema_top1')
  per_trial = [{k: r[f'eval/{k}'][i] for k in names if f'eval/{k}' in r} for r in rows]
  result = runner.make_result(
    {key: trial.get(key) for key in _TRIAL_KEYS},
    evals=per_trial,
    diverged=diverged,
    steps=steps,
    wall_s=wall_s,
    execution='grouped',
    ema_enabled=ema,
  )
  return result


# ---------------------------------------------------------------------- grouped or sequential
def _pays_key(config, k):
  """What the answer depends on: the device, the model and its input, and K."""
  return (
    f'{jax.devices()[0].device_kind} x{jax.device_count()} | {config.model_name} '
    f'{json.dumps(config.model.to_dict(), sort_keys=True)} | image {config.data.image_size} | '
    f'batch {config.batch_size} | {config.dtype} | {config.optimizer.name} | k {k}'
  )


def grouped_pays(base_config, k, cache_path=None, *, num_steps=3):
  """True when K trials in one vmapped step make more trial-steps per second on this device than
  K single-trial steps one after the other; timed over `num_steps` steps of each after compiling.

  The answer and its figures are cached in the JSON file `cache_path` (keyed by the device, the
  model, the input size, the batch and K), so a sweep measures it once.
  """
  from vit_jax_stems.sweep import bench  # pylint: disable=g-import-not-at-top  # bench imports us

  key = _pays_key(base_config, k)
  path = epath.Path(cache_path) if cache_path else None
  cache = json.loads(path.read_text()) if path and path.exists() else {}
  if key in cache:
    logging.info('grouped_pays (cached in %s): %s', path, cache[key])
    return cache[key]['grouped_pays']
  figures = bench.measure(base_config, k, num_steps=num_steps)
  answer = dict(figures, grouped_pays=figures['grouped'] > figures['sequential'])
  logging.info(
    'K=%d: grouped %.2f vs sequential %.2f trial-steps/s (%.2fx): %s',
    k,
    figures['grouped'],
    figures['sequential'],
    figures['grouped'] / figures['sequential'],
    'grouped' if answer['grouped_pays'] else 'sequential',
  )
  if path:
    cache[key] = answer
    trials_lib.write_json_atomic(path, cache)
  return answer['grouped_pays']
