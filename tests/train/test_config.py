"""Configs, checks, schedules, weight-decay masks, EMA and sharding rules (no training)."""

import math

import jax
import numpy as np
import pytest

from configs import convit, vitc, vitp
from vit_jax_stems import models
from vit_jax_stems.train import config_checks, durations, ema, optimizer, sharding, train_state


def _check(c, num_devices=8):
  config_checks.check(
    c,
    num_devices=num_devices,
    num_processes=1,
    model_names=models.list_models(),
    spec_fn=lambda: train_state.spec_from_config(c, 1000),
  )


@pytest.mark.parametrize(
  'module,arg',
  [
    (vitc, None),
    (vitc, 'size=4gf'),
    (vitc, 'size=18gf,optimizer=sgd'),
    (vitc, 'size=36gf'),
    (vitc, 'size=72gf'),
    (vitc, 'tuned,epochs=100'),
    (vitc, 'demo'),
    (vitc, 'demo,dataset=cluttered_mnist5k'),
    (vitp, None),
    (vitp, 'size=4gf,optimizer=sgd'),
    (vitp, 'demo'),
    (vitp, 'demo,dataset=cluttered_mnist5k'),
    (convit, None),
    (convit, 'size=b_plus'),
    (convit, 'size=s,stem=conv'),
    (convit, 'demo'),
    (convit, 'demo,dataset=cluttered_mnist5k'),
  ],
)
def test_every_config_option_passes_the_checks(module, arg):
  _check(module.get_config(arg))


def test_paper_recipes_match_spec():
  c = vitc.get_config('size=4gf')
  assert (c.model_name, c.batch_size, c.total_epochs) == ('vit_c_4gf', 2048, 400)
  assert (c.optimizer.lr, c.optimizer.weight_decay) == (1e-3, 0.24)
  assert (c.schedule.warmup_epochs, c.schedule.warmup_factor, c.schedule.min_lr_factor) == (
    5,
    0.1,
    0.005,
  )
  assert c.ema.enabled and c.ema.period == 32 and c.ema.alpha == 1e-5
  assert c.data.augment.label_smoothing == 0.1 and c.data.augment.mixup_alpha == 0.8
  sgd = vitc.get_config('size=4gf,optimizer=sgd').optimizer
  assert (sgd.name, sgd.lr, sgd.weight_decay, sgd.nesterov) == ('sgd', 1.3, 2.2e-5, True)
  cv = convit.get_config('size=s')
  assert optimizer.base_lr(cv.optimizer, cv.batch_size) == pytest.approx(5e-4 * 1024 / 512)
  assert (cv.optimizer.weight_decay, cv.optimizer.wd_mask, cv.total_epochs) == (0.05, 'deit', 300)
  assert (cv.schedule.warmup_lr, cv.schedule.min_lr, cv.model.drop_path_rate) == (1e-6, 1e-5, 0.1)
  assert not cv.ema.enabled and cv.data.augment.random_erasing_prob == 0.25


def test_unknown_and_contradictory_settings_name_the_field():
  c = vitc.get_config('demo')
  with pytest.raises(ValueError, match=r'config\.total_steps, config\.total_epochs'):
    c.total_steps = 10
    _check(c)
  c = vitc.get_config('demo')
  c.unlock()
  c.optimizer.lrr = 1.0
  with pytest.raises(ValueError, match=r'config\.optimizer\.lrr'):
    _check(c)
  c = vitc.get_config('demo')
  c.batch_size = 100
  with pytest.raises(ValueError, match=r'config\.batch_size'):
    _check(c)
  c = vitc.get_config('demo')
  c.model_name = 'vit_q_1gf'
  with pytest.raises(ValueError, match=r'config\.model_name'):
    _check(c)
  c = vitc.get_config('demo')
  c.mesh = (('data', 3), ('fsdp', 1))
  with pytest.raises(ValueError, match=r'config\.mesh'):
    _check(c)
  c = vitc.get_config('demo')
  c.optimizer.name = 'lamb'
  with pytest.raises(ValueError, match=r'config\.optimizer\.name'):
    _check(c)
  c = vitc.get_config('demo')  # batch 128: mixing groups of 48 do not tile it
  c.data.augment.mixup_alpha, c.data.augment.mix_group_size = 0.8, 48
  with pytest.raises(ValueError, match=r'config\.data\.augment\.mix_group_size'):
    _check(c)
  c.data.augment.mix_group_size = 64
  _check(c)
  with pytest.raises(ValueError, match='Unknown config option'):
    vitc.get_config('sise=4gf')


