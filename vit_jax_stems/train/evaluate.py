"""Evaluation: top-1/top-5 over a whole split, every example counted exactly once.

The input pipeline pads the last batch and marks padding with mask=False; the eval step sums
correct predictions over the global (sharded) batch, so the counts are exact on any number of
devices and processes. Also `--mode eval`: evaluate a workdir's latest checkpoint, or
converted PyTorch weights, on a split.

Besides the run's own split (config.data.eval_split: metrics `params_top1`, `params_top5`,
`ema_top1`, `ema_top5`, `eval_count`), every entry (dataset, split, name) of config.evals is
evaluated with the same weights, reported as `<name>/top1`, `<name>/top5` (raw weights),
`<name>/ema_top1`, `<name>/ema_top5` (EMA weights, when config.ema.enabled) and `<name>/count`
(the examples counted); the trainer writes each under `eval/`. How ImageNet's variants are
scored: vit_jax_stems/data/eval_sets.py.
"""

import time

import jax
import jax.numpy as jnp
from absl import logging

from vit_jax_stems import data
from vit_jax_stems.train import (
  checkpointing,
  config_checks,
  pretrained,
  run_setup,
  sharding,
  steps,
  train_state,
)


class Evaluator:
  """Runs a jitted eval step over `split` of `data_cfg` for one or more sets of variables."""

  def __init__(self, model, data_cfg, *, split, batch_size, mesh, classes=None):
    self.data_cfg = data_cfg
    self.split = split
    self.batch_size = batch_size
    self.classes = classes  # predict among these classes only (steps.make_eval_step)
    self.batch_sharding = sharding.batch_sharding(mesh)
    self._step = jax.jit(steps.make_eval_step(model, data_cfg.mean, data_cfg.std, classes))

  def __call__(self, variables_by_name):
    """{name: variables} -> {f'{name}_top1', f'{name}_top5'} and 'eval_count'."""
    sums = {name: None for name in variables_by_name}
    it = data.make_eval_iterator(self.data_cfg, split=self.split, global_batch_size=self.batch_size)
    for local_batch in it:
      batch = sharding.global_batch(local_batch, self.batch_sharding)
      for name, variables in variables_by_name.items():
        out = self._step(variables, batch)
        sums[name] = out if sums[name] is None else jax.tree_util.tree_map(jnp.add, sums[name], out)
    result = {}
    for name, s in sums.items():
      s = jax.device_get(s)
      count = round(float(s['count']))
      result[f'{name}_top1'] = float(s['top1']) / max(count, 1)
      result[f'{name}_top5'] = float(s['top5']) / max(count, 1)
      result['eval_count'] = count
    return result


def eval_metric(name, weights, metric):
  """The key of `metric` ('top1', 'top5') of config.evals entry `name` for one set of weights:
  'v2/top1' for the raw weights ('params'), 'v2/ema_top1' for the EMA's."""
  return f'{name}/{metric}' if weights == 'params' else f'{name}/{weights}_{metric}'


def _eval_set(config, entry, i):
  """(data config, EvalSetInfo, how messages name it) of config.evals[i] = `entry`, checked to be
  prepared."""
  data_cfg = data.eval_data_config(
    config.data, dataset=entry.dataset, split=entry.split, data_dir=entry.data_dir
  )
  where = f'config.evals[{i}] ({entry.name!r}: dataset {entry.dataset!r}, split {entry.split!r})'
  info = data.get_eval_set_info(
    data_cfg,
    where=where,
    name_field=f"config.evals[{i}]'s dataset",
    data_dir_field=f"config.evals[{i}]'s data_dir (a 4th element)",
  )
  return data_cfg, info, where


def check_evals(config, num_classes):
  """Every entry of config.evals names a prepared dataset and split whose labels are classes of
  the run's dataset (`num_classes`); a short error naming the entry otherwise. Before compiling."""
  for i, entry in enumerate(config_checks.eval_entries(config)):
    _, info, where = _eval_set(config, entry, i)
    if info.num_classes != num_classes:
      raise config_checks.ConfigError(
        f'{where}: its labels are {info.num_classes} classes, the model predicts the '
        f'{num_classes} of {config.data.name!r}; evaluate on a dataset with the same classes.'
      )


