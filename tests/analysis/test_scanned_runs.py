"""A run with scanned layers (config.model.scan_layers) as the analysis sees it: its trainer
checkpoint keeps the stacked layout, its locality measures are the unrolled model's, and a config
of the other layout stops with one line naming the field."""

import os

import jax
import numpy as np
import optax
import pytest
from analysis_tiny import random_images
from conftest import tiny_run_config

from vit_jax_stems.analysis import locality, locality_report, sources
from vit_jax_stems.models import layers_layout
from vit_jax_stems.train import checkpointing, train_state

STEP = 2


def scanned_config():
  config = tiny_run_config()
  config.model.scan_layers = True
  return config


@pytest.fixture(scope='module')
def scanned_run_dir(tmp_path_factory):
  """A trainer-layout run dir of the tiny ConViT with scan_layers: config.json and one checkpoint
  written by the trainer's Checkpointer (weights moved away from the init)."""
  config = scanned_config()
  model = train_state.model_from_config(config, num_classes=10)
  init = train_state.make_init_fn(model, optax.adamw(1e-3), with_ema=False)
  state = jax.device_get(jax.jit(init)(jax.random.PRNGKey(config.seed)))
  rng = np.random.RandomState(0)
  noise = lambda x: x + 0.05 * rng.standard_normal(x.shape).astype(x.dtype)
  state = dict(state, step=np.int32(STEP), params=jax.tree_util.tree_map(noise, state['params']))
  workdir = str(tmp_path_factory.mktemp('scanned_run'))
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort(indent=2))
  ckpt = checkpointing.Checkpointer(
    os.path.join(workdir, 'checkpoints'), keep=2, asynchronous=False
  )
  ckpt.save(STEP, state)
  ckpt.close()
  return workdir


def _assert_measures_close(a, b, path='measures'):
  if isinstance(a, dict):
    assert set(a) == set(b), path
    for key in a:
      _assert_measures_close(a[key], b[key], f'{path}.{key}')
  elif isinstance(a, list) and a and not isinstance(a[0], (int, float)):
    assert len(a) == len(b), path
    for i, (x, y) in enumerate(zip(a, b)):
      _assert_measures_close(x, y, f'{path}[{i}]')
  elif isinstance(a, (float, list)) and a is not None:
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-5, atol=1e-6)
  else:
    assert a == b, path


def test_checkpoint_of_a_scanned_run_is_stacked_and_the_analysis_reads_it(scanned_run_dir):
  saved = sources._saved_tree(os.path.join(scanned_run_dir, 'checkpoints', str(STEP)))
  assert set(saved['params']['encoder']) == {'gpsa_blocks', 'mhsa_blocks'}
  run = sources.from_checkpoint(scanned_run_dir)
  assert run.model.spec.scan_layers and layers_layout.is_stacked(run.variables)
  images = random_images(run.model)
  scanned = locality.measure(run.model, run.variables, images)
  assert [layer['kind'] for layer in scanned['layers']] == ['gpsa', 'gpsa', 'mhsa']
  # The same weights per block in the unrolled model: the same measures (GPSA ones included).
  per_block = layers_layout.unstack_blocks(run.variables, run.model.spec)
  unrolled = locality.measure(layers_layout.unrolled_model(run.model), per_block, images)
  _assert_measures_close(scanned, unrolled)
  assert 'gate' in scanned['layers'][0]


def test_a_config_of_the_other_layout_stops_with_one_line(scanned_run_dir, tmp_path):
  config = tiny_run_config()  # the same model, per block
  with pytest.raises(checkpointing.CheckpointError) as info:
    checkpointing.check_same_model(config, scanned_run_dir)
  message = str(info.value)
  assert 'config.model.scan_layers: True there, False in --config' in message
  assert '\n' not in message and len(message) < 250 + 2 * len(scanned_run_dir)  # path twice
  with pytest.raises(checkpointing.CheckpointError, match='scan_layers'):
    locality_report.run_locality(config, scanned_run_dir, num_images=3, out_dir=str(tmp_path))
  assert os.listdir(tmp_path) == []


def test_a_run_of_before_scan_layers_is_the_unrolled_layout(tiny_run_dir):
  """tiny_run_dir's config.json has no scan_layers: it is the per-block model, so a config that
  spells scan_layers=False out resumes it and one with True does not."""
  config = tiny_run_config()
  config.model.scan_layers = False
  checkpointing.check_same_model(config, tiny_run_dir)
  with pytest.raises(checkpointing.CheckpointError, match='scan_layers: False there, True in'):
    checkpointing.check_same_model(scanned_config(), tiny_run_dir)
