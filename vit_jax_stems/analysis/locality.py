"""Where attention looks: per layer and head locality measures of every model of the zoo.

All measures come from ONE forward pass with `return_attention=True`, so each layer's attention is
computed from that block's real input (the output of the block before it, after the stem,
position embedding and, in ConViT, the class token joining). That fixes the flaw of the reference
ConViT script (facebookresearch/convit `main.py`, issue #23; docs/references.md#nonlocality): it
feeds the patch embedding (without position embedding and without norm1) to every layer's
`get_attention_map`, so its "nonlocality" of layer l is that of layer l's weights applied to layer
0's input.

Measures, per layer and head (all spatial ones in a row-major grid of `rows x cols` patches,
offsets delta_ij = (dx, dy) = (col(j) - col(i), row(j) - row(i)) as GPSA's `relative_indices`):
  * nonlocality (P2 Eq. 8): D = (1/N) sum_ij A_ij ||delta_ij||, in patches, averaged over the
    batch; the layer value is the mean over heads.
  * mean attention distance (ViT paper, Dosovitskiy et al. 2021, Fig. 7): the same weighted
    distance in pixels, the patch being image_size / grid pixels tall and wide (for a conv stem
    that is the product of its strides when it divides the image).
  * class-token mass: the attention each patch query gives to the class token (see below).
  * for GPSA layers, from the parameters: the gate sigmoid(lambda_h); the positional attention
    P_h = softmax(pos_proj(r)) and its nonlocality, centre (attention-weighted mean offset, in
    patches, averaged over queries at least `margin` patches from every border, so the grid's
    edge does not pull it in) and span (attention-weighted standard deviation of the offset around
    each query's own centre, same queries); the closed-form centre -(w_x, w_y) / (2 w_d) and
    strength -w_d of the quadratic score (the reference script's "distances"); and the content
    attention's nonlocality, recovered from A = (1 - g) C + g P by linearity.

Class token: pycls models carry it at index 0 in every block; ConViT adds it at index 0 after its
last GPSA block (GPSA blocks have patches only). Spatial measures use patch queries and patch keys
only: the class-token query row is dropped, and so is the class-token key column, after which each
patch query's remaining weights are renormalised to sum to one (A_ij / (1 - A_i,cls)), so D is a
distance "given that the query looks at a patch". The mass A_i,cls that each patch query puts on
the class token is reported separately (`class_token_mass`, averaged over queries and images;
None in blocks without a class token).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vit_jax_stems.models import attention as attention_lib
from vit_jax_stems.models import layers_layout

CLASS_TOKEN_NOTE = (
  'Spatial measures use patch queries and patch keys only: the class-token query row and key '
  "column are dropped and each patch query's weights renormalised (A_ij / (1 - A_i,cls)). "
  'class_token_mass is the attention each patch query gives the class token, averaged over '
  'queries and images (null in blocks without a class token).'
)

# Below this, a query is treated as looking only at the class token and its renormalised patch
# weights are meaningless; the factor is clipped here to stay finite.
_MIN_PATCH_MASS = 1e-6


# ----------------------------------------------------------------------------- grid geometry
def patch_offsets(grid: tuple[int, int]) -> np.ndarray:
  """(N, N, 2) offsets [dx, dy] from query i to key j, in patches (GPSA's relative_indices)."""
  return attention_lib.relative_indices(*grid)[..., :2]


def default_margin(grid: tuple[int, int]) -> int:
  """Queries this far from every border count as 'interior' for centres and spans.

  A quarter of the shorter side: 3 of 14 at 224/16, 2 of 8 at 32/4. Designed GPSA offsets are at
  most (sqrt(H) - 1) / 2 patches (1.5 for 16 heads), so interior queries see their whole kernel.
  """
  return min(grid) // 4


def interior_queries(grid: tuple[int, int], margin: int) -> np.ndarray:
  """(N,) bool mask of queries at least `margin` patches from every border (all if none is)."""
  rows, cols = grid
  r, c = np.divmod(np.arange(rows * cols), cols)
  mask = (r >= margin) & (r < rows - margin) & (c >= margin) & (c < cols - margin)
  return mask if mask.any() else np.ones_like(mask)


def patch_size_px(image_size: int | tuple[int, int], grid: tuple[int, int]) -> tuple[float, float]:
  """(height, width) of one patch in pixels: image size / grid size."""
  h, w = (image_size, image_size) if np.isscalar(image_size) else image_size
  return h / grid[0], w / grid[1]


def _xp(x):
  """jax.numpy for JAX arrays and tracers (inside jit), numpy otherwise (fast on the host)."""
  return jnp if isinstance(x, jax.Array) else np


# ----------------------------------------------------------------------------- class token
def split_class_token(weights, num_patches: int):
  """(patch-to-patch weights renormalised, class-token mass per patch query or None).

  `weights` (..., L, L) are softmax rows. L == N: no class token, returned as is. L == N + 1: the
  class token is index 0 (both families); its query row and key column are dropped and each patch
  row renormalised. Returns ((..., N, N), (..., N) or None).
  """
  length = weights.shape[-1]
  if length == num_patches:
    return weights, None
  if length != num_patches + 1:
    raise ValueError(
      f'Attention over {length} tokens for a grid of {num_patches} patches: '
      'expected N (GPSA blocks) or N + 1 (class token at index 0).'
    )
  xp = _xp(weights)
  class_mass = weights[..., 1:, 0]
  patch = weights[..., 1:, 1:] / xp.maximum(1.0 - class_mass, _MIN_PATCH_MASS)[..., None]
  return patch, class_mass


# ----------------------------------------------------------------------------- measures
def nonlocality(patch_weights, grid: tuple[int, int], query_mask=None):
  """P2 Eq. 8 per leading index: (1/N) sum_ij A_ij ||delta_ij||, in patches. (..., N, N) -> (...)."""
  xp = _xp(patch_weights)
  dist = np.linalg.norm(patch_offsets(grid), axis=-1)
  return _query_mean(xp.sum(patch_weights * dist, axis=-1), query_mask)


def attention_distance_px(
  patch_weights, grid: tuple[int, int], patch_px: tuple[float, float], query_mask=None
):
  """Mean attention distance in pixels (ViT paper): distances between patch centres, weighted."""
  xp = _xp(patch_weights)
  offsets = patch_offsets(grid) * np.array([patch_px[1], patch_px[0]], np.float32)
  dist = np.linalg.norm(offsets, axis=-1)
  return _query_mean(xp.sum(patch_weights * dist, axis=-1), query_mask)


def attention_centre(patch_weights, grid: tuple[int, int], query_mask=None):
  """Attention-weighted mean offset (dx, dy) in patches, averaged over queries. (..., 2)."""
  xp = _xp(patch_weights)
  per_query = xp.einsum('...ij,ijc->...ic', patch_weights, patch_offsets(grid))
  return _query_mean(xp.moveaxis(per_query, -1, -2), query_mask)


def attention_span(patch_weights, grid: tuple[int, int], query_mask=None):
  """sqrt(mean_i sum_j A_ij ||delta_ij - mu_i||^2), mu_i the query's weighted mean offset."""
  xp = _xp(patch_weights)
  offsets = patch_offsets(grid)
  mean = xp.einsum('...ij,ijc->...ic', patch_weights, offsets)
  second = xp.sum(patch_weights * np.sum(offsets * offsets, axis=-1), axis=-1)
  variance = xp.maximum(second - xp.sum(mean * mean, axis=-1), 0.0)
  return xp.sqrt(_query_mean(variance, query_mask))


def _query_mean(per_query, query_mask):
  xp = _xp(per_query)
  if query_mask is None:
    return xp.mean(per_query, axis=-1)
  mask = np.asarray(query_mask, np.float32)
  return xp.sum(per_query * mask, axis=-1) / mask.sum()


def gpsa_closed_form(pos_proj: dict) -> dict[str, np.ndarray]:
  """Centre and strength of GPSA's quadratic positional score w_x dx + w_y dy + w_d (dx^2+dy^2).

  For w_d < 0 the score is -alpha (||delta - c||^2) + const with alpha = -w_d and
  c = -(w_x, w_y) / (2 w_d): the peak of the unnormalised kernel (the reference script logs
  ||c|| as "distances"). Under the local init c is exactly `gpsa_local_offsets` (any alpha).
  Heads with w_d >= 0 have no peak: NaN centre.
  """
  w = np.asarray(pos_proj['kernel'], np.float64)  # (3, H): rows [dx, dy, dx^2 + dy^2]
  with np.errstate(divide='ignore', invalid='ignore'):
    centre = np.where(w[2] < 0, -w[:2] / (2 * w[2]), np.nan).T
  return {'centre': centre.astype(np.float32), 'strength': (-w[2]).astype(np.float32)}


# ----------------------------------------------------------------------------- model layout
def layer_names(spec) -> list[str]:
  return [f'encoder/{layers_layout.block_name(i)}' for i in range(spec.depth)]


def is_gpsa(spec, layer: int) -> bool:
  return spec.family == 'convit' and layer < spec.num_gpsa_layers


def grid_of(model, variables) -> tuple[int, int]:
  """The token grid (rows, cols) of the stem, from shapes only (nothing is computed)."""
  size = model.spec.image_size
  images = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
  _, out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, images)
  return tuple(out['stem'].shape[1:3])


