"""The vision transformer of both papers: stem -> tokens -> pre-LN encoder -> class-token head.

One module covers ViT_P, ViT_C (pycls family) and ConViT (convit family); a `ModelSpec` says which.
Every forward returns `(logits, out)` where `out` holds named intermediates ('stem', each block's
input 'encoder/blockNN', 'pre_logits' and, on request, 'encoder/blockNN/attention'), so analysis
code reads activations instead of patching the model (big_vision convention).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vit_jax_stems.models import attention as attention_lib
from vit_jax_stems.models import layers_layout, stems
from vit_jax_stems.models.spec import ModelSpec

Initializer = Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class FamilyInits:
  """The initialisers each reference uses, with their source."""

  qkv_kernel: Initializer
  proj_kernel: Initializer
  mlp_kernel: Initializer
  mlp_bias: Initializer
  head_kernel: Initializer
  cls_token: Initializer
  pos_embedding: Initializer


# pycls main `init_weights_vit` + torch.nn.MultiheadAttention._reset_parameters (see
# docs/references.md#p1-initialisation-pycls):
# in_proj xavier_uniform over the fused (3D x D) weight (same fans as our (D, 3D) kernel), biases 0;
# out_proj keeps torch Linear's default kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)), bias 0;
# MLP xavier_uniform with N(0, 1e-6) biases; head zeros; pos embedding N(0, 0.02); class token 0.
PYCLS_INITS = FamilyInits(
  qkv_kernel=nn.initializers.xavier_uniform(),
  proj_kernel=stems.torch_default_kernel_init,
  mlp_kernel=nn.initializers.xavier_uniform(),
  mlp_bias=nn.initializers.normal(1e-6),
  head_kernel=nn.initializers.zeros,
  cls_token=nn.initializers.zeros,
  pos_embedding=nn.initializers.normal(0.02),
)

# timm/convit ConVit._init_weights: every Linear trunc_normal_(std=.02) (cut at absolute +-2, a
# plain normal in effect), biases 0; pos_embed and cls_token trunc_normal_(std=.02).
CONVIT_INITS = FamilyInits(
  qkv_kernel=nn.initializers.normal(0.02),
  proj_kernel=nn.initializers.normal(0.02),
  mlp_kernel=nn.initializers.normal(0.02),
  mlp_bias=nn.initializers.zeros,
  head_kernel=nn.initializers.normal(0.02),
  cls_token=nn.initializers.normal(0.02),
  pos_embedding=nn.initializers.normal(0.02),
)


class Mlp(nn.Module):
  """fc -> exact GELU (torch.nn.GELU, not Flax's tanh default) -> fc, with biases."""

  mlp_dim: int
  kernel_init: Initializer
  bias_init: Initializer
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    dim = x.shape[-1]
    x = nn.Dense(
      self.mlp_dim,
      kernel_init=self.kernel_init,
      bias_init=self.bias_init,
      dtype=self.dtype,
      name='fc1',
    )(x)
    x = nn.gelu(x, approximate=False)
    x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
    x = nn.Dense(
      dim, kernel_init=self.kernel_init, bias_init=self.bias_init, dtype=self.dtype, name='fc2'
    )(x)
    return nn.Dropout(self.dropout_rate)(x, deterministic=not train)


# Rematerialisation policies for `remat_policy` (jax.checkpoint_policies): what the backward pass
# may keep from a block's forward instead of recomputing it.
REMAT_POLICIES = {
  'block': jax.checkpoint_policies.nothing_saveable,  # recompute the whole block
  'block_dots': jax.checkpoint_policies.dots_with_no_batch_dims_saveable,  # keep weight matmuls
}

# What a scanned block keeps for the backward when no remat_policy is asked for. A scan's
# backward reads every intermediate it needs from buffers stacked over the layers, written in the
# forward, so by default JAX keeps all of them (LayerNorm and GELU outputs included), which the
# unrolled program's fusions avoid; keeping the matmul outputs only and recomputing the
# elementwise ops between them gives the unrolled step time back (vit_p_4gf, batch 2, one CPU
# thread: 532 ms a step against 535 unrolled and 610 keeping everything; benchmarks/NOTES.md).
SCANNED_BLOCK_POLICY = jax.checkpoint_policies.dots_saveable


class DropPath(nn.Module):
  """Stochastic depth at a rate given with each call, which may be traced: a scanned layer's own.

  The arithmetic of nn.Dropout(rate, broadcast_dims=(1, 2)) (flax/linen/stochastic.py), which the
  unrolled blocks use with their static rate: keep each example's branch with probability
  1 - rate and scale it by 1 / (1 - rate). At rate 0 every draw is kept (bernoulli compares
  uniform [0, 1) draws with 1) and the branch is divided by 1: exactly the identity.
  """

  @nn.compact
  def __call__(self, x, rate, *, deterministic: bool):
    if deterministic:
      return x
    keep = 1.0 - rate
    mask = jax.random.bernoulli(self.make_rng('dropout'), keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jax.lax.select(
      jnp.broadcast_to(mask, x.shape), x / keep.astype(x.dtype), jnp.zeros_like(x)
    )


class EncoderBlock(nn.Module):
  """Pre-LN block: x + attn(LN(x)), then x + MLP(LN(x)), with optional stochastic depth.

  `train` and `return_weights` are positional so that `nn.remat` can mark them static.
  `layer_rate`: the stochastic-depth rate of a scanned block (a traced scalar, see DropPath);
  None uses the static `drop_path_rate`.
  """

  spec: ModelSpec
  use_gpsa: bool
  grid_size: tuple[int, int]
  drop_path_rate: float = 0.0
  dtype: Any = jnp.float32
  attention_impl: str | None = None

  @nn.compact
  def __call__(self, x, train: bool, return_weights: bool = False, layer_rate=None):
    spec = self.spec
    inits = PYCLS_INITS if spec.family == 'pycls' else CONVIT_INITS
    if self.use_gpsa:
      attn = attention_lib.GatedPositionalSelfAttention(
        num_heads=spec.num_heads,
        grid_size=self.grid_size,
        locality_strength=spec.locality_strength,
        qkv_bias=spec.qkv_bias,
        dropout_rate=spec.dropout_rate,
        dtype=self.dtype,
        attention_impl=self.attention_impl,
        name='attn',
      )
    else:
      attn = attention_lib.MultiHeadSelfAttention(
        num_heads=spec.num_heads,
        qkv_bias=spec.qkv_bias,
        qkv_kernel_init=inits.qkv_kernel,
        proj_kernel_init=inits.proj_kernel,
        dropout_rate=spec.dropout_rate,
        dtype=self.dtype,
        attention_impl=self.attention_impl,
        name='attn',
      )
    # Stochastic depth drops the whole residual branch per example (DeiT/timm DropPath).
    if layer_rate is None:
      dropout = nn.Dropout(self.drop_path_rate, broadcast_dims=(1, 2))
      drop_path = lambda y: dropout(y, deterministic=not train)
    else:
      scanned_drop = DropPath()
      drop_path = lambda y: scanned_drop(y, layer_rate, deterministic=not train)
    y = nn.LayerNorm(epsilon=spec.layer_norm_eps, dtype=self.dtype, name='norm1')(x)
    y, weights = attn(y, train=train, return_weights=return_weights)
    x = x + drop_path(y)
    y = nn.LayerNorm(epsilon=spec.layer_norm_eps, dtype=self.dtype, name='norm2')(x)
    y = Mlp(
      spec.mlp_dim, inits.mlp_kernel, inits.mlp_bias, spec.dropout_rate, self.dtype, name='mlp'
    )(y, train=train)
    return x + drop_path(y), weights


class Encoder(nn.Module):
  """The stack of blocks. ConViT's class token joins after the last GPSA block.

  Unrolled (spec.scan_layers=False): one module per block, `blockNN`. Scanned: one `nn.scan` per
  group of layers_layout.block_groups over stacked parameters, with per-layer params and dropout
  keys (split_rngs) and each layer's stochastic-depth rate as a scanned input; the scan also
  returns every block's input (and attention), unstacked into the same `out` keys. A scanned
  block is rematerialised with `remat_policy`, or SCANNED_BLOCK_POLICY when there is none.
  """

  spec: ModelSpec
  grid_size: tuple[int, int]
  dtype: Any = jnp.float32
  attention_impl: str | None = None
  remat_policy: str | None = None

  @nn.compact
  def __call__(self, x, cls_token, *, train: bool, return_attention: bool = False):
    spec = self.spec
    out = {}
    block_cls = EncoderBlock
    if self.remat_policy is not None or spec.scan_layers:  # same parameter tree
      policy = SCANNED_BLOCK_POLICY
      if self.remat_policy is not None:
        policy = REMAT_POLICIES[self.remat_policy]
      block_cls = nn.remat(
        EncoderBlock,
        static_argnums=(2, 3),
        policy=policy,
        # jax.checkpoint: inside a scan CSE cannot undo the recomputation, so the guard is moot.
        prevent_cse=not spec.scan_layers,
      )
    # Stochastic depth rates linspace(0, drop_path, depth) (timm/convit, DeiT).
    rates = np.linspace(0.0, spec.drop_path_rate, spec.depth)

    def add_class_token(x):
      return jnp.concatenate([jnp.broadcast_to(cls_token, (x.shape[0], 1, x.shape[2])), x], 1)

    if not spec.scan_layers:
      for i in range(spec.depth):
        if spec.family == 'convit' and i == spec.num_gpsa_layers:
          x = add_class_token(x)
        name = layers_layout.block_name(i)
        out[name] = x
        x, weights = block_cls(
          spec,
          use_gpsa=i < spec.num_gpsa_layers,
          grid_size=self.grid_size,
          drop_path_rate=float(rates[i]),
          dtype=self.dtype,
          attention_impl=self.attention_impl,
          name=name,
        )(x, train, return_attention)
        if return_attention:
          out[f'{name}/attention'] = weights
      return x, out

    def layer(block, x, layer_rate):
      y, weights = block(x, train, return_attention, layer_rate)
      return y, (x, weights)

    for group, layers in layers_layout.block_groups(spec):
      if spec.family == 'convit' and layers.start == spec.num_gpsa_layers:
        x = add_class_token(x)
      scan = nn.scan(
        layer,
        variable_axes={'params': 0},
        split_rngs={'params': True, 'dropout': True},
        length=len(layers),
      )
      block = block_cls(
        spec,
        use_gpsa=layers.start < spec.num_gpsa_layers,
        grid_size=self.grid_size,
        dtype=self.dtype,
        attention_impl=self.attention_impl,
        name=group,
      )
      # No drop path at all (rate 0 everywhere) needs no rates and no dropout key.
      layer_rates = jnp.asarray(rates[layers.start : layers.stop], jnp.float32)
      x, (inputs, weights) = scan(block, x, layer_rates if spec.drop_path_rate else None)
      for j, i in enumerate(layers):
        name = layers_layout.block_name(i)
        out[name] = inputs[j]
        if return_attention:
          out[f'{name}/attention'] = weights[j]
    return x, out


class VisionTransformer(nn.Module):
  """ViT_P / ViT_C / ConViT, chosen by `spec`. Parameters are float32; `dtype` is compute.

  `attention_impl` (None/'xla' or 'cudnn') and `remat_policy` (None, 'block', 'block_dots')
  change how the forward runs, never its parameters or its outputs; `spec.scan_layers` changes
  the parameter layout too (models/layers_layout.py), never the outputs.
  """

  spec: ModelSpec
  dtype: Any = jnp.float32
  attention_impl: str | None = None
  remat_policy: str | None = None

  @nn.compact
  def __call__(self, images, *, train: bool = False, return_attention: bool = False):
    spec = self.spec
    size = spec.image_size
    if images.ndim != 4 or images.shape[1:] != (size, size, 3):
      raise ValueError(
        f'Expected NHWC images of shape (batch, {size}, {size}, 3) for this model '
        f'(spec.image_size={size}); got {images.shape}. Set image_size when creating the model.'
      )
    inits = PYCLS_INITS if spec.family == 'pycls' else CONVIT_INITS
    out = {}
    x = images.astype(self.dtype)

    # ---- stem: pixels -> (B, h, w, D) token grid
    if spec.stem == 'patchify':
      if spec.family == 'pycls':
        kernel_init = stems.pycls_patchify_init(spec.patch_size)
        bias_init = nn.initializers.zeros
      else:  # timm/convit PatchEmbed keeps torch's Conv2d default init
        kernel_init = stems.torch_default_kernel_init
        bias_init = stems.torch_default_bias_init(3 * spec.patch_size**2)
      x = stems.PatchifyStem(
        spec.hidden_size, spec.patch_size, kernel_init, bias_init, self.dtype, name='stem'
      )(x)
    else:
      x = stems.ConvStem(
        spec.stem_kernels,
        spec.stem_strides,
        spec.stem_channels,
        spec.batch_norm_eps,
        spec.batch_norm_momentum,
        self.dtype,
        name='stem',
      )(x, train=train)
    out['stem'] = x
    batch, rows, cols, dim = x.shape
    x = x.reshape(batch, rows * cols, dim)

    # ---- class token and position embedding (each family's own handling)
    cls_token = self.param('cls_token', inits.cls_token, (1, 1, dim), jnp.float32)
    cls_token = cls_token.astype(self.dtype)
    if spec.family == 'pycls':
      x = jnp.concatenate([jnp.broadcast_to(cls_token, (batch, 1, dim)), x], axis=1)
    pos_embedding = self.param(
      'pos_embedding', inits.pos_embedding, (1, x.shape[1], dim), jnp.float32
    )
    x = x + pos_embedding.astype(self.dtype)
    x = nn.Dropout(spec.dropout_rate)(x, deterministic=not train)

    # ---- encoder
    x, encoder_out = Encoder(
      spec, (rows, cols), self.dtype, self.attention_impl, self.remat_policy, name='encoder'
    )(x, cls_token, train=train, return_attention=return_attention)
    out.update({f'encoder/{k}': v for k, v in encoder_out.items()})
    x = nn.LayerNorm(epsilon=spec.layer_norm_eps, dtype=self.dtype, name='norm')(x)

    # ---- head on the class token
    out['pre_logits'] = x[:, 0]
    logits = nn.Dense(
      spec.num_classes,
      kernel_init=inits.head_kernel,
      bias_init=nn.initializers.zeros,
      dtype=self.dtype,
      name='head',
    )(x[:, 0])
    return logits.astype(jnp.float32), out