class Evaluators:
  """The run's own split (`split`, default config.data.eval_split) and each of config.evals;
  called as Evaluator is, it returns the metrics named in the module docstring."""

  def __init__(self, config, model, mesh, *, split=None):
    batch_size = config.eval_batch_size
    split = split or config.data.eval_split
    self.own = Evaluator(model, config.data, split=split, batch_size=batch_size, mesh=mesh)
    self.extra = {}
    for i, entry in enumerate(config_checks.eval_entries(config)):
      data_cfg, info, _ = _eval_set(config, entry, i)
      self.extra[entry.name] = Evaluator(
        model, data_cfg, split=entry.split, batch_size=batch_size, mesh=mesh, classes=info.classes
      )

  def __call__(self, variables_by_name):
    result = self.own(variables_by_name)
    for name, evaluator in self.extra.items():
      sub = evaluator(variables_by_name)
      for weights in variables_by_name:
        for metric in ('top1', 'top5'):
          result[eval_metric(name, weights, metric)] = sub[f'{weights}_{metric}']
      result[f'{name}/count'] = sub['eval_count']
    return result


def run(config, workdir, *, split=None):
  """`--mode eval`: the workdir's latest checkpoint, else `config.init_weights`."""
  split = split or config.data.eval_split
  info = data.get_dataset_info(config.data)
  check_evals(config, info.num_classes)
  ckpt = checkpointing.Checkpointer(f'{workdir}/checkpoints', keep=config.keep_checkpoints)
  step = ckpt.latest_step()
  if step is not None:
    checkpointing.check_same_model(config, workdir)
    setup = run_setup.make_run_setup(config, info)
    model, mesh = setup.model, setup.mesh
    _, state = ckpt.restore_newest(
      checkpointing.abstract_like(setup.abstract_state, setup.state_shardings)
    )
    variables = {'params': train_state.variables_of(state, 'params')}
    if 'ema' in state:
      variables['ema'] = train_state.variables_of(state, 'ema')
    source = f'checkpoint step {int(jax.device_get(state["step"]))} in {workdir}'
  elif config.init_weights:
    model, loaded = pretrained.load(config.init_weights, image_size=config.data.image_size)
    mesh = run_setup.make_mesh(config)
    shardings = sharding.tree_shardings(
      loaded, mesh, config.sharding_rules, min_size_to_shard_mb=config.min_size_to_shard_mb
    )
    variables = {'params': jax.device_put(loaded, shardings)}
    source = f'converted weights {config.init_weights}'
  else:
    raise config_checks.ConfigError(
      f'Nothing to evaluate: no checkpoint under {workdir}/checkpoints and '
      'config.init_weights is not set.'
    )
  ckpt.close()
  t0 = time.time()
  evaluators = Evaluators(config, model, mesh, split=split)
  result = evaluators(variables)
  lines = [
    f'Evaluated {source} on split {split!r}: {result["eval_count"]} examples '
    f'({time.time() - t0:.1f}s)'
  ]
  for name in variables:
    lines.append(
      f'  {name:6s} top-1 {100 * result[f"{name}_top1"]:.2f}%  '
      f'top-5 {100 * result[f"{name}_top5"]:.2f}%'
    )
  for evals_name, evaluator in evaluators.extra.items():
    lines.append(
      f'{evals_name} ({evaluator.data_cfg.name} {evaluator.split!r}): '
      f'{result[f"{evals_name}/count"]} examples'
    )
    for name in variables:
      top1, top5 = (result[eval_metric(evals_name, name, m)] for m in ('top1', 'top5'))
      lines.append(f'  {name:6s} top-1 {100 * top1:.2f}%  top-5 {100 * top5:.2f}%')
  if jax.process_index() == 0:
    print('\n'.join(lines), flush=True)
  logging.info('eval result: %s', result)
  return result
