"""A model's variables as `model.init` makes them: one zero image at the model's input size.

Parameters do not depend on the image values or the batch size, so one zero image is enough;
`train=False` needs no dropout key. The trainer, the analysis, the weights files, the complexity
report and the benchmark all create or check variables through these two functions.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def init_variables(model, params_rng: jax.Array) -> Any:
  """{'params'[, 'batch_stats']} of `model` from `params_rng` (pure: jit it, or call it in a jit)."""
  size = model.spec.image_size
  images = jnp.zeros((1, size, size, 3), jnp.float32)
  return model.init({'params': params_rng}, images, train=False)


def abstract_variables(model) -> Any:
  """Shapes and dtypes of `init_variables`, via jax.eval_shape (nothing is computed)."""
  return jax.eval_shape(lambda: init_variables(model, jax.random.key(0)))
