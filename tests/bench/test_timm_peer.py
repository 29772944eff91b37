"""The timm peer has our shapes (same parameter count as our pycls-rule count) and trains.

Skipped where torch or timm is not installed (they are optional: requirements-reference.txt).
"""

import pytest

from vit_jax_stems import models
from vit_jax_stems.bench import cases as cases_lib
from vit_jax_stems.bench import timm_peer

pytestmark = pytest.mark.skipif(not timm_peer.available(), reason='torch/timm not installed')

TINY = dict(
  hidden_size=32, num_heads=4, mlp_dim=64, depth=3, patch_size=4, image_size=16, num_classes=10
)


@pytest.mark.parametrize('name,extra', [('vit_p_1gf', {}), ('convit_ti', {'num_gpsa_layers': 2})])
def test_peer_has_our_parameter_count(name, extra):
  spec = models.get_spec(name, **TINY, **extra)
  model, _ = timm_peer.build_peer(spec.to_dict())
  assert sum(p.numel() for p in model.parameters()) == models.complexity.count(spec)['params']


def test_conv_stem_has_no_peer_but_its_twin_does():
  spec = models.get_spec('vit_c_4gf')
  with pytest.raises(ValueError, match='equal-GF patchify twin'):
    timm_peer.build_peer(spec.to_dict())
  twin, kind = cases_lib.peer_spec(spec)
  assert kind == 'vit' and twin == models.get_spec('vit_p_4gf')


def test_peer_subprocess_trains_a_tiny_model():
  spec = models.get_spec('vit_p_1gf', **TINY)
  row = timm_peer.run_subprocess(
    spec.to_dict(),
    batch_size=4,
    steps=1,
    repeats=1,
    warmup=0,
    dtype='float32',
    compile_model=False,
    timeout_s=300,
  )
  assert 'error' not in row, row.get('error')
  assert row['train_images_per_s'] > 0 and row['infer_images_per_s'] > 0
  assert row['precision'].startswith('fp32') and not row['compiled']
  assert 0 < row['final_loss'] < 10


def test_peer_over_its_time_limit_is_an_error_row_not_a_crash():
  """The GPU check bounds each peer (--peer_timeout_s): one slow torch.compile must not end the
  whole table."""
  spec = models.get_spec('vit_p_1gf', **TINY)
  row = timm_peer.run_subprocess(
    spec.to_dict(),
    batch_size=4,
    steps=1,
    repeats=1,
    warmup=0,
    dtype='float32',
    compile_model=False,
    timeout_s=0.5,  # less than importing torch takes
  )
  assert 'time limit of 0.5 s' in row['error']
