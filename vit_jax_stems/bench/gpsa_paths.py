"""Do the two attention paths compute the same function?

The fast path (fused attention + one batch-shared positional matrix per GPSA layer) and the
explicit path (softmax weights materialised, as the references) must give the same logits; the
benchmark measures their speed and memory, this measures their agreement on the same weights.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vit_jax_stems import models
from vit_jax_stems.bench.jax_bench import bench_key
from vit_jax_stems.models.spec import ModelSpec


def compare_paths(
  spec: ModelSpec,
  *,
  dtype: str = 'float32',
  batch_size: int = 2,
  attention: str = 'xla',
  seed: int = 0,
) -> dict:
  """Max abs difference of logits and pre-logits between the fast and the explicit path.

  The weights are moved off their init first (GPSA's init makes v the identity and every gate
  sigmoid(1)): small noise on every parameter, so that no term can hide behind a symmetric init.
  """
  model = models.VisionTransformer(spec, dtype=models.compute_dtype(dtype))

  @jax.jit
  def perturbed_variables_and_images(key):
    key_init, key_noise, key_images = jax.random.split(key, 3)
    images = jax.random.normal(key_images, (batch_size, spec.image_size, spec.image_size, 3))
    variables = models.init_variables(model, key_init)
    leaves, treedef = jax.tree.flatten(variables['params'])
    keys = jax.random.split(key_noise, len(leaves))
    noisy = [p + 0.05 * jax.random.normal(k, p.shape, p.dtype) for p, k in zip(leaves, keys)]
    return {**variables, 'params': jax.tree.unflatten(treedef, noisy)}, images

  variables, images = perturbed_variables_and_images(bench_key(seed))

  def forward(variables, images, explicit):
    logits, out = model.apply(variables, images, train=False, return_attention=explicit)
    return logits, out['pre_logits'].astype(jnp.float32)

  fast_model = models.VisionTransformer(
    spec, dtype=models.compute_dtype(dtype), attention_impl=attention
  )
  fast = jax.jit(
    lambda v, x: (lambda logits, o: (logits, o['pre_logits'].astype(jnp.float32)))(
      *fast_model.apply(v, x, train=False)
    )
  )(variables, images)
  explicit = jax.jit(forward, static_argnums=2)(variables, images, True)
  logits_diff = float(np.max(np.abs(np.asarray(fast[0]) - np.asarray(explicit[0]))))
  pre_diff = float(np.max(np.abs(np.asarray(fast[1]) - np.asarray(explicit[1]))))
  scale = float(np.max(np.abs(np.asarray(explicit[0]))))
  return {
    'dtype': dtype,
    'attention': attention,
    'batch_size': batch_size,
    'max_abs_diff_logits': logits_diff,
    'max_abs_diff_pre_logits': pre_diff,
    'max_abs_logits': scale,
  }
