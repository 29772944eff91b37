"""Multi-head self-attention and ConViT's gated positional self-attention (GPSA).

Both layers have two evaluation paths that give the same output:
  * the fast path (default): `jax.nn.dot_product_attention`, which never materialises the (L, L)
    weights; `attention_impl='cudnn'` selects cuDNN flash attention on GPU (bf16/fp16; JAX's
    default `None` is the XLA path in jax 0.10, see `default_attention_impl`). For GPSA the
    positional attention P = softmax(pos_score) does not depend on the input, so it is computed
    once per layer and step as an (H, N, N) tensor shared by the whole batch, and the layer is
    evaluated as (1 - g) * attention(q, k, v) + g * (P v) (docs/references.md#convit-and-gpsa);
  * the explicit path (`return_weights=True`): materialises the softmax weights, exactly as the
    references do, so analysis code can look at them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Initializer = Callable[..., Any]


def relative_indices(grid_rows: int, grid_cols: int) -> np.ndarray:
  """GPSA's constant relative positions r_ij = [dx, dy, dx^2 + dy^2] for a row-major token grid.

  For query i and key j: dx = col(j) - col(i), dy = row(j) - row(i) (timm/convit
  `get_rel_indices`), generalised to non-square grids. Shape (N, N, 3), float32.
  """
  rows, cols = np.divmod(np.arange(grid_rows * grid_cols), grid_cols)
  dx = cols[None, :] - cols[:, None]
  dy = rows[None, :] - rows[:, None]
  return np.stack([dx, dy, dx * dx + dy * dy], axis=-1).astype(np.float32)


def gpsa_local_offsets(num_heads: int) -> np.ndarray:
  """Designed (dx, dy) attention centre of each head under the local init, NaN beyond k*k heads.

  ConViT local init (timm/convit `GPSA.local_init`): k = int(sqrt(H)), c = (k-1)/2 if k is even
  else k//2; head h1 + k*h2 peaks at dx = h2 - c, dy = h1 - c.
  """
  k = int(num_heads**0.5)
  center = (k - 1) / 2 if k % 2 == 0 else k // 2
  offsets = np.full((num_heads, 2), np.nan, dtype=np.float32)
  for h1 in range(k):
    for h2 in range(k):
      offsets[h1 + k * h2] = (h2 - center, h1 - center)
  return offsets


_POS_PROJ_BASE_INIT = nn.initializers.normal(0.02)


def gpsa_local_init(
  num_heads: int, locality_strength: float, base_init: Initializer = _POS_PROJ_BASE_INIT
) -> Initializer:
  """Initialiser of the (3, H) `pos_proj` kernel that makes GPSA start as a convolution.

  Head h with designed offset (ox, oy) gets weights (2*ox, 2*oy, -1), so its positional score is
  -alpha * ((dx - ox)^2 + (dy - oy)^2) + const: a Gaussian-like kernel centred on (ox, oy) whose
  sharpness is the locality strength alpha. Heads beyond k*k keep `base_init` (timm/convit apply
  trunc_normal(0.02) to every Linear first), and the whole kernel is scaled by alpha, as in
  `local_init` (P2 section 3, Eq. 5).
  """
  offsets = gpsa_local_offsets(num_heads)

  def init(key, shape, dtype=jnp.float32):
    if shape != (3, num_heads):
      raise ValueError(f'pos_proj kernel must have shape (3, {num_heads}), got {shape}.')
    kernel = base_init(key, shape, dtype)
    for h, (ox, oy) in enumerate(offsets):
      if not np.isnan(ox):
        kernel = kernel.at[:, h].set(jnp.array([2 * ox, 2 * oy, -1.0], dtype))
    return kernel * locality_strength

  return init


ATTENTION_IMPLS = (None, 'xla', 'cudnn')


def default_attention_impl(platform: str, dtype: Any) -> str | None:
  """The fused kernel to ask for: cuDNN flash attention on GPU in half precision, else XLA.

  jax 0.10's `dot_product_attention(implementation=None)` "currently falls back to xla"
  (jax/_src/nn/functions.py), so cuDNN must be requested explicitly; cuDNN needs fp16/bf16.
  """
  half = jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
  return 'cudnn' if platform == 'gpu' and half else None


def _softmax_weights(q: jnp.ndarray, k: jnp.ndarray) -> jnp.ndarray:
  """softmax(q k^T / sqrt(d)) in float32, shape (B, H, Lq, Lk), for the explicit path."""
  scale = q.shape[-1] ** -0.5
  logits = jnp.einsum('bqhd,bkhd->bhqk', q, k, preferred_element_type=jnp.float32) * scale
  return jax.nn.softmax(logits, axis=-1)


def _apply_weights(weights: jnp.ndarray, v: jnp.ndarray) -> jnp.ndarray:
  return jnp.einsum('bhqk,bkhd->bqhd', weights.astype(v.dtype), v)


class MultiHeadSelfAttention(nn.Module):
  """Standard MHSA with a fused qkv projection ([q | k | v], head-major, as torch/timm)."""

  num_heads: int
  qkv_bias: bool
  qkv_kernel_init: Initializer
  proj_kernel_init: Initializer
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  attention_impl: str | None = None  # jax.nn.dot_product_attention `implementation`

  @nn.compact
  def __call__(self, x, *, train: bool, return_weights: bool = False):
    batch, length, dim = x.shape
    heads = self.num_heads
    qkv = nn.Dense(
      3 * dim,
      use_bias=self.qkv_bias,
      kernel_init=self.qkv_kernel_init,
      bias_init=nn.initializers.zeros,
      dtype=self.dtype,
      name='qkv',
    )(x)
    q, k, v = jnp.moveaxis(qkv.reshape(batch, length, 3, heads, dim // heads), 2, 0)
    if return_weights:
      weights = _softmax_weights(q, k)
      y = _apply_weights(weights, v)
    else:
      weights = None
      y = jax.nn.dot_product_attention(q, k, v, implementation=self.attention_impl)
    y = nn.Dense(
      dim,
      kernel_init=self.proj_kernel_init,
      bias_init=nn.initializers.zeros,
      dtype=self.dtype,
      name='proj',
    )(y.reshape(batch, length, dim))
    y = nn.Dropout(self.dropout_rate)(y, deterministic=not train)
    return y, weights


class GatedPositionalSelfAttention(nn.Module):
  """GPSA (P2 section 3; timm/convit `GPSA`; docs/references.md#convit-and-gpsa).

  A = (1 - sigmoid(lambda_h)) softmax(q k^T / sqrt(d)) + sigmoid(lambda_h) softmax(r W_h + b_h),
  out = proj(A v). Parameter layout follows timm: `qk` (D -> 2D), `v` (D -> D, identity init),
  `proj`, `pos_proj` (3 -> H, local init), `gating_param` (H,), init ones.
  """

  num_heads: int
  grid_size: tuple[int, int]
  locality_strength: float = 1.0
  qkv_bias: bool = False
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  attention_impl: str | None = None  # jax.nn.dot_product_attention `implementation`

  @nn.compact
  def __call__(self, x, *, train: bool, return_weights: bool = False):
    batch, length, dim = x.shape
    heads = self.num_heads
    rows, cols = self.grid_size
    if length != rows * cols:
      raise ValueError(
        f'GPSA got {length} tokens for a {rows}x{cols} grid; GPSA blocks must '
        'come before the class token is added.'
      )
    dense_init = nn.initializers.normal(0.02)  # timm/convit _init_weights: trunc_normal_(std=.02)
    qk = nn.Dense(
      2 * dim,
      use_bias=self.qkv_bias,
      kernel_init=dense_init,
      bias_init=nn.initializers.zeros,
      dtype=self.dtype,
      name='qk',
    )(x)
    q, k = jnp.moveaxis(qk.reshape(batch, length, 2, heads, dim // heads), 2, 0)
    # local_init: v.weight = identity, so at init GPSA mixes the input itself (P2 section 3).
    v = nn.Dense(
      dim,
      use_bias=self.qkv_bias,
      kernel_init=lambda key, shape, dtype=jnp.float32: jnp.eye(*shape, dtype=dtype),
      bias_init=nn.initializers.zeros,
      dtype=self.dtype,
      name='v',
    )(x)
    v = v.reshape(batch, length, heads, dim // heads)

    # softmax over keys of pos_proj(r_ij): (H, N, N) float32, independent of the input, so one
    # tensor per layer and step serves the whole batch.
    rel = jnp.asarray(relative_indices(rows, cols))
    pos_scores = nn.Dense(
      heads,
      kernel_init=gpsa_local_init(heads, self.locality_strength),
      bias_init=nn.initializers.zeros,
      dtype=jnp.float32,
      name='pos_proj',
    )(rel)
    positional = jax.nn.softmax(jnp.moveaxis(pos_scores, -1, 0), axis=-1)
    gate = jax.nn.sigmoid(self.param('gating_param', nn.initializers.ones, (heads,), jnp.float32))

    if return_weights:
      content = _softmax_weights(q, k)
      weights = (1.0 - gate)[None, :, None, None] * content + gate[
        None, :, None, None
      ] * positional[None]
      weights = weights / weights.sum(axis=-1, keepdims=True)  # as the reference (a no-op)
      y = _apply_weights(weights, v)
    else:
      weights = None
      content_out = jax.nn.dot_product_attention(q, k, v, implementation=self.attention_impl)
      positional_out = jnp.einsum('hqk,bkhd->bqhd', positional.astype(v.dtype), v)
      g = gate[:, None].astype(v.dtype)
      y = (1.0 - g) * content_out + g * positional_out
    y = nn.Dense(
      dim, kernel_init=dense_init, bias_init=nn.initializers.zeros, dtype=self.dtype, name='proj'
    )(y.reshape(batch, length, dim))
    y = nn.Dropout(self.dropout_rate)(y, deterministic=not train)
    return y, weights


def positional_attention(pos_proj: dict, grid_size: tuple[int, int]) -> jnp.ndarray:
  """GPSA's positional attention (H, N, N) from a layer's `pos_proj` params, for analysis."""
  rel = jnp.asarray(relative_indices(*grid_size))
  scores = rel @ pos_proj['kernel'] + pos_proj['bias']
  return jax.nn.softmax(jnp.moveaxis(scores, -1, 0), axis=-1)
