"""Position embeddings resampled to another grid give timm's `resample_abs_pos_embed` (the committed
fixture of tools/make_parity_fixtures.py: pycls's layout with a class-token slot, ConViT's without,
square and non-square grids, up and down, bicubic and bilinear, antialias off)."""

import json
import os

import numpy as np
import pytest

from vit_jax_stems.models import pos_embedding

FIXTURE = os.path.join(
  os.path.dirname(os.path.dirname(__file__)), 'fixtures', 'parity', 'timm_pos_embed_resample.npz'
)


def _cases():
  with np.load(FIXTURE) as f:
    n = sum(1 for k in f.files if k.startswith('case_'))
    return [(json.loads(str(f[f'case_{i}'])), f[f'input_{i}'], f[f'output_{i}']) for i in range(n)]


CASES = _cases()


@pytest.mark.parametrize('case,x,expected', CASES, ids=[json.dumps(c[0]) for c in CASES])
def test_resampling_gives_timms_result(case, x, expected):
  got = pos_embedding.resample(
    x,
    tuple(case['new_grid']),
    num_prefix_tokens=case['num_prefix_tokens'],
    old_grid=tuple(case['old_grid']),
    interpolation=case['interpolation'],
  )
  assert got.shape == expected.shape and got.dtype == np.float32
  np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
  prefix = case['num_prefix_tokens']
  np.testing.assert_array_equal(got[:, :prefix], x[:, :prefix])  # the class slot, as it was


def test_the_fixture_covers_both_layouts_both_kernels_and_non_square_grids():
  kinds = {(c['num_prefix_tokens'], c['interpolation']) for c, _, _ in CASES}
  assert kinds == {(0, 'bicubic'), (0, 'bilinear'), (1, 'bicubic'), (1, 'bilinear')}
  assert any(c['new_grid'][0] != c['new_grid'][1] for c, _, _ in CASES)
  assert any(c['old_grid'][0] != c['old_grid'][1] for c, _, _ in CASES)


def test_square_grid_is_implied_and_the_same_grid_comes_back_unchanged():
  x = np.random.default_rng(0).standard_normal((1, 1 + 16, 4)).astype(np.float32)
  assert pos_embedding.resample(x, (4, 4), num_prefix_tokens=1) is x
  assert pos_embedding.resample(x, (6, 6), num_prefix_tokens=1).shape == (1, 37, 4)


def test_the_kernels_keep_a_constant_and_bilinear_keeps_a_ramp():
  """Each output is a weighted sum whose weights add to 1 (also at the clamped border), and the
  linear kernel reproduces a linear function between the outermost source centres."""
  ones = np.full((1, 36, 2), 0.7, np.float32)
  for interpolation in pos_embedding.INTERPOLATIONS:
    y = pos_embedding.resample(ones, (9, 4), num_prefix_tokens=0, interpolation=interpolation)
    np.testing.assert_allclose(y, 0.7, rtol=1e-6)
  rows, cols = np.meshgrid(np.arange(8.0), np.arange(8.0), indexing='ij')
  ramp = (2 * rows + 3 * cols).reshape(1, 64, 1).astype(np.float32)
  y = pos_embedding.resample(ramp, (16, 16), num_prefix_tokens=0, interpolation='bilinear')
  centres = (np.arange(16) + 0.5) / 2 - 0.5  # torch align_corners=False source positions
  expected = 2 * centres[:, None] + 3 * centres[None, :]
  np.testing.assert_allclose(y.reshape(16, 16)[1:-1, 1:-1], expected[1:-1, 1:-1], atol=1e-5)


@pytest.mark.parametrize(
  'kwargs,message',
  [
    (dict(antialias=True), 'antialias=True'),
    (dict(interpolation='nearest'), 'bicubic, bilinear'),
    (dict(old_grid=(3, 4)), 'not 16'),
  ],
)
def test_unsupported_options_and_wrong_grids_are_one_clear_error(kwargs, message):
  x = np.zeros((1, 17, 4), np.float32)
  with pytest.raises(ValueError, match=message):
    pos_embedding.resample(x, (5, 5), num_prefix_tokens=1, **kwargs)


def test_a_token_count_that_is_not_a_square_needs_its_grid():
  with pytest.raises(ValueError, match='old_grid'):
    pos_embedding.resample(np.zeros((1, 1 + 12, 4), np.float32), (4, 4), num_prefix_tokens=1)
