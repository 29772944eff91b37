"""Scanned layers (ModelSpec.scan_layers) against the unrolled model, and the layout at the edges.

Every comparison starts from the same weights: the unrolled model's, stacked with
`layers_layout.stack_blocks`. Tolerance: float32, 1e-6 absolute on activations of order one (the
scan evaluates the same operations in another order of fusion; measured at most 6e-7).
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vit_jax_stems import convert, models, weights
from vit_jax_stems.models import layers_layout, vit
from vit_jax_stems.train import optimizer, pretrained

ATOL = 1e-6
TINY = dict(hidden_size=16, num_heads=4, mlp_dim=32, depth=3, patch_size=4, num_classes=10)
FAMILIES = {
  'vit_p': ('vit_p_1gf', dict(TINY, image_size=16)),
  'vit_c': (
    'vit_c_1gf',
    dict(TINY, image_size=16, stem_kernels=(3, 1), stem_strides=(4, 1), stem_channels=(8, 16)),
  ),
  # 32x32 images: an 8x8 grid for GPSA; two GPSA blocks, then the class token, then one MHSA.
  'convit': ('convit_ti', dict(TINY, image_size=32, num_gpsa_layers=2)),
}


def _models(family, **overrides):
  arch, tiny = FAMILIES[family]
  kwargs = {**tiny, **overrides}
  remat = kwargs.pop('remat_policy', None)
  unrolled = models.create_model(arch, remat_policy=remat, **kwargs)
  scanned = models.create_model(arch, remat_policy=remat, scan_layers=True, **kwargs)
  return unrolled, scanned


def _perturbed(variables, seed=1):
  """Noise on every parameter, so zero-initialised heads and biases cannot hide a bug."""
  leaves, tree = jax.tree.flatten(variables['params'])
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  noisy = [x + 0.05 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
  return {**variables, 'params': jax.tree.unflatten(tree, noisy)}


def _variables(model):
  return _perturbed(jax.jit(models.init_variables, static_argnums=0)(model, jax.random.key(0)))


def _images(model, n=2, seed=0):
  size = model.spec.image_size
  return jax.random.normal(jax.random.key(seed), (n, size, size, 3))


def _apply(model, variables, images, *, train, return_attention=True):
  def run(v, x, rng):
    if train:
      (logits, out), updates = model.apply(
        v,
        x,
        train=True,
        return_attention=return_attention,
        mutable=['batch_stats'],
        rngs={'dropout': rng},
      )
      return logits, out, updates
    logits, out = model.apply(v, x, train=False, return_attention=return_attention)
    return logits, out, {}

  return jax.device_get(jax.jit(run)(variables, images, jax.random.key(5)))


def _assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    assert x.dtype == y.dtype and x.shape == y.shape
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ----------------------------------------------------------------------------- the layout
def test_stacked_names_and_shapes():
  for family, groups in [
    ('vit_p', {'blocks': 3}),
    ('convit', {'gpsa_blocks': 2, 'mhsa_blocks': 1}),
  ]:
    _, scanned = _models(family)
    params = models.abstract_variables(scanned)['params']
    assert set(params['encoder']) == set(groups)
    for group, layers in groups.items():
      kernel = params['encoder'][group]['mlp']['fc1']['kernel']
      assert kernel.shape == (layers, 16, 32)


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_stack_unstack_round_trip_is_exact_and_matches_the_scan_tree(family):
  unrolled, scanned = _models(family)
  variables = _variables(unrolled)
  stacked = layers_layout.stack_blocks(variables, scanned.spec)
  _assert_trees_equal(layers_layout.unstack_blocks(stacked, scanned.spec), variables)
  # The stacked tree is exactly the tree nn.scan makes (names, shapes, dtypes).
  images = jnp.zeros((1,) + _images(scanned).shape[1:])
  own = jax.eval_shape(lambda: scanned.init(jax.random.key(0), images, train=False))
  shapes = lambda tree: jax.tree.map(lambda x: (x.shape, x.dtype), tree)
  assert shapes(own) == shapes(stacked)
  # The scanned model starts from the unrolled model's weights of the same seed.
  init = jax.jit(models.init_variables, static_argnums=0)
  key = jax.random.key(0)
  _assert_trees_equal(
    init(scanned, key), layers_layout.stack_blocks(init(unrolled, key), scanned.spec)
  )
  _assert_trees_equal(layers_layout.to_layout(stacked, scanned.spec), stacked)
  _assert_trees_equal(layers_layout.to_layout(stacked, scanned.spec, stacked=False), variables)
  with pytest.raises(ValueError, match='stacked already'):
    layers_layout.stack_blocks(stacked, scanned.spec)


# ----------------------------------------------------------------------------- outputs
@pytest.mark.parametrize('train', [False, True], ids=['eval', 'train'])
@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_scanned_outputs_equal_unrolled(family, train):
  unrolled, scanned = _models(family)
  variables = _variables(unrolled)
  images = _images(unrolled)
  logits, out, updates = _apply(unrolled, variables, images, train=train)
  stacked = layers_layout.stack_blocks(variables, scanned.spec)
  logits_s, out_s, updates_s = _apply(scanned, stacked, images, train=train)
  keys = {f'encoder/block{i:02d}' for i in range(3)}
  keys |= {f'{k}/attention' for k in keys}
  assert keys <= set(out) and set(out_s) == set(out)
  for key in out:
    np.testing.assert_allclose(out_s[key], out[key], atol=ATOL, rtol=0, err_msg=key)
  np.testing.assert_allclose(logits_s, logits, atol=ATOL, rtol=0)
  for a, b in zip(jax.tree.leaves(updates_s), jax.tree.leaves(updates)):  # conv stem BN stats
    np.testing.assert_allclose(a, b, atol=ATOL, rtol=0)


@pytest.mark.parametrize('remat', ['block', 'block_dots'])
def test_remat_inside_the_scan(remat):
  unrolled, scanned = _models('convit', remat_policy=remat)
  variables = _variables(unrolled)
  images = _images(unrolled)
  logits, out, _ = _apply(unrolled, variables, images, train=True, return_attention=False)
  stacked = layers_layout.stack_blocks(variables, scanned.spec)
  logits_s, out_s, _ = _apply(scanned, stacked, images, train=True, return_attention=False)
  np.testing.assert_allclose(logits_s, logits, atol=ATOL, rtol=0)
  assert set(out_s) == set(out)


def _loss_and_grads(model, variables, images, labels):
  def loss_fn(params):
    v = dict(variables, params=params)
    (logits, _), _ = model.apply(
      v, images, train=True, mutable=['batch_stats'], rngs={'dropout': jax.random.key(2)}
    )
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  return jax.device_get(jax.jit(jax.value_and_grad(loss_fn))(variables['params']))


@pytest.mark.parametrize('remat', [None, 'block'])
@pytest.mark.parametrize('family', ['vit_c', 'convit'])
def test_gradients_equal_after_unstacking(family, remat):
  unrolled, scanned = _models(family, remat_policy=remat)
  variables = _variables(unrolled)
  images, labels = _images(unrolled), jnp.array([3, 7])
  loss, grads = _loss_and_grads(unrolled, variables, images, labels)
  stacked = layers_layout.stack_blocks(variables, scanned.spec)
  loss_s, grads_s = _loss_and_grads(scanned, stacked, images, labels)
  assert loss_s == pytest.approx(loss, abs=ATOL)
  grads_s = layers_layout.unstack_blocks({'params': grads_s}, scanned.spec)['params']
  assert jax.tree.structure(grads_s) == jax.tree.structure(grads)
  for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
    got = grads_s
    for k in path:
      got = got[k.key]
    np.testing.assert_allclose(got, g, atol=1e-5, rtol=1e-4, err_msg=jax.tree_util.keystr(path))


def test_scanned_drop_path_keeps_per_layer_rates():
  """linspace(0, 0.9, 3) = (0, 0.45, 0.9): block 0 is never dropped (rate 0 is the identity), so
  block 1's input is the eval one; block 1 drops both its branches for 0.45^2 = 20% of examples,
  whose input to block 2 is then their input to block 1 exactly (0.9 everywhere would be 81%)."""
  unrolled, scanned = _models('vit_p', drop_path_rate=0.9)
  variables = layers_layout.stack_blocks(_variables(unrolled), scanned.spec)
  images = _images(scanned, n=32)
  _, eval_out, _ = _apply(scanned, variables, images, train=False, return_attention=False)
  _, train_out, _ = _apply(scanned, variables, images, train=True, return_attention=False)
  np.testing.assert_allclose(
    train_out['encoder/block01'], eval_out['encoder/block01'], atol=ATOL, rtol=0
  )
  unchanged = np.all(train_out['encoder/block02'] == train_out['encoder/block01'], axis=(1, 2))
  assert 1 <= unchanged.sum() <= 16


def test_drop_path_rate_zero_is_exactly_the_identity():
  x = jax.random.normal(jax.random.key(0), (8, 5, 4))
  drop = vit.DropPath()
  run = jax.jit(
    lambda x, rate: drop.apply(
      {}, x, rate, deterministic=False, rngs={'dropout': jax.random.key(1)}
    )
  )
  np.testing.assert_array_equal(run(x, jnp.float32(0.0)), x)
  half = np.asarray(run(x, jnp.float32(0.5)))
  kept = np.all(half == np.asarray(x) * 2, axis=(1, 2))
  dropped = np.all(half == 0, axis=(1, 2))
  assert np.all(kept | dropped) and kept.any() and dropped.any()


# ----------------------------------------------------------------------------- edges
def test_deit_weight_decay_mask_ignores_the_layer_axis():
  unrolled, scanned = _models('convit')
  params = models.abstract_variables(unrolled)['params']
  for kind in ('pycls', 'deit'):
    per_block = optimizer.weight_decay_mask(kind, params)
    stacked_mask = optimizer.weight_decay_mask(kind, models.abstract_variables(scanned)['params'])
    groups = layers_layout.block_groups(scanned.spec)
    for group, layers in groups:  # every layer of a group decays like its first block
      assert stacked_mask['encoder'][group] == per_block['encoder'][f'block{layers.start:02d}']
  # timm add_weight_decay: 1-D parameters are not decayed, stacked (2-D) or not.
  assert not stacked_mask['encoder']['gpsa_blocks']['attn']['gating_param']
  assert not stacked_mask['encoder']['gpsa_blocks']['norm1']['scale']
  assert stacked_mask['encoder']['gpsa_blocks']['attn']['qk']['kernel']


def test_weights_directory_is_per_block_and_loads_stacked(tmp_path):
  unrolled, scanned = _models('convit')
  arch, tiny = FAMILIES['convit']
  variables = jax.device_get(_variables(unrolled))
  stacked = layers_layout.stack_blocks(variables, scanned.spec)
  dst = weights.save_weights(
    str(tmp_path / 'w'), arch, stacked, overrides=dict(tiny, scan_layers=True)
  )
  model, loaded = weights.load_weights(dst)
  assert model.spec.scan_layers
  _assert_trees_equal(jax.device_get(loaded), stacked)
  # On disk: per block, the layout converters and other tools read.
  tree = weights.ocp.StandardCheckpointer().metadata(os.path.join(dst, 'variables'))
  tree = getattr(tree, 'item_metadata', tree)
  tree = getattr(tree, 'tree', tree)
  assert sorted(tree['params']['encoder']) == ['block00', 'block01', 'block02']
  with open(os.path.join(dst, 'model.json')) as f:
    assert json.load(f)['overrides']['scan_layers'] is True


def test_init_weights_into_a_scanned_run_stacks_the_per_block_weights():
  unrolled, scanned = _models('convit')
  loaded = jax.device_get(_variables(unrolled))
  init = jax.device_get(
    jax.jit(models.init_variables, static_argnums=0)(scanned, jax.random.key(3))
  )
  merged = pretrained.merge(init, loaded, source='DIR', spec=scanned.spec)
  _assert_trees_equal(merged, layers_layout.stack_blocks(loaded, scanned.spec))


FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'fixtures', 'parity')


@pytest.mark.parametrize('name', ['pycls_vit_c', 'timm_convit_4h'])
def test_reference_checkpoint_converted_into_a_scanned_model_matches_the_reference(name):
  with open(os.path.join(FIXTURES, f'{name}.json')) as f:
    meta = json.load(f)
  arrays = np.load(os.path.join(FIXTURES, f'{name}.npz'))
  model = models.create_model(meta['arch'], scan_layers=True, **meta['overrides'])
  state = convert.load_state_dict(os.path.join(FIXTURES, f'{name}.safetensors'))
  variables = convert.convert_state_dict(model, state)
  assert layers_layout.is_stacked(variables)
  images = jnp.asarray(arrays['images'].transpose(0, 2, 3, 1))
  logits = jax.jit(lambda v, x: model.apply(v, x, train=False)[0])(variables, images)
  assert np.abs(np.asarray(logits) - arrays['logits']).max() <= 1e-4  # test_convert TOLERANCE


# ----------------------------------------------------------------------------- settings
def test_scan_layers_is_set_like_every_spec_field():
  from configs import common, convit, vitc, vitp

  assert models.ModelSpec.parse_overrides(['scan_layers=true']) == {'scan_layers': True}
  assert not models.get_spec('vit_p_18gf').scan_layers  # the registry, parity and bench default
  # The trainer configs scan from SCAN_LAYERS_MIN_DEPTH blocks on: the 72GF models.
  assert common.SCAN_LAYERS_MIN_DEPTH == 20
  scanned = {
    (module.__name__, arg): module.get_config(arg).model.scan_layers
    for module in (vitc, vitp, convit)
    for arg in ('size=72gf' if module is not convit else 'size=b', 'size=18gf', 'demo')
    if not (module is convit and arg == 'size=18gf')
  }
  assert scanned == {
    ('configs.vitc', 'size=72gf'): True,
    ('configs.vitc', 'size=18gf'): False,
    ('configs.vitc', 'demo'): False,
    ('configs.vitp', 'size=72gf'): True,
    ('configs.vitp', 'size=18gf'): False,
    ('configs.vitp', 'demo'): False,
    ('configs.convit', 'size=b'): False,
    ('configs.convit', 'demo'): False,
  }  # every config has the field, so --config.model.scan_layers=true overrides it