def _attn_params(per_block_variables, layer: int) -> dict:
  return per_block_variables['params']['encoder'][layers_layout.block_name(layer)]['attn']


# ----------------------------------------------------------------------------- forward passes
@functools.lru_cache(maxsize=16)
def _jitted_forward(model):
  """jit(variables, images) -> (logits, out) with attention; one compile per model and shape."""
  return jax.jit(lambda v, x: model.apply(v, x, train=False, return_attention=True))


def forward(model, variables, images) -> dict[str, np.ndarray]:
  """The `out` dict of one forward with return_attention=True, on the host: 'stem', each
  block's input 'encoder/blockNN' and its attention 'encoder/blockNN/attention' (B, H, L, L)."""
  _, out = _jitted_forward(model)(variables, jnp.asarray(images, jnp.float32))
  return jax.device_get(out)


def attention_weights(model, variables, images) -> dict[str, np.ndarray]:
  """{'encoder/blockNN': (B, H, L, L)} softmax weights of one forward from each block's input."""
  out = forward(model, variables, images)
  return {name: out[f'{name}/attention'] for name in layer_names(model.spec)}


def _per_image(weights: np.ndarray, grid, patch_px) -> dict[str, np.ndarray | None]:
  """(B, H, L, L) -> {nonlocality, attention_distance_px, class_token_mass}, each (B, H)."""
  patch, class_mass = split_class_token(np.asarray(weights, np.float64), grid[0] * grid[1])
  return {
    'nonlocality': nonlocality(patch, grid),
    'attention_distance_px': attention_distance_px(patch, grid, patch_px),
    'class_token_mass': None if class_mass is None else class_mass.mean(axis=-1),
  }


