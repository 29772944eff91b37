"""Flax Linen models of both papers: patchify stem, conv stem (ViT_C) and GPSA (ConViT).

Importing this package never imports tensorflow or torch.
"""

from vit_jax_stems.models import complexity
from vit_jax_stems.models.attention import default_attention_impl
from vit_jax_stems.models.registry import create_model, get_spec, list_models, register
from vit_jax_stems.models.spec import ModelSpec
from vit_jax_stems.models.vit import VisionTransformer

__all__ = [
  'ModelSpec',
  'VisionTransformer',
  'complexity',
  'create_model',
  'default_attention_impl',
  'get_spec',
  'list_models',
  'register',
]
