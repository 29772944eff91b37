"""A model's variables as `model.init` makes them: one zero image at the model's input size.

Parameters do not depend on the image values or the batch size, so one zero image is enough;
`train=False` needs no dropout key. The trainer, the analysis, the weights files, the complexity
report and the benchmark all create or check variables through these two functions.

A scanned model (spec.scan_layers) starts from the unrolled model's weights, stacked: the same seed
gives the same weights in both layouts, so a scanned run starts where the unrolled one does
(nn.scan's own init would draw each layer from a split key instead; on CPU it compiles the
vit_p_18gf init in 2.2 s instead of 5 s, small against the train step's compile).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from vit_jax_stems.models import layers_layout


def init_variables(model, params_rng: jax.Array) -> Any:
  """{'params'[, 'batch_stats']} of `model` from `params_rng` (pure: jit it, or call it in a jit)."""
  spec = model.spec
  if spec.scan_layers:
    unrolled = init_variables(layers_layout.unrolled_model(model), params_rng)
    return layers_layout.stack_blocks(unrolled, spec)
  size = spec.image_size
  images = jnp.zeros((1, size, size, 3), jnp.float32)
  return model.init({'params': params_rng}, images, train=False)


def abstract_variables(model) -> Any:
  """Shapes and dtypes of `init_variables`, via jax.eval_shape (nothing is computed)."""
  return jax.eval_shape(lambda: init_variables(model, jax.random.key(0)))
