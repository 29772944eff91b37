"""The model zoo of both papers, created by name from one registry.

ViT_P / ViT_C shapes: P1 Table 1 and the pycls `vitconfigs` yaml files
(docs/references.md#p1-models-pycls). ConViT shapes: P2 Table 1 and timm/convit
`convit_tiny/small/base` (docs/references.md#convit-and-gpsa).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from vit_jax_stems.models.attention import ATTENTION_IMPLS
from vit_jax_stems.models.spec import ModelSpec
from vit_jax_stems.models.vit import REMAT_POLICIES, VisionTransformer

_REGISTRY: dict[str, ModelSpec] = {}

# The compute dtypes a model runs in, by the name configs and command lines use (parameters stay
# float32 whatever the compute dtype).
COMPUTE_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def compute_dtype(dtype: Any) -> jnp.dtype:
  """A name of COMPUTE_DTYPES, or one of its dtypes -> the jnp dtype; anything else is an error."""
  name = dtype if isinstance(dtype, str) else jnp.dtype(dtype).name
  if name not in COMPUTE_DTYPES:
    raise ValueError(f'dtype={dtype!r}: use one of {tuple(COMPUTE_DTYPES)}.')
  return jnp.dtype(COMPUTE_DTYPES[name])


def register(name: str, spec: ModelSpec) -> None:
  if name in _REGISTRY:
    raise ValueError(f'Model {name!r} is registered twice.')
  _REGISTRY[name] = spec


def list_models() -> list[str]:
  return sorted(_REGISTRY)


def get_spec(name: str, **overrides: Any) -> ModelSpec:
  """The registered spec of `name`, with any field replaced (validated again)."""
  if name not in _REGISTRY:
    raise ValueError(f'Unknown model {name!r}. Registered models: {", ".join(list_models())}.')
  return _REGISTRY[name].replace(**overrides) if overrides else _REGISTRY[name]


def create_model(
  name: str,
  *,
  dtype: Any = jnp.float32,
  attention_impl: str | None = None,
  remat_policy: str | None = None,
  **overrides: Any,
) -> VisionTransformer:
  """A Flax module for model `name`; `overrides` replace spec fields (num_classes, image_size...).

  `dtype` is the compute dtype, a name of COMPUTE_DTYPES or its jnp dtype; parameters are always
  float32.
  `attention_impl`: None/'xla' or 'cudnn' (see attention.default_attention_impl);
  `remat_policy`: None or one of vit.REMAT_POLICIES, to trade compute for activation memory.
  """
  dtype = compute_dtype(dtype)
  if attention_impl not in ATTENTION_IMPLS:
    raise ValueError(f'attention_impl={attention_impl!r}: use one of {ATTENTION_IMPLS}.')
  if remat_policy is not None and remat_policy not in REMAT_POLICIES:
    raise ValueError(f'remat_policy={remat_policy!r}: use None or one of {sorted(REMAT_POLICIES)}.')
  return VisionTransformer(
    get_spec(name, **overrides),
    dtype=dtype,
    attention_impl=attention_impl,
    remat_policy=remat_policy,
  )


# ----------------------------------------------------------------------------- ViT_P and ViT_C
# (hidden, heads, mlp, blocks of ViT_P) per P1 Table 1 / pycls vitconfigs `ViT-P-*.yaml`.
_PYCLS_SIZES = {
  '1gf': (192, 3, 576, 12),
  '4gf': (384, 6, 1152, 12),
  '18gf': (768, 12, 3072, 12),
  '36gf': (1024, 16, 4096, 14),
  '72gf': (1152, 18, 4608, 22),
}
# Conv stems (kernels, strides, channels) per pycls vitconfigs `ViT-C-*.yaml`. ViT_C removes one
# transformer block to keep flops matched with ViT_P (P1 section 3).
_S3 = (3, 3, 3, 3, 1)
_S18 = (3, 3, 3, 3, 3, 3, 1)
_CONV_STEMS = {
  '1gf': (_S3, (2, 2, 2, 2, 1), (24, 48, 96, 192, 192)),
  '4gf': (_S3, (2, 2, 2, 2, 1), (48, 96, 192, 384, 384)),
  '18gf': (_S18, (2, 2, 1, 2, 1, 2, 1), (64, 128, 128, 256, 256, 512, 768)),
  '36gf': (_S18, (2, 2, 1, 2, 1, 2, 1), (64, 128, 128, 256, 256, 512, 1024)),
  # 72GF: we take the stem of pycls vitconfigs `IN21k_ViT-C-72GF_adamw_128gpus.yaml` (nine
  # convs, 21 blocks), because that yaml is the configuration that was actually trained for the
  # IN-21k numbers, while P1 App. C's prose (reuse the 18/36GF stem, drop no block) describes a
  # model no released config builds. See docs/references.md#p1-models-pycls.
  '72gf': (
    (3,) * 8 + (1,),
    (2, 2, 1, 2, 1, 1, 2, 1, 1),
    (64, 128, 128, 256, 256, 256, 512, 512, 1152),
  ),
}

for _size, (_d, _h, _m, _n) in _PYCLS_SIZES.items():
  register(
    f'vit_p_{_size}',
    ModelSpec(family='pycls', stem='patchify', hidden_size=_d, num_heads=_h, mlp_dim=_m, depth=_n),
  )
  _k, _s, _c = _CONV_STEMS[_size]
  register(
    f'vit_c_{_size}',
    ModelSpec(
      family='pycls',
      stem='conv',
      hidden_size=_d,
      num_heads=_h,
      mlp_dim=_m,
      depth=_n - 1,
      stem_kernels=_k,
      stem_strides=_s,
      stem_channels=_c,
    ),
  )

# ----------------------------------------------------------------------------- ConViT
# (heads, dim per head) per P2 Table 1; depth 12 with 10 GPSA blocks, MLP ratio 4, no qkv bias,
# bicubic eval (timm convit default_cfg).
_CONVIT_SIZES = {
  'ti': (4, 48),
  'ti_plus': (4, 64),
  's': (9, 48),
  's_plus': (9, 64),
  'b': (16, 48),
  'b_plus': (16, 64),
}
for _size, (_h, _hd) in _CONVIT_SIZES.items():
  register(
    f'convit_{_size}',
    ModelSpec(
      family='convit',
      stem='patchify',
      hidden_size=_h * _hd,
      num_heads=_h,
      mlp_dim=4 * _h * _hd,
      depth=12,
      num_gpsa_layers=10,
      qkv_bias=False,
      interpolation='bicubic',
    ),
  )

# ----------------------------------------------------------------------------- ConViT over a conv stem
# The combination no reference has: ConViT-Ti/S/B widths and GPSA blocks over a
# P1-style conv stem. Following P1, the stem costs about one transformer block, so one GPSA block is
# removed (11 blocks: 9 GPSA + 2 MHSA) to keep flops matched with the patchify ConViT. Stems: the
# ViT_C-1GF stem for Ti (192 wide), the ViT_C-4GF stem closing on 432 for S, the ViT_C-18GF stem for
# B (768 wide). See docs/references.md#convit-over-a-conv-stem.
_CONVIT_C = {
  'ti': (4, 48, _S3, (2, 2, 2, 2, 1), (24, 48, 96, 192, 192)),
  's': (9, 48, _S3, (2, 2, 2, 2, 1), (48, 96, 192, 384, 432)),
  'b': (16, 48, _S18, (2, 2, 1, 2, 1, 2, 1), (64, 128, 128, 256, 256, 512, 768)),
}
for _size, (_h, _hd, _k, _s, _c) in _CONVIT_C.items():
  register(
    f'convit_c_{_size}',
    ModelSpec(
      family='convit',
      stem='conv',
      hidden_size=_h * _hd,
      num_heads=_h,
      mlp_dim=4 * _h * _hd,
      depth=11,
      num_gpsa_layers=9,
      qkv_bias=False,
      interpolation='bicubic',
      stem_kernels=_k,
      stem_strides=_s,
      stem_channels=_c,
    ),
  )
