"""Loading runs / weights and the locality report command."""

import json
import math
import os

import jax
import numpy as np
import pytest
from conftest import STEPS, tiny_run_config

from vit_jax_stems.analysis import locality_report, sources


def leaves_equal(a, b):
  flat_a = jax.tree_util.tree_leaves_with_path(a)
  flat_b = dict(jax.tree_util.tree_leaves_with_path(b))
  assert [p for p, _ in flat_a] == list(flat_b)
  return all(np.array_equal(np.asarray(x), np.asarray(flat_b[p])) for p, x in flat_a)


def test_checkpoints_restore_the_saved_weights(tiny_run_dir):
  assert sources.checkpoint_steps(tiny_run_dir) == list(STEPS)
  from vit_jax_stems.train import checkpointing  # the trainer's own full restore, as reference

  run = sources.from_checkpoint(tiny_run_dir)  # latest
  assert run.step == STEPS[-1]
  ema = sources.from_checkpoint(tiny_run_dir, STEPS[0], which='ema')
  manager = checkpointing.Checkpointer(os.path.join(tiny_run_dir, 'checkpoints'), keep=5)
  import orbax.checkpoint as ocp

  for step, got, key in ((STEPS[-1], run, 'params'), (STEPS[0], ema, 'ema')):
    saved = manager._mngr.restore(step, args=ocp.args.StandardRestore())
    expected = saved['params'] if key == 'params' else saved['ema']['params']
    assert leaves_equal(got.variables['params'], expected)
  manager.close()
  with pytest.raises(ValueError, match='No checkpoint step 3'):
    sources.from_checkpoint(tiny_run_dir, 3)


def test_init_of_run_is_the_trainers_init(tiny_run_init_params):
  run = sources.init_of_run(tiny_run_config(), num_classes=10)
  assert leaves_equal(run.variables['params'], tiny_run_init_params)


def test_report_of_a_run_writes_json_and_figures(tiny_run_dir, tmp_path):
  out = locality_report.run_locality(None, tiny_run_dir, num_images=3, out_dir=str(tmp_path))
  names = sorted(os.path.basename(p) for p in out['figures'])
  assert names == [
    'attention_maps_r2_c2.png',
    'attention_maps_r4_c4.png',
    'gates.png',
    'locality_over_training.png',
    'nonlocality.png',
  ]
  for path in out['figures']:
    with open(path, 'rb') as f:
      assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  with open(tmp_path / 'locality.json') as f:
    report = json.load(f)
  assert report['step'] == STEPS[-1]
  assert report['images'].startswith('mnist5k:test')
  assert [h['step'] for h in report['history']] == [0, *STEPS]
  # The fixture moved gating_param by -step: the gate measured at each step says so.
  for entry in report['history']:
    gates = entry['measures']['layers'][0]['gate']
    np.testing.assert_allclose(gates, 1 / (1 + math.exp(-(1 - entry['step']))), rtol=1e-5)
  assert report['history'][-1]['measures'] == report['measures']


def test_report_of_converted_weights(tiny_weights_dir, tmp_path):
  out = locality_report.run_locality(
    None, str(tmp_path), weights_dir=tiny_weights_dir, num_images=3
  )
  names = sorted(os.path.basename(p) for p in out['figures'])
  assert names == ['attention_maps_r1_c1.png', 'attention_maps_r2_c2.png', 'nonlocality.png']
  layers = out['measures']['layers']
  assert all(layer['has_class_token'] and 'gate' not in layer for layer in layers)


def test_missing_sources_say_what_to_do(tmp_path):
  with pytest.raises(FileNotFoundError, match='train first'):
    locality_report.run_locality(None, str(tmp_path))
  with pytest.raises(FileNotFoundError, match=r'config\.json'):
    sources.read_run_config(str(tmp_path))
  with pytest.raises(ValueError, match='not both'):
    locality_report.run_locality(None, str(tmp_path), weights_dir='x', arch='vit_p_1gf')


def test_command_line_parsing():
  assert locality_report._parse_queries('1,2;0,3') == [(1, 2), (0, 3)]
  with pytest.raises(SystemExit):
    locality_report.main(['--workdir', 'x', '--weights', 'a', '--arch', 'b'])


def test_a_config_of_another_model_stops_before_anything_is_read_or_written(tiny_run_dir, tmp_path):
  from vit_jax_stems.train import checkpointing

  config = tiny_run_config()
  config.model.depth += 1
  with pytest.raises(checkpointing.CheckpointError, match=r'config\.model\.depth: \d there'):
    locality_report.run_locality(config, tiny_run_dir, num_images=3, out_dir=str(tmp_path))
  assert os.listdir(tmp_path) == []
