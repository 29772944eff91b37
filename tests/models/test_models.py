"""Behaviour of the Flax modules on tiny shapes: paths, dtypes, errors, inits, intermediates."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vit_jax_stems import models
from vit_jax_stems.models import attention

TINY = dict(
  hidden_size=32, num_heads=4, mlp_dim=64, depth=3, image_size=32, num_classes=10, patch_size=8
)
TINY_CONV = dict(
  stem_kernels=(3, 3, 3, 1), stem_strides=(2, 2, 2, 1), stem_channels=(8, 16, 32, 32)
)
TINY_MODELS = {
  'vit_p_1gf': TINY,
  'vit_c_1gf': {**TINY, **TINY_CONV},
  'convit_ti': {**TINY, 'num_gpsa_layers': 2},
  'convit_c_ti': {**TINY, **TINY_CONV, 'num_gpsa_layers': 2},
}


def _images(batch=2, size=32, seed=0):
  return jax.random.normal(jax.random.key(seed), (batch, size, size, 3))


def _jit_init(model, images):
  """One compiled init instead of one compile per eager op (much faster on CPU)."""
  return jax.jit(model.init)(jax.random.key(0), images)


def _apply(model, variables, images, **kwargs):
  """Jitted apply: one compile per call signature instead of one per eager op."""
  rngs = kwargs.pop('rngs', None)
  mutable = kwargs.pop('mutable', False)
  fn = jax.jit(lambda v, x, r: model.apply(v, x, rngs=r, mutable=mutable, **kwargs))
  return fn(variables, images, rngs)


def _perturbed(variables, scale=0.05, seed=1):
  """Adds noise to every parameter so zero-initialised heads or biases cannot hide a bug."""
  leaves, tree = jax.tree.flatten(variables['params'])
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  noisy = [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
  return {**variables, 'params': jax.tree.unflatten(tree, noisy)}


def _init(name, **overrides):
  model = models.create_model(name, **{**TINY_MODELS[name], **overrides})
  variables = _jit_init(model, _images(size=model.spec.image_size))
  return model, _perturbed(variables)


def test_registry_has_the_zoo_of_both_papers():
  names = set(models.list_models())
  for size in ('1gf', '4gf', '18gf', '36gf', '72gf'):
    assert {f'vit_p_{size}', f'vit_c_{size}'} <= names
  for size in ('ti', 'ti_plus', 's', 's_plus', 'b', 'b_plus'):
    assert f'convit_{size}' in names
  assert any(n.startswith('convit_c_') for n in names)


def test_unknown_model_and_field_errors_name_the_fix():
  with pytest.raises(ValueError, match='Registered models'):
    models.get_spec('vit_q_1gf')
  with pytest.raises(ValueError, match='Unknown model field'):
    models.get_spec('vit_p_1gf', hidden=3)


@pytest.mark.parametrize('name', sorted(TINY_MODELS))
def test_fast_and_explicit_attention_paths_agree(name):
  model, variables = _init(name)
  x = _images()
  fast, out_fast = _apply(model, variables, x)
  explicit, out = _apply(model, variables, x, return_attention=True)
  np.testing.assert_allclose(fast, explicit, atol=2e-5, rtol=1e-5)
  assert np.abs(np.asarray(fast)).max() > 1e-3  # a real signal, not zeros
  for i in range(model.spec.depth):
    w = out[f'encoder/block{i:02d}/attention']
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
    assert w.shape[:2] == (2, model.spec.num_heads)
  assert not any(k.endswith('/attention') for k in out_fast)


@pytest.mark.parametrize('name', sorted(TINY_MODELS))
def test_intermediates_and_class_token_handling(name):
  model, variables = _init(name)
  logits, out = _apply(model, variables, _images())
  spec = model.spec
  assert logits.shape == (2, 10) and logits.dtype == jnp.float32
  assert out['stem'].shape == (2, 4, 4, 32)
  assert out['pre_logits'].shape == (2, 32)
  pos = variables['params']['pos_embedding']
  if spec.family == 'pycls':  # class slot inside the position embedding, token from block 0
    assert pos.shape == (1, 17, 32)
    assert all(out[f'encoder/block{i:02d}'].shape[1] == 17 for i in range(spec.depth))
  else:  # ConViT: patches only; the class token joins after the last GPSA block
    assert pos.shape == (1, 16, 32)
    lengths = [out[f'encoder/block{i:02d}'].shape[1] for i in range(spec.depth)]
    assert lengths == [16, 16, 17]
    np.testing.assert_allclose(
      out['encoder/block02'][:, 0], np.broadcast_to(variables['params']['cls_token'][0], (2, 32))
    )


@pytest.mark.parametrize('name', ['vit_c_1gf', 'convit_ti'])
def test_bfloat16_compute_keeps_float32_params(name):
  model, variables = _init(name)
  bf16 = models.create_model(name, dtype=jnp.bfloat16, **TINY_MODELS[name])
  assert all(
    x.dtype == jnp.float32
    for x in jax.tree.leaves(jax.eval_shape(bf16.init, jax.random.key(0), _images())['params'])
  )
  ref, _ = _apply(model, variables, _images())
  low, out = _apply(bf16, variables, _images())
  assert low.dtype == jnp.float32 and out['stem'].dtype == jnp.bfloat16
  np.testing.assert_allclose(low, ref, atol=0.1 * float(np.abs(ref).max()))


def test_batchnorm_statistics_update_only_in_training():
  model, variables = _init('vit_c_1gf')
  (_, _), updates = _apply(model, variables, _images(), train=True, mutable=['batch_stats'])
  before = variables['batch_stats']['stem']['bn0']['mean']
  after = updates['batch_stats']['stem']['bn0']['mean']
  assert not np.allclose(before, after)
  assert 'batch_stats' not in jax.eval_shape(
    models.create_model('vit_p_1gf', **TINY).init, jax.random.key(0), _images()
  )


def test_drop_path_and_dropout_are_off_by_default_and_stochastic_when_on():
  model, variables = _init('vit_p_1gf')
  a, _ = _apply(model, variables, _images(), train=True)
  b, _ = _apply(model, variables, _images(), train=False)
  np.testing.assert_allclose(a, b, atol=1e-6)
  noisy = models.create_model('vit_p_1gf', **TINY, drop_path_rate=0.5, dropout_rate=0.1)
  rng = lambda s: {'dropout': jax.random.key(s)}
  c, _ = _apply(noisy, variables, _images(), train=True, rngs=rng(0))
  d, _ = _apply(noisy, variables, _images(), train=True, rngs=rng(1))
  e, _ = _apply(noisy, variables, _images(), train=False)
  assert not np.allclose(c, d)
  np.testing.assert_allclose(e, b, atol=1e-6)


def test_any_image_size_and_class_count():
  model = models.create_model(
    'convit_c_ti', **{**TINY_MODELS['convit_c_ti'], 'image_size': 48, 'num_classes': 7}
  )
  variables = _jit_init(model, _images(size=48))
  logits, out = _apply(model, variables, _images(size=48), return_attention=True)
  assert logits.shape == (2, 7)
  assert variables['params']['pos_embedding'].shape == (1, 36, 32)
  assert out['encoder/block00/attention'].shape == (2, 4, 36, 36)


def test_wrong_image_shape_fails_before_compile():
  model = models.create_model('vit_p_1gf', **TINY)
  with pytest.raises(ValueError, match='image_size=32'):
    jax.eval_shape(
      lambda x: model.init(jax.random.key(0), x), jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    )


@pytest.mark.parametrize(
  'overrides, message',
  [
    (dict(stem_strides=(2, 2, 1, 1)), 'multiply to 4, but patch_size=8'),
    (dict(stem_channels=(8, 16, 32, 48)), r'stem_channels\[-1\]=48 must equal hidden_size=32'),
    (dict(stem_kernels=(3, 3, 1)), 'same length'),
    (dict(num_heads=5), 'not divisible by num_heads'),
  ],
)
def test_conv_stem_errors_say_what_to_change(overrides, message):
  with pytest.raises(ValueError, match=message):
    models.create_model('vit_c_1gf', **{**TINY_MODELS['vit_c_1gf'], **overrides})


def test_pycls_init_follows_init_weights_vit():
  model = models.create_model('vit_c_1gf')
  params = _jit_init(model, jnp.zeros((1, 224, 224, 3)))['params']
  assert not np.any(params['head']['kernel']) and not np.any(params['cls_token'])
  np.testing.assert_allclose(
    np.std(params['stem']['conv1']['kernel']), math.sqrt(2 / 48), rtol=0.05
  )
  np.testing.assert_allclose(
    np.std(params['stem']['conv_last']['kernel']), math.sqrt(1 / 192), rtol=0.05
  )
  np.testing.assert_allclose(np.std(params['pos_embedding']), 0.02, rtol=0.05)
  qkv = params['encoder']['block00']['attn']['qkv']['kernel']  # xavier_uniform (D, 3D)
  np.testing.assert_allclose(np.abs(qkv).max(), math.sqrt(6 / (192 + 576)), rtol=0.02)
  mlp_bias = params['encoder']['block00']['mlp']['fc1']['bias']
  assert 0 < np.std(mlp_bias) < 1e-5
  patchify = _jit_init(models.create_model('vit_p_1gf'), jnp.zeros((1, 224, 224, 3)))['params'][
    'stem'
  ]['patchify']['kernel']
  np.testing.assert_allclose(np.std(patchify), math.sqrt(1 / (3 * 16 * 16)), rtol=0.05)


def test_convit_init_follows_timm_local_init():
  model = models.create_model('convit_s')
  params = _jit_init(model, jnp.zeros((1, 224, 224, 3)))['params']
  gpsa = params['encoder']['block00']['attn']
  np.testing.assert_array_equal(gpsa['v']['kernel'], np.eye(432))
  np.testing.assert_array_equal(gpsa['gating_param'], np.ones(9))
  np.testing.assert_allclose(np.std(gpsa['qk']['kernel']), 0.02, rtol=0.05)
  np.testing.assert_allclose(np.std(params['cls_token']), 0.02, rtol=0.3)
  assert 'qkv' in params['encoder']['block10']['attn']  # blocks after the 10 GPSA ones are MHSA
  assert 'bias' not in params['encoder']['block10']['attn']['qkv']


@pytest.mark.parametrize('heads, alpha', [(9, 1.0), (4, 1.0), (16, 2.0), (5, 1.0)])
def test_gpsa_local_init_peaks_at_designed_offsets(heads, alpha):
  """Positional attention of an interior query centres on each head's designed offset."""
  model = models.create_model(
    'convit_ti',
    hidden_size=8 * heads,
    num_heads=heads,
    mlp_dim=16,
    depth=2,
    num_gpsa_layers=1,
    image_size=224,
    num_classes=2,
    locality_strength=alpha,
  )
  params = _jit_init(model, jnp.zeros((1, 224, 224, 3)))['params']
  grid = (14, 14)
  positional = np.asarray(
    attention.positional_attention(params['encoder']['block00']['attn']['pos_proj'], grid)
  )
  query = 7 * 14 + 7
  rel = attention.relative_indices(*grid)[query]  # (N, 3): dx, dy, d^2
  offsets = attention.gpsa_local_offsets(heads)
  k = int(heads**0.5)
  for h in range(k * k):
    p = positional[h, query]
    centre = (p @ rel[:, 0], p @ rel[:, 1])
    np.testing.assert_allclose(centre, offsets[h], atol=1e-3)
    if k % 2:  # integer offsets: the single most attended key is the designed neighbour
      peak = np.argmax(p)
      assert tuple(rel[peak, :2]) == tuple(offsets[h])
  assert np.isnan(offsets[k * k :]).all()


