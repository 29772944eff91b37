"""Tiny models of each family for the locality tests, built once per process (cached)."""

import functools
import os
import sys

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from vit_jax_stems import models  # noqa: E402
from vit_jax_stems.analysis import (  # noqa: E402
  locality,
  sources,
)

# 16x16 images with 4-pixel patches: a 4x4 grid (32x32 for ConViT: an 8x8 grid, so GPSA's
# centres have interior queries).
TINY = {
  'vit_p': (
    'vit_p_1gf',
    dict(
      hidden_size=16, num_heads=2, mlp_dim=32, depth=2, patch_size=4, image_size=16, num_classes=10
    ),
  ),
  'vit_c': (
    'vit_c_1gf',
    dict(
      hidden_size=16,
      num_heads=2,
      mlp_dim=32,
      depth=2,
      patch_size=4,
      stem_kernels=(3, 1),
      stem_strides=(4, 1),
      stem_channels=(8, 16),
      image_size=16,
      num_classes=10,
    ),
  ),
  'convit': (
    'convit_ti',
    dict(
      hidden_size=16,
      num_heads=4,
      mlp_dim=32,
      depth=3,
      num_gpsa_layers=2,
      patch_size=4,
      image_size=32,
      num_classes=10,
    ),
  ),
}


@functools.cache
def tiny_model(name):
  """(model, variables) of a freshly initialised tiny model; jitted init (fast to compile)."""
  arch, overrides = TINY[name]
  model = models.create_model(arch, **overrides)
  return model, sources.fresh_variables(model, jax.random.PRNGKey(0))


def forward_out(name, images, chunk=None):
  """The `out` dict (stem, each block's input, attention) of the analysis's jitted forward,
  run `chunk` images at a time (padded) so that it reuses the compile of `measure`."""
  model, variables = tiny_model(name)
  chunk = chunk or len(images)
  parts = []
  for start in range(0, len(images), chunk):
    part = images[start : start + chunk]
    padded = np.concatenate([part, np.zeros((chunk - len(part),) + part.shape[1:], part.dtype)])
    out = locality.forward(model, variables, padded)
    parts.append({k: v[: len(part)] for k, v in out.items()})
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def random_images(model, n=3, seed=0):
  size = model.spec.image_size
  return np.random.RandomState(seed).randn(n, size, size, 3).astype(np.float32)