def test_command_line_duration_replaces_the_config_files_unit():
  c = vitc.get_config('demo')
  c.total_steps = 7
  durations.prefer_command_line(c, ['main.py', '--config.total_steps=7'])
  assert c.total_epochs is None
  assert durations.to_steps(c, 'total', steps_per_epoch=31, batch_size=128) == 7
  c = vitc.get_config('demo')
  assert durations.to_steps(c, 'total', steps_per_epoch=31, batch_size=128) == 15 * 31


def _pycls_reference_lr(epoch, base, max_epoch, warmup_epochs, warmup_factor, min_lr):
  """Transcribed from pycls core/optimizer.py (lr_fun_cos + get_epoch_lr)."""
  lr = 0.5 * (1.0 + np.cos(np.pi * epoch / max_epoch))
  lr = ((1.0 - min_lr) * lr + min_lr) * base
  if epoch < warmup_epochs:
    alpha = epoch / warmup_epochs
    lr *= warmup_factor * (1.0 - alpha) + alpha
  return lr


def test_pycls_schedule_is_set_per_epoch_like_pycls():
  c = vitc.get_config('size=4gf')
  spe = 625  # ImageNet 1.28M / 2048
  sched = optimizer.make_lr_schedule(
    c.schedule, peak_lr=1e-3, steps_per_epoch=spe, total_steps=400 * spe, warmup_steps=5 * spe
  )
  for epoch in (0, 1, 4, 5, 6, 100, 250, 399):
    for it in (0, spe - 1):
      want = _pycls_reference_lr(epoch, 1e-3, 400, 5, 0.1, 0.005)
      assert float(sched(epoch * spe + it)) == pytest.approx(want, rel=1e-5)
  assert float(sched(0)) == pytest.approx(1e-4)


def test_timm_schedule_matches_the_deit_formula():
  c = convit.get_config('size=ti')
  spe = 1251
  sched = optimizer.make_lr_schedule(
    c.schedule, peak_lr=1e-3, steps_per_epoch=spe, total_steps=300 * spe, warmup_steps=5 * spe
  )
  for epoch in (0, 2, 5, 150, 299):
    if epoch < 5:
      want = 1e-6 + epoch * (1e-3 - 1e-6) / 5
    else:  # timm CosineLRScheduler, no warmup_prefix: cosine over t / t_initial
      want = 1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(math.pi * epoch / 300))
    assert float(sched(epoch * spe + 3)) == pytest.approx(want, rel=1e-5)


def _tiny_params(name):
  m = models.create_model(
    name,
    num_classes=10,
    image_size=16,
    hidden_size=16,
    num_heads=4,
    mlp_dim=32,
    depth=2,
    patch_size=4,
    **(
      dict(stem_kernels=(3, 1), stem_strides=(4, 1), stem_channels=(8, 16))
      if 'vit_c' in name
      else {}
    ),
    **(dict(num_gpsa_layers=1) if 'convit' in name else {}),
  )
  return jax.eval_shape(
    lambda: m.init({'params': jax.random.PRNGKey(0)}, np.zeros((1, 16, 16, 3), np.float32))
  )['params']


def _flat(tree):
  return {sharding.path_name(p): v for p, v in jax.tree_util.tree_leaves_with_path(tree)}


def test_weight_decay_masks_follow_each_recipe():
  pycls_mask = _flat(optimizer.weight_decay_mask('pycls', _tiny_params('vit_c_1gf')))
  assert pycls_mask['cls_token'] and pycls_mask['pos_embedding']
  assert pycls_mask['stem/conv0/kernel'] and pycls_mask['encoder/block00/mlp/fc1/kernel']
  assert not pycls_mask['stem/bn0/scale'] and not pycls_mask['encoder/block00/norm1/scale']
  assert not pycls_mask['encoder/block00/mlp/fc1/bias'] and not pycls_mask['head/bias']
  deit_mask = _flat(optimizer.weight_decay_mask('deit', _tiny_params('convit_ti')))
  assert not deit_mask['cls_token'] and not deit_mask['pos_embedding']
  assert not deit_mask['encoder/block00/attn/gating_param']
  assert deit_mask['encoder/block00/attn/qk/kernel'] and deit_mask['head/kernel']
  assert not deit_mask['norm/scale'] and not deit_mask['head/bias']