def test_gpsa_gate_mixes_content_and_position():
  """With the gate fully open (lambda -> +inf) GPSA is P v; closed, it is plain attention."""
  layer = attention.GatedPositionalSelfAttention(num_heads=4, grid_size=(3, 3))
  x = jax.random.normal(jax.random.key(0), (2, 9, 16))
  variables = jax.jit(layer.init, static_argnames='train')(jax.random.key(1), x, train=False)
  p = variables['params']
  for lam, expect_positional in ((40.0, True), (-40.0, False)):
    params = {**p, 'gating_param': jnp.full((4,), lam)}
    _, w = layer.apply({'params': params}, x, train=False, return_weights=True)
    positional = attention.positional_attention(p['pos_proj'], (3, 3))
    if expect_positional:
      np.testing.assert_allclose(w, np.broadcast_to(positional, w.shape), atol=1e-6)
    else:
      assert not np.allclose(w, np.broadcast_to(positional, w.shape), atol=1e-3)


def test_remat_and_attention_impl_change_nothing_but_how_it_runs():
  """Per-block remat keeps the parameter tree and the gradients; 'xla' equals the default."""
  model, variables = _init('convit_c_ti')
  remat = models.create_model(
    'convit_c_ti', remat_policy='block', attention_impl='xla', **TINY_MODELS['convit_c_ti']
  )
  images = _images()

  def loss_fn(m):
    def loss(params):
      (logits, _), _ = m.apply(
        {**variables, 'params': params}, images, train=True, mutable=['batch_stats']
      )
      return (logits**2).mean()

    return jax.jit(jax.value_and_grad(loss))

  (l0, g0), (l1, g1) = loss_fn(model)(variables['params']), loss_fn(remat)(variables['params'])
  np.testing.assert_allclose(l0, l1, rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), g0, g1)
  jaxpr = str(jax.make_jaxpr(loss_fn(remat))(variables['params']))
  assert 'remat' in jaxpr or 'checkpoint' in jaxpr
  with pytest.raises(ValueError, match='remat_policy'):
    models.create_model('vit_p_1gf', remat_policy='all')
  with pytest.raises(ValueError, match='attention_impl'):
    models.create_model('vit_p_1gf', attention_impl='flash')
  assert models.default_attention_impl('gpu', jnp.bfloat16) == 'cudnn'
  assert models.default_attention_impl('cpu', jnp.bfloat16) is None
