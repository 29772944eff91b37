"""Flax Linen models of both papers: patchify stem, conv stem (ViT_C) and GPSA (ConViT).

Importing this package never imports tensorflow or torch.
"""

from vit_jax_stems.models import complexity
from vit_jax_stems.models.attention import default_attention_impl
from vit_jax_stems.models.registry import (
  COMPUTE_DTYPES,
  compute_dtype,
  create_model,
  get_spec,
  list_models,
  register,
)
from vit_jax_stems.models.spec import ModelSpec
from vit_jax_stems.models.variables import abstract_variables, init_variables
from vit_jax_stems.models.vit import VisionTransformer

__all__ = [
  'COMPUTE_DTYPES',
  'ModelSpec',
  'VisionTransformer',
  'abstract_variables',
  'complexity',
  'compute_dtype',
  'create_model',
  'default_attention_impl',
  'get_spec',
  'init_variables',
  'list_models',
  'register',
]
