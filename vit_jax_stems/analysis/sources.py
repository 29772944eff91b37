"""Where the analysed weights come from: a trainer workdir, converted weights, or a fresh init.

The one place that knows the trainer's on-disk layout, kept thin so it follows that layout:
  workdir/config.json              the run's config (ConfigDict JSON, written by the trainer)
  workdir/checkpoints/<step>/      orbax CheckpointManager steps of the train state
                                   {'step', 'rng', 'params', 'batch_stats', 'opt_state'[, 'ema']}
Only 'params', 'batch_stats' (and 'ema' on request) are read back (orbax partial restore onto one
device), so the optimizer is never rebuilt. Converted PyTorch weights go through
`vit_jax_stems.weights.load_weights`. Every source gives a `Run(model, variables, label, step)`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from vit_jax_stems import models
from vit_jax_stems.train import train_state

CHECKPOINTS_DIR = 'checkpoints'
CONFIG_JSON = 'config.json'


@dataclasses.dataclass
class Run:
  """A model with its variables, ready for `locality.measure`."""

  model: Any
  variables: Any
  label: str
  step: int | None = None


# ----------------------------------------------------------------------------- configs
def read_run_config(workdir: str) -> dict:
  """workdir/config.json as a dict (the trainer writes it when a run starts)."""
  path = os.path.join(workdir, CONFIG_JSON)
  if not os.path.isfile(path):
    raise FileNotFoundError(
      f'No {CONFIG_JSON} in workdir {workdir!r}: it is not a training run directory. Pass '
      '--config (main.py), or --weights DIR for converted weights, or --arch for a fresh init.'
    )
  with open(path) as f:
    return json.load(f)


# ----------------------------------------------------------------------------- trainer checkpoints
def checkpoint_steps(workdir: str) -> list[int]:
  """Finished checkpoint steps in workdir/checkpoints (orbax step dirs), ascending."""
  directory = os.path.join(workdir, CHECKPOINTS_DIR)
  if not os.path.isdir(directory):
    return []
  manager = ocp.CheckpointManager(
    os.path.abspath(directory), options=ocp.CheckpointManagerOptions(create=False)
  )
  try:
    return sorted(int(s) for s in manager.all_steps())
  finally:
    manager.close()


def _saved_tree(step_dir: str) -> dict:
  """Shapes and dtypes of the saved state (orbax metadata; nothing is read)."""
  absl_logger = logging.get_absl_logger()
  level = absl_logger.level
  # "Metadata file does not exist": the manager writes it
  absl_logger.setLevel(logging.converter.absl_to_standard(logging.ERROR))
  try:  # one level up; the item's tree metadata is all we need
    metadata = ocp.StandardCheckpointer().metadata(os.path.join(step_dir, 'default'))
  finally:
    absl_logger.setLevel(level)
  return metadata.item_metadata.tree


def from_checkpoint(
  workdir: str, step: int | None = None, *, config=None, which: str = 'params'
) -> Run:
  """The variables of one trainer checkpoint (default: the latest).

  `which`: 'params' (the raw weights) or 'ema' (the EMA copy that pycls evaluates; only in runs
  with config.ema.enabled). `config`: the run's config; default workdir/config.json.
  """
  if which not in ('params', 'ema'):
    raise ValueError(f"which={which!r}: use 'params' or 'ema'.")
  steps = checkpoint_steps(workdir)
  if not steps:
    raise FileNotFoundError(f'No checkpoints under {os.path.join(workdir, CHECKPOINTS_DIR)!r}.')
  step = steps[-1] if step is None else int(step)
  if step not in steps:
    raise ValueError(f'No checkpoint step {step} in {workdir!r}; steps: {steps}.')
  config = read_run_config(workdir) if config is None else config
  step_dir = os.path.join(os.path.abspath(workdir), CHECKPOINTS_DIR, str(step))
  saved = _saved_tree(step_dir)
  source = saved if which == 'params' else saved.get('ema')
  if source is None:
    raise ValueError(
      f"Checkpoint {step_dir} has no EMA weights (config.ema.enabled was off); use which='params'."
    )

  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  to_struct = lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=device)
  target = {
    key: jax.tree_util.tree_map(to_struct, dict(source.get(key) or {}))
    for key in ('params', 'batch_stats')
  }
  item = target if which == 'params' else {'ema': target}
  manager = ocp.CheckpointManager(
    os.path.dirname(step_dir), options=ocp.CheckpointManagerOptions(create=False)
  )
  try:
    restored = manager.restore(
      step,
      args=ocp.args.PyTreeRestore(
        item=item,
        restore_args=ocp.checkpoint_utils.construct_restore_args(item),
        partial_restore=True,
      ),
    )
  finally:
    manager.close()
  restored = restored if which == 'params' else restored['ema']
  variables = {'params': restored['params']}
  if restored.get('batch_stats'):
    variables['batch_stats'] = restored['batch_stats']

  num_classes = int(np.shape(variables['params']['head']['bias'])[0])
  model = train_state.model_from_config(config, num_classes, dtype='float32')
  from vit_jax_stems import weights  # pylint: disable=g-import-not-at-top

  weights.check_variables(model, variables)
  return Run(model, variables, f'step {step} ({which})', step)


def init_of_run(config, num_classes: int) -> Run:
  """The run's weights at step 0, re-created as the trainer creates them."""
  model = train_state.model_from_config(config, num_classes, dtype='float32')
  variables = train_state.initial_variables(model, int(config.get('seed', 0)))
  return Run(model, variables, 'step 0 (init)', 0)


# ----------------------------------------------------------------------------- other sources
def from_weights(weights_dir: str) -> Run:
  """Converted weights (`python -m vit_jax_stems.convert`): a weights directory with model.json."""
  from vit_jax_stems import weights  # pylint: disable=g-import-not-at-top

  model, variables = weights.load_weights(weights_dir)
  return Run(model, variables, os.path.basename(os.path.normpath(weights_dir)))


_jitted_init = jax.jit(models.init_variables, static_argnums=0)


def fresh_variables(model, key) -> Any:
  """`models.init_variables` under jit (eager init is slow), compiled once per model."""
  return _jitted_init(model, key)


def from_arch(arch: str, *, seed: int = 0, **overrides: Any) -> Run:
  """A freshly initialised `models.create_model(arch, **overrides)` (e.g. ConViT's local init)."""
  model = models.create_model(arch, **overrides)
  return Run(
    model, fresh_variables(model, jax.random.PRNGKey(seed)), f'{arch} init (seed {seed})', 0
  )