def _check_images(model, images) -> np.ndarray:
  images = np.asarray(images, np.float32)
  size = model.spec.image_size
  if images.ndim != 4 or images.shape[1:] != (size, size, 3) or images.shape[0] == 0:
    raise ValueError(
      f'images must be a non-empty (batch, {size}, {size}, 3) array, normalised as '
      f"the model's input; got {images.shape}."
    )
  return images


def measure(
  model, variables, images, *, batch_size: int = 16, margin: int | None = None
) -> dict[str, Any]:
  """Every locality measure of `model` with `variables` on `images` (NHWC, normalised).

  Returns a JSON-ready dict: 'grid', 'patch_px', 'num_images', 'num_heads', 'margin',
  'class_token' (the note above) and 'layers', a list with one dict per block: 'name', 'kind'
  ('gpsa' | 'mhsa'), 'has_class_token', per head lists 'nonlocality' (patches),
  'attention_distance_px', 'class_token_mass' (or None), their head means '*_mean', and for GPSA
  'gate', 'positional_nonlocality', 'content_nonlocality', 'positional_centre' ([dx, dy] per
  head), 'positional_span', 'closed_form_centre', 'locality_strength', 'designed_offset'.
  Images are processed `batch_size` at a time; means are over all images.
  """
  images = _check_images(model, images)
  spec = model.spec
  grid = grid_of(model, variables)
  patch_px = patch_size_px(spec.image_size, grid)
  margin = default_margin(grid) if margin is None else int(margin)

  # Every chunk has the same shape (the last one padded, its padding dropped): one compile.
  batch_size = min(batch_size, len(images))
  sums: dict[str, dict[str, np.ndarray | None]] = {}
  for start in range(0, len(images), batch_size):
    chunk = images[start : start + batch_size]
    real = len(chunk)
    if real < batch_size:
      chunk = np.concatenate([chunk, np.zeros((batch_size - real,) + chunk.shape[1:], chunk.dtype)])
    weights = attention_weights(model, variables, chunk)
    for name, layer_weights in weights.items():
      values = _per_image(layer_weights[:real], grid, patch_px)
      acc = sums.setdefault(name, {k: None for k in values})
      for key, value in values.items():
        if value is not None:
          total = np.asarray(value, np.float64).sum(axis=0)
          acc[key] = total if acc[key] is None else acc[key] + total
  count = len(images)

  # The parameters are read per block whatever the model's layout (models/layers_layout.py).
  per_block = layers_layout.to_layout(variables, spec, stacked=False)
  layers = []
  for i, name in enumerate(layer_names(spec)):
    values = {k: None if v is None else v / count for k, v in sums[name].items()}
    layer = {
      'name': name,
      'index': i,
      'kind': 'gpsa' if is_gpsa(spec, i) else 'mhsa',
      'has_class_token': values['class_token_mass'] is not None,
    }
    for key, value in values.items():
      layer[key] = None if value is None else _floats(value)
      layer[f'{key}_mean'] = None if value is None else float(np.mean(value))
    if is_gpsa(spec, i):
      layer.update(
        gpsa_measures(_attn_params(per_block, i), grid, margin, np.asarray(values['nonlocality']))
      )
    layers.append(layer)
  return {
    'grid': list(grid),
    'patch_px': list(patch_px),
    'image_size': spec.image_size,
    'num_images': count,
    'num_heads': spec.num_heads,
    'margin': margin,
    'class_token': CLASS_TOKEN_NOTE,
    'layers': layers,
  }


