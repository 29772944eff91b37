"""Learned position embeddings resampled to another token grid (another image or patch size).

A model trained at one resolution is fine-tuned or evaluated at another by interpolating its
position embedding over the patch grid, as timm's `resample_abs_pos_embed`
(`timm/layers/pos_embed.py`) does: the prefix slots (pycls's class-token slot) are kept as they
are, the rest is reshaped to its (rows, cols) grid and resized with `torch.nn.functional.interpolate`
(align_corners=False). This module computes the same resize in numpy, so that conversion and
fine-tuning need no torch:

* `interpolation='bicubic'` (timm's default): torch's cubic convolution kernel, a = -0.75, with
  the four taps clamped at the border (`aten/src/ATen/native/UpSample.h`, `cubic_convolution1/2`,
  `upsample_get_value_bounded`);
* `interpolation='bilinear'`: torch's linear kernel, source index clamped at 0.

Both without antialiasing (`antialias=False`); timm's own default is `antialias=True`, which only
changes a downsampled grid, and which this module does not implement (`resample` says so). The
pycls family has one prefix slot (the class token, pycls `ViT`); ConViT's embedding covers the
patches only (timm/convit `ConVit.pos_embed`), so it has none. Parity with timm: tests/models/
test_pos_embedding.py against the committed fixture of tools/make_parity_fixtures.py.
"""

from __future__ import annotations

import math

import numpy as np

INTERPOLATIONS = ('bicubic', 'bilinear')
_CUBIC_A = -0.75  # torch's bicubic (PIL and TensorFlow use -0.5)


def resample(
  pos_embedding,
  new_grid: tuple[int, int],
  *,
  num_prefix_tokens: int,
  old_grid: tuple[int, int] | None = None,
  interpolation: str = 'bicubic',
  antialias: bool = False,
) -> np.ndarray:
  """(1, prefix + rows * cols, D) -> (1, prefix + new_rows * new_cols, D), float32.

  `old_grid` defaults to the square grid the token count implies (as timm's). The prefix slots
  are copied unchanged. Same grid: the input comes back unchanged.
  """
  if interpolation not in INTERPOLATIONS:
    raise ValueError(f'interpolation={interpolation!r}: choose one of {", ".join(INTERPOLATIONS)}.')
  if antialias:
    raise ValueError(
      'antialias=True (timm resample_abs_pos_embed default) is not implemented: pass '
      'antialias=False (the same result whenever the grid grows).'
    )
  x = np.asarray(pos_embedding)
  if x.ndim != 3 or x.shape[0] != 1:
    raise ValueError(f'Expected a position embedding of shape (1, tokens, D); got {x.shape}.')
  num_grid = x.shape[1] - num_prefix_tokens
  if old_grid is None:
    side = math.isqrt(max(num_grid, 0))
    if side * side != num_grid:
      raise ValueError(
        f'{num_grid} grid tokens (after {num_prefix_tokens} prefix slots) are not a square grid: '
        'pass old_grid=(rows, cols).'
      )
    old_grid = (side, side)
  old_grid, new_grid = tuple(map(int, old_grid)), tuple(map(int, new_grid))
  if old_grid[0] * old_grid[1] != num_grid:
    raise ValueError(f'old_grid={old_grid} has {old_grid[0] * old_grid[1]} tokens, not {num_grid}.')
  if min(new_grid) < 1:
    raise ValueError(f'new_grid={new_grid}: both sides must be at least 1.')
  if old_grid == new_grid:
    return x
  prefix, grid = x[:, :num_prefix_tokens], x[0, num_prefix_tokens:]
  grid = grid.astype(np.float64).reshape(*old_grid, -1)
  rows = _weights(old_grid[0], new_grid[0], interpolation)
  cols = _weights(old_grid[1], new_grid[1], interpolation)
  resized = np.einsum('ri,ijd,cj->rcd', rows, grid, cols)
  resized = resized.reshape(1, new_grid[0] * new_grid[1], -1).astype(x.dtype)
  return np.concatenate([prefix, resized], axis=1)


def prefix_tokens(spec) -> int:
  """Slots of the position embedding that are not on the grid: pycls's class token (pycls `ViT`
  adds the embedding after prepending it), none in ConViT (timm/convit `ConVit.pos_embed`)."""
  return 1 if spec.family == 'pycls' else 0


def for_spec(pos_embedding, spec, *, interpolation: str = 'bicubic') -> np.ndarray:
  """A (square-grid) position embedding of this family resampled to `spec`'s token grid
  (`ModelSpec.grid_size`: image_size over the patch size or the conv stem's strides)."""
  return resample(
    pos_embedding,
    spec.grid_size(),
    num_prefix_tokens=prefix_tokens(spec),
    interpolation=interpolation,
  )


def _weights(size_in: int, size_out: int, interpolation: str) -> np.ndarray:
  """(size_out, size_in) matrix of the 1-D resize torch's interpolate applies along one axis."""
  scale = size_in / size_out  # torch area_pixel_compute_scale, align_corners=False, size given
  out = np.arange(size_out)
  src = scale * (out + 0.5) - 0.5  # area_pixel_compute_source_index
  w = np.zeros((size_out, size_in))
  if interpolation == 'bilinear':
    src = np.maximum(src, 0.0)  # linear modes clamp a negative source index to 0
    x0 = np.floor(src).astype(int)
    x1 = np.minimum(x0 + 1, size_in - 1)
    t = src - x0
    np.add.at(w, (out, x0), 1.0 - t)
    np.add.at(w, (out, x1), t)
    return w
  x0 = np.floor(src).astype(int)
  t = src - x0
  taps = (_cubic_far(t + 1.0), _cubic_near(t), _cubic_near(1.0 - t), _cubic_far(2.0 - t))
  for offset, weight in zip(range(-1, 3), taps):
    np.add.at(w, (out, np.clip(x0 + offset, 0, size_in - 1)), weight)
  return w


def _cubic_near(x):  # |x| <= 1: torch cubic_convolution1
  a = _CUBIC_A
  return ((a + 2) * x - (a + 3)) * x * x + 1


def _cubic_far(x):  # 1 < |x| < 2: torch cubic_convolution2
  a = _CUBIC_A
  return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
