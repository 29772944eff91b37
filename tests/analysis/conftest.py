"""Session fixtures: a tiny trainer-layout run directory and a tiny converted-weights directory.

The run directory is written with the trainer's own `Checkpointer` and config JSON (the state
pytree of `train_state.make_init_fn`), without training, so the tests stay fast.
"""

import os
import sys

import jax
import numpy as np
import optax
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
for path in (ROOT, HERE):
  if path not in sys.path:
    sys.path.insert(0, path)

from analysis_tiny import TINY, tiny_model  # noqa: E402

STEPS = (2, 4)


def tiny_run_config():
  """configs/convit.py:demo shrunk to the tiny ConViT of analysis_tiny (32x32 mnist5k)."""
  from ml_collections import ConfigDict  # pylint: disable=g-import-not-at-top

  from configs import convit  # pylint: disable=g-import-not-at-top

  config = convit.get_config('demo')
  overrides = dict(TINY['convit'][1])
  config.data.image_size = overrides.pop('image_size')
  overrides.pop('num_classes')
  config.model = ConfigDict(overrides)
  config.seed = 3
  return config


@pytest.fixture(scope='session')
def tiny_run_state0():
  return make_tiny_run_state0()


@pytest.fixture(scope='session')
def tiny_run_dir(tmp_path_factory, tiny_run_state0):
  return write_tiny_run(str(tmp_path_factory.mktemp('tiny_run')), tiny_run_state0)


def make_tiny_run_state0():
  """The train state at step 0 of `tiny_run_config`, from the trainer's `make_init_fn`."""
  from vit_jax_stems.train import train_state  # pylint: disable=g-import-not-at-top

  config = tiny_run_config()
  model = train_state.model_from_config(config, num_classes=10)
  init = train_state.make_init_fn(model, optax.adamw(1e-3), with_ema=True)
  return jax.device_get(jax.jit(init)(jax.random.PRNGKey(config.seed)))


def write_tiny_run(workdir, state0):
  """A run dir like the trainer's: config.json and checkpoints at STEPS (params drifting away
  from the init, an EMA copy that differs from them)."""
  from vit_jax_stems.train import checkpointing  # pylint: disable=g-import-not-at-top

  config = tiny_run_config()
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort(indent=2))
  state = state0
  ckpt = checkpointing.Checkpointer(
    os.path.join(workdir, 'checkpoints'), keep=5, asynchronous=False
  )
  rng = np.random.RandomState(0)
  for step in STEPS:
    noise = lambda x: x + 0.05 * rng.standard_normal(x.shape).astype(x.dtype)
    state = dict(state, step=np.int32(step), params=jax.tree_util.tree_map(noise, state['params']))
    state['ema'] = {
      'params': jax.tree_util.tree_map(lambda x: 0.5 * x, state['params']),
      'batch_stats': state['batch_stats'],
    }
    # Gates that visibly move towards content attention: lambda = 1 - step.
    attn = state['params']['encoder']['block00']['attn']
    attn['gating_param'] = np.full_like(attn['gating_param'], 1.0 - step)  # init: lambda = 1
    ckpt.save(step, state)
  ckpt.close()
  return workdir


@pytest.fixture(scope='session')
def tiny_run_init_params(tiny_run_state0):
  """The params at step 0 of the run of `tiny_run_config`, made by the trainer's init fn."""
  return tiny_run_state0['params']


@pytest.fixture(scope='session')
def tiny_weights_dir(tmp_path_factory):
  """The tiny ViT_C of analysis_tiny saved as converted weights (weights.save_weights)."""
  from vit_jax_stems import weights  # pylint: disable=g-import-not-at-top

  arch, overrides = TINY['vit_c']
  _, variables = tiny_model('vit_c')
  return weights.save_weights(
    str(tmp_path_factory.mktemp('tiny_weights')),
    arch,
    jax.device_get(variables),
    overrides=overrides,
  )
