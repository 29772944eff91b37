"""The setup shared by training and `--mode eval`, the FSDP size floor and its log, and the
trainer's MFU from the shared peak table."""

import ast
import logging
import os

import fake_data
import jax
import numpy as np
import pytest
import tiny

from vit_jax_stems import mfu, models
from vit_jax_stems.train import evaluate, metrics, run_setup, sharding, train_state, trainer

MIB = 2**20
TRAIN = os.path.dirname(os.path.abspath(run_setup.__file__))


def _imports(path):
  names = set()
  for node in ast.walk(ast.parse(open(path).read())):
    if isinstance(node, ast.ImportFrom):
      names |= {f'{node.module}.{a.name}' for a in node.names}
    elif isinstance(node, ast.Import):
      names |= {a.name for a in node.names}
  return names


def test_evaluate_and_trainer_do_not_import_each_other_but_share_the_setup():
  evaluate_imports = _imports(os.path.join(TRAIN, 'evaluate.py'))
  assert 'vit_jax_stems.train.trainer' not in evaluate_imports  # anywhere, lazily included
  assert 'vit_jax_stems.train.run_setup' in evaluate_imports
  assert 'vit_jax_stems.train.run_setup' in _imports(os.path.join(TRAIN, 'trainer.py'))


def test_run_setup_is_the_trainers_state_and_initial_variables_are_its_init():
  c = tiny.tiny_config('vitc')
  c.num_devices = 1
  info = fake_data.get_dataset_info(c.data)
  setup = run_setup.make_run_setup(c, info)
  assert setup.spec.num_classes == info.num_classes
  assert setup.plan.total_steps == c.total_steps and setup.mesh.devices.size == 1
  assert jax.tree_util.tree_structure(setup.state_shardings) == jax.tree_util.tree_structure(
    setup.abstract_state
  )
  state = jax.jit(setup.init_fn)(jax.random.PRNGKey(c.seed))
  variables = train_state.initial_variables(setup.model, c.seed)
  for a, b in zip(
    jax.tree_util.tree_leaves(state['params']), jax.tree_util.tree_leaves(variables['params'])
  ):
    np.testing.assert_array_equal(a, b)
  other_seed = train_state.initial_variables(setup.model, c.seed + 1)['params']
  assert not np.array_equal(
    state['params']['stem']['conv0']['kernel'], other_seed['stem']['conv0']['kernel']
  )


def _plans(tree, min_mb, mesh_cfg=(('data', 2), ('fsdp', 4))):
  mesh = sharding.make_mesh(mesh_cfg)
  plans = sharding.plan_leaves(tree, mesh, (('.*', 'fsdp'),), min_size_to_shard_mb=min_mb)
  flat = {
    p.name: p
    for p in jax.tree_util.tree_leaves(plans, is_leaf=lambda x: isinstance(x, sharding.LeafPlan))
  }
  return mesh, plans, flat


TREE = {
  'big': jax.ShapeDtypeStruct((1024, 2048), np.float32),  # 8 MiB
  'at_floor': jax.ShapeDtypeStruct((1024, 1024), np.float32),  # 4 MiB exactly
  'small': jax.ShapeDtypeStruct((512, 512), np.float32),  # 1 MiB
  'odd': jax.ShapeDtypeStruct((3, 5 * MIB // 12), np.float32),  # 5 MiB, no dimension % 4 == 0
}


def test_fsdp_leaves_up_to_the_floor_stay_replicated():
  _, _, flat = _plans(TREE, 4.0)
  assert flat['big'].spec == jax.sharding.PartitionSpec(None, 'fsdp')
  assert flat['at_floor'].spec == jax.sharding.PartitionSpec()  # big_vision: <= the floor
  assert flat['at_floor'].replicated_because == sharding.SMALL
  assert flat['small'].spec == jax.sharding.PartitionSpec()
  assert flat['odd'].replicated_because == sharding.INDIVISIBLE
  _, _, flat = _plans(TREE, 0.5)  # a lower floor splits the 1 MiB and 4 MiB leaves too
  assert flat['small'].spec == jax.sharding.PartitionSpec(None, 'fsdp')  # ties: the last
  assert flat['at_floor'].spec == jax.sharding.PartitionSpec(None, 'fsdp')
  _, _, flat = _plans(TREE, 0.0, (('data', 8), ('fsdp', 1)))
  assert {p.replicated_because for p in flat.values()} == {sharding.NO_FSDP_AXIS}


def test_the_sharding_log_names_split_and_unsplittable_leaves():
  mesh, plans, _ = _plans(TREE, 4.0)
  lines = sharding.describe(plans, mesh, min_size_to_shard_mb=4.0)
  assert lines[0].startswith("Train state over mesh {'data': 2, 'fsdp': 4}: 1 leaf (8.00 MiB)")
  assert '2 leaves (5.00 MiB) at most min_size_to_shard_mb=4' in lines[0]
  assert '1 leaf (5.00 MiB) no dimension divisible' in lines[0]
  assert lines[1:] == [
    '  split over fsdp along dimension 1: big (1024, 2048)',
    f'  could not be split (no dimension divisible by 4): odd (3, {5 * MIB // 12})',
  ]


def test_the_run_logs_its_sharding_once(caplog):
  c = tiny.equivalence_config((('data', 2), ('fsdp', 4)))
  with caplog.at_level(logging.INFO):
    setup = run_setup.make_run_setup(c, fake_data.get_dataset_info(c.data))
  logged = [r.getMessage() for r in caplog.records if 'Train state over mesh' in r.getMessage()]
  assert len(logged) == 1
  assert '  split over fsdp along dimension 1: params/encoder/block00/mlp/fc1/kernel' in logged[0]
  assert 'could not be split (no dimension divisible by 4): step ()' in logged[0]
  kernel = setup.state_shardings['params']['encoder']['block00']['mlp']['fc1']['kernel']
  assert kernel.spec == jax.sharding.PartitionSpec(None, 'fsdp')
  c.min_size_to_shard_mb = 4.0  # the default: every leaf of the tiny model stays whole
  setup = run_setup.make_run_setup(c, fake_data.get_dataset_info(c.data))
  kernel = setup.state_shardings['params']['encoder']['block00']['mlp']['fc1']['kernel']
  assert kernel.spec == jax.sharding.PartitionSpec()


def test_trainer_mfu_divides_by_the_shared_peak_table(tmp_path, monkeypatch):
  asked = []

  def peak_for(device_kind, dtype):
    asked.append((device_kind, dtype))
    return 0.001, 'a nominal peak for this test'

  monkeypatch.setattr(mfu, 'peak_for', peak_for)
  monkeypatch.setattr(trainer, 'data', fake_data)
  monkeypatch.setattr(evaluate, 'data', fake_data)
  c = tiny.tiny_config('vitp', steps=2)
  c.num_devices, c.log_every_steps = 1, 1
  trainer.train_and_evaluate(c, str(tmp_path))
  assert asked == [(jax.devices()[0].device_kind, 'float32')]
  macs = models.complexity.count(train_state.spec_from_config(c, fake_data.NUM_CLASSES))['flops']
  rows = [r for r in metrics.read_jsonl(tmp_path / 'metrics.jsonl') if 'train/mfu' in r]
  assert len(rows) == 2
  for r in rows:
    # 6 x MACs x images/s over 0.001 TFLOP/s per device (the trainer divides by every device).
    want = 6 * macs * r['train/images_per_sec'] / (1e9 * jax.device_count())
    assert r['train/mfu'] == pytest.approx(want, rel=1e-6)