@functools.lru_cache(maxsize=16)
def _jitted_positional(grid):
  return jax.jit(lambda pos_proj: attention_lib.positional_attention(pos_proj, grid))


def gpsa_measures(
  attn_params: dict, grid: tuple[int, int], margin: int, nonlocality_total: np.ndarray | None = None
) -> dict[str, Any]:
  """Gate and positional-attention measures of one GPSA layer, from its parameters.

  `nonlocality_total`: the measured nonlocality of the gated mix A, per head; with it the
  content part's nonlocality follows from D(A) = (1 - g) D(C) + g D(P) (NaN where g ~ 1).
  """
  gate = 1.0 / (1.0 + np.exp(-np.asarray(attn_params['gating_param'], np.float64)))
  positional = np.asarray(_jitted_positional(grid)(attn_params['pos_proj']), np.float64)
  mask = interior_queries(grid, margin)
  d_pos = np.asarray(nonlocality(positional, grid), np.float64)
  closed = gpsa_closed_form(attn_params['pos_proj'])
  heads = gate.shape[0]
  result = {
    'gate': _floats(gate),
    'gate_mean': float(gate.mean()),
    'positional_nonlocality': _floats(d_pos),
    'positional_centre': _floats(attention_centre(positional, grid, mask)),
    'positional_span': _floats(attention_span(positional, grid, mask)),
    'closed_form_centre': _floats(closed['centre']),
    'locality_strength': _floats(closed['strength']),
    'designed_offset': _floats(attention_lib.gpsa_local_offsets(heads)),
  }
  if nonlocality_total is not None:
    with np.errstate(divide='ignore', invalid='ignore'):
      content = np.where(1 - gate > 1e-6, (nonlocality_total - gate * d_pos) / (1 - gate), np.nan)
    result['content_nonlocality'] = _floats(content)
  return result


def _floats(x) -> list:
  """Nested lists of Python floats (NaN -> None, so the JSON is standard)."""
  x = np.asarray(x, np.float64)
  if x.ndim == 0:
    return None if math.isnan(x) else float(x)
  return [_floats(v) for v in x]


# ----------------------------------------------------------------------------- maps for plots
def query_attention_maps(model, variables, image, queries: Sequence[tuple[int, int]]) -> dict:
  """Attention of chosen query patches over the grid, for one image.

  `queries` are (row, col) patches. Returns {'grid', 'queries', 'maps': (layers, queries, H,
  rows, cols) float32 of patch-to-patch weights (class token removed and renormalised, as the
  measures), 'class_token_mass': (layers, queries, H) (NaN where the block has none)}.
  """
  image = _check_images(model, np.asarray(image)[None] if np.ndim(image) == 3 else image)[:1]
  grid = grid_of(model, variables)
  rows, cols = grid
  for r, c in queries:
    if not (0 <= r < rows and 0 <= c < cols):
      raise ValueError(f'Query patch ({r}, {c}) is outside the {rows}x{cols} grid.')
  index = [r * cols + c for r, c in queries]
  weights = jax.device_get(attention_weights(model, variables, image))
  maps, masses = [], []
  for name in layer_names(model.spec):
    patch, class_mass = split_class_token(np.asarray(weights[name][0], np.float64), rows * cols)
    maps.append(np.asarray(patch)[:, index].transpose(1, 0, 2).reshape(len(index), -1, rows, cols))
    masses.append(
      np.full((len(index), patch.shape[0]), np.nan)
      if class_mass is None
      else np.asarray(class_mass)[:, index].T
    )
  return {
    'grid': grid,
    'queries': list(queries),
    'maps': np.stack(maps).astype(np.float32),
    'class_token_mass': np.stack(masses).astype(np.float32),
  }
