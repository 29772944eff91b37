"""Evaluation: top-1/top-5 over a whole split, every example counted exactly once.

The input pipeline pads the last batch and marks padding with mask=False; the eval step sums
correct predictions over the global (sharded) batch, so the counts are exact on any number of
devices and processes. Also `--mode eval`: evaluate a workdir's latest checkpoint, or
converted PyTorch weights, on a split.
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

  def __init__(self, model, data_cfg, *, split, batch_size, mesh):
    self.data_cfg = data_cfg
    self.split = split
    self.batch_size = batch_size
    self.batch_sharding = sharding.batch_sharding(mesh)
    self._step = jax.jit(steps.make_eval_step(model, data_cfg.mean, data_cfg.std))

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


def run(config, workdir, *, split=None):
  """`--mode eval`: the workdir's latest checkpoint, else `config.init_weights`."""
  split = split or config.data.eval_split
  info = data.get_dataset_info(config.data)
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
  evaluator = Evaluator(
    model, config.data, split=split, batch_size=config.eval_batch_size, mesh=mesh
  )
  result = evaluator(variables)
  lines = [
    f'Evaluated {source} on split {split!r}: {result["eval_count"]} examples '
    f'({time.time() - t0:.1f}s)'
  ]
  for name in variables:
    lines.append(
      f'  {name:6s} top-1 {100 * result[f"{name}_top1"]:.2f}%  '
      f'top-5 {100 * result[f"{name}_top5"]:.2f}%'
    )
  if jax.process_index() == 0:
    print('\n'.join(lines), flush=True)
  logging.info('eval result: %s', result)
  return result