def test_ema_follows_pycls_update_rule():
  rate = ema.ema_rate(alpha=1e-5, batch_size=2048, total_epochs=400, period=32)
  assert rate == pytest.approx(1e-5 * 2048 / 400 * 32)
  e, w = np.float32(1.0), np.float32(3.0)
  kw = dict(steps_per_epoch=100, warmup_epochs=5, rate=0.25, period=32)
  assert float(ema.update(e, w, opt_step=0, **kw)) == 3.0  # warmup: copy
  assert float(ema.update(e, w, opt_step=501, **kw)) == 1.0  # iteration 1 of epoch 5: skip
  assert float(ema.update(e, w, opt_step=532, **kw)) == 1.5  # iteration 32 of epoch 5
  assert float(ema.update(e, w, opt_step=600, **kw)) == 1.5  # iteration 0 of epoch 6


def test_fsdp_rule_splits_the_largest_divisible_dimension():
  mesh = sharding.make_mesh((('data', 2), ('fsdp', 4)))
  tree = {
    'params': {'a': np.zeros((16, 6)), 'b': np.zeros((3,)), 'c': np.zeros((6, 8))},
    'step': np.zeros(()),
  }
  rules = (('params/a', 'fsdp'), ('params/[bc]', 'fsdp'))
  sh = _flat(sharding.tree_shardings(tree, mesh, rules, min_size_to_shard_mb=0))
  assert sh['params/a'].spec == jax.sharding.PartitionSpec('fsdp', None)
  assert sh['params/b'].spec == jax.sharding.PartitionSpec()  # 3 not divisible by 4
  assert sh['params/c'].spec == jax.sharding.PartitionSpec(None, 'fsdp')
  assert sh['step'].spec == jax.sharding.PartitionSpec()
  assert sharding.mesh_shape((('data', -1), ('fsdp', 2)), 8) == (('data', 'fsdp'), (4, 2))
  with pytest.raises(ValueError, match=r'config\.sharding_rules'):
    sharding.check_rules((('.*', 'zero3'),))
  c = vitc.get_config('demo')
  c.min_size_to_shard_mb = -1.0
  with pytest.raises(ValueError, match=r'config\.min_size_to_shard_mb: must be >= 0'):
    _check(c)


def test_fields_come_from_the_base_config(monkeypatch):
  """A field added to config_schema.base_config is accepted without touching config_checks; one
  that is not there is refused, named as the user types it, at any depth (config.model is free:
  ModelSpec checks it)."""
  from configs import common
  from vit_jax_stems.train import config_schema

  assert common.base_config is config_schema.base_config
  real = config_schema.base_config

  def add_new_fields(c):
    c.new_top_level_knob = 1
    c.optimizer.new_knob = 2.0
    c.data.augment.new_knob = True
    return c

  c = add_new_fields(vitc.get_config('demo'))
  with pytest.raises(ValueError, match=r'Unknown config field\(s\): config\.new_top_level_knob'):
    _check(c)
  monkeypatch.setattr(config_schema, 'base_config', lambda: add_new_fields(real()))
  _check(c)
  for where in ('', 'optimizer.', 'data.', 'data.augment.', 'ema.'):
    c = vitc.get_config('demo')
    c.unlock()
    node = c
    for part in filter(None, where.split('.')):
      node = node[part]
    node.not_a_key = 1
    with pytest.raises(ValueError, match=rf'Unknown config field\(s\): config\.{where}not_a_key\.'):
      _check(c)
  c = vitc.get_config('demo')
  c.model.depth = 2  # any ModelSpec field
  _check(c)
  c.model.not_a_spec_field = 1
  with pytest.raises(ValueError, match=r'config\.model .*not_a_spec_field'):
    _check(c)


@pytest.mark.parametrize('field', ['total_steps', 'total_epochs', 'total_examples'])
def test_zero_length_training_is_refused_naming_the_field(field, tmp_path):
  from vit_jax_stems.train import trainer

  c = vitc.get_config('demo')
  c.total_epochs = None
  c[field] = 0
  with pytest.raises(ValueError, match=rf'config\.{field}: must be > 0'):
    _check(c)
  with pytest.raises(ValueError, match=rf'config\.{field}: must be > 0'):  # before anything else
    trainer.train_and_evaluate(c, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()
