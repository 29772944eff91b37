"""Models moved to another input size: converted weights at another `--image_size`, weights
directories loaded at another size (predict, `--mode eval`), fine-tuning starts
(`config.init_weights`) at another size; and GPSA, whose relative positions follow the grid."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.test_convert import load_fixture
from vit_jax_stems import convert, models, weights
from vit_jax_stems.analysis import locality
from vit_jax_stems.models import attention as attention_lib
from vit_jax_stems.models import pos_embedding
from vit_jax_stems.train import pretrained


@pytest.mark.parametrize('name,prefix', [('pycls_vit_p', 1), ('timm_convit_4h', 0)])
def test_convert_at_another_image_size_resamples_only_the_position_embedding(name, prefix):
  meta, arrays, src = load_fixture(name)
  state = convert.load_state_dict(src)
  native = models.create_model(meta['arch'], **meta['overrides'])
  larger = models.create_model(meta['arch'], **dict(meta['overrides'], image_size=48))
  at_native = convert.convert_state_dict(native, state)
  at_48 = convert.convert_state_dict(larger, state)
  old, new = at_native['params']['pos_embedding'], at_48['params']['pos_embedding']
  rows, cols = larger.spec.grid_size()
  assert new.shape == (1, prefix + rows * cols, native.spec.hidden_size) and rows == 6
  np.testing.assert_array_equal(new, pos_embedding.for_spec(old, larger.spec))
  np.testing.assert_array_equal(new[:, :prefix], old[:, :prefix])
  flat_native = jax.tree_util.tree_leaves_with_path(at_native)
  flat_48 = dict(jax.tree_util.tree_leaves_with_path(at_48))
  for path, leaf in flat_native:
    if 'pos_embedding' not in jax.tree_util.keystr(path):
      np.testing.assert_array_equal(flat_48[path], leaf)
  images = jax.image.resize(jnp.asarray(arrays['images_nhwc']), (3, 48, 48, 3), 'bilinear')
  logits, _ = larger.apply(at_48, images, train=False)
  assert logits.shape == arrays['logits'].shape and np.isfinite(np.asarray(logits)).all()


def test_a_weights_directory_loads_at_another_size_and_unchanged_at_its_own(tmp_path):
  meta, _, src = load_fixture('pycls_vit_c')
  model = models.create_model(meta['arch'], **meta['overrides'])
  variables = convert.convert_state_dict(model, convert.load_state_dict(src))
  weights.save_weights(str(tmp_path), meta['arch'], variables, overrides=meta['overrides'])
  same_model, same = weights.load_weights(str(tmp_path), image_size=32)
  assert same_model.spec == model.spec
  jax.tree_util.tree_map(np.testing.assert_array_equal, variables, jax.device_get(same))
  big_model, big = weights.load_weights(str(tmp_path), image_size=64)
  assert big_model.spec == model.spec.replace(image_size=64)
  np.testing.assert_array_equal(
    big['params']['pos_embedding'],
    pos_embedding.for_spec(variables['params']['pos_embedding'], big_model.spec),
  )
  np.testing.assert_array_equal(  # the conv stem's BN statistics travel unchanged
    big['batch_stats']['stem']['bn0']['var'], variables['batch_stats']['stem']['bn0']['var']
  )


def test_a_fine_tuning_start_at_another_size_gets_the_resampled_embedding():
  meta, _, src = load_fixture('pycls_vit_p')
  model = models.create_model(meta['arch'], **meta['overrides'])
  loaded = convert.convert_state_dict(model, convert.load_state_dict(src))
  run_model = models.create_model(
    meta['arch'], **dict(meta['overrides'], image_size=48, num_classes=3)
  )
  init = jax.device_get(models.init_variables(run_model, jax.random.key(0)))
  merged = pretrained.merge(init, loaded, source='DIR', spec=run_model.spec)
  np.testing.assert_array_equal(
    merged['params']['pos_embedding'],
    pos_embedding.for_spec(loaded['params']['pos_embedding'], run_model.spec),
  )
  np.testing.assert_array_equal(
    merged['params']['head']['kernel'], init['params']['head']['kernel']
  )
  np.testing.assert_array_equal(
    merged['params']['encoder']['block00']['norm1']['scale'],
    loaded['params']['encoder']['block00']['norm1']['scale'],
  )


def test_a_new_head_for_another_class_count_starts_at_zero_in_both_families():
  """pycls zero-initialises its head; ConViT's init is normal(0.02), but a fine-tuning start gets
  zeros in both (pycls `init_weights_vit`)."""
  for name in ('pycls_vit_c', 'timm_convit_4h'):
    meta, _, src = load_fixture(name)
    model = models.create_model(meta['arch'], **meta['overrides'])
    loaded = convert.convert_state_dict(model, convert.load_state_dict(src))
    run_model = models.create_model(meta['arch'], **dict(meta['overrides'], num_classes=3))
    init = jax.device_get(models.init_variables(run_model, jax.random.key(0)))
    merged = pretrained.merge(init, loaded, source='DIR', spec=run_model.spec)
    for leaf in ('kernel', 'bias'):
      assert merged['params']['head'][leaf].shape[-1] == 3
      assert not merged['params']['head'][leaf].any(), (name, leaf)
    np.testing.assert_array_equal(
      merged['params']['pos_embedding'], loaded['params']['pos_embedding']
    )


@pytest.mark.parametrize('strength', [1.0, 8.0])
def test_gpsa_at_a_new_grid_keeps_each_heads_local_init_centre(strength):
  """The positional score is a function of the offset (dx, dy) only, so a local-init head's
  attention centre over interior queries is the same at 8x8 and 16x16 patches, and for a sharp
  kernel (large locality strength) it is the designed offset."""
  overrides = dict(
    hidden_size=36, num_heads=9, mlp_dim=36, depth=2, num_gpsa_layers=1, patch_size=4,
    num_classes=10, locality_strength=strength,
  )  # fmt: skip
  small = models.create_model('convit_ti', image_size=32, **overrides)
  params = jax.device_get(models.init_variables(small, jax.random.key(0)))['params']
  attn = params['encoder']['block00']['attn']
  centres = {}
  for grid in ((8, 8), (16, 16)):
    centres[grid] = np.array(locality.gpsa_measures(attn, grid, margin=3)['positional_centre'])
  np.testing.assert_allclose(centres[(16, 16)], centres[(8, 8)], atol=1e-4)
  if strength > 4:
    np.testing.assert_allclose(centres[(16, 16)], attention_lib.gpsa_local_offsets(9), atol=1e-3)
  big = models.create_model('convit_ti', image_size=64, **overrides)
  moved = pretrained.merge(
    jax.device_get(models.init_variables(big, jax.random.key(1))),
    {'params': params},
    source='init',
    spec=big.spec,
  )
  logits, _ = big.apply(moved, jnp.zeros((1, 64, 64, 3)), train=False)
  assert np.isfinite(np.asarray(logits)).all()
