"""The encoder's two parameter layouts, and the one exact conversion between them.

* Per block ("unrolled"), the external format: `encoder/block00` ... `encoder/blockNN`, one
  subtree per block. Converters (convert.py), weights directories (weights.py), the fine-tuning
  start (`config.init_weights`) and the locality analysis speak it, and so does a model with
  `spec.scan_layers=False`.
* Stacked (`spec.scan_layers=True`): the blocks of each kind are one subtree whose leaves carry a
  leading layer axis, the layout of one `nn.scan` over them (models/vit.py `Encoder`):
    pycls:  `encoder/blocks`                       all `depth` blocks
    convit: `encoder/gpsa_blocks`, `encoder/mhsa_blocks`
            the first `num_gpsa_layers` blocks, then the rest (the class token joins between).
  A trainer checkpoint holds the layout of its run's model (config.json records scan_layers).

`stack_blocks` and `unstack_blocks` convert every collection of a variables dict (params and any
other with per-block entries) between the two; both only copy, so a round trip is bitwise exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

PYCLS_GROUP = 'blocks'
GPSA_GROUP = 'gpsa_blocks'
MHSA_GROUP = 'mhsa_blocks'
STACKED_NAMES = (PYCLS_GROUP, GPSA_GROUP, MHSA_GROUP)


def block_name(layer: int) -> str:
  """The per-block name of layer `layer`: 'block03'."""
  return f'block{layer:02d}'


def block_groups(spec) -> list[tuple[str, range]]:
  """[(stacked name, the layers it holds)], in forward order: one scan per entry."""
  if spec.family == 'convit':
    return [
      (GPSA_GROUP, range(spec.num_gpsa_layers)),
      (MHSA_GROUP, range(spec.num_gpsa_layers, spec.depth)),
    ]
  return [(PYCLS_GROUP, range(spec.depth))]


def unrolled_model(model):
  """The same VisionTransformer with per-block parameters (spec.scan_layers=False)."""
  return model.clone(spec=model.spec.replace(scan_layers=False))


def layer_axes(path: tuple[str, ...]) -> int:
  """1 for a leaf of a stacked group (path ('encoder', 'blocks', ...) of a params tree), else 0:
  the leading axes that are layers, not the weight's own shape (weight-decay rules by ndim)."""
  return int(len(path) > 2 and path[0] == 'encoder' and path[1] in STACKED_NAMES)


def is_stacked(variables: Mapping[str, Any]) -> bool:
  """Whether `variables` ({'params', ...}) is in the stacked layout."""
  encoder = variables['params']['encoder']
  return any(name in encoder for name in STACKED_NAMES)


def _stack(leaves):
  if all(isinstance(x, np.ndarray) for x in leaves):
    return np.stack(leaves)
  return jnp.stack(leaves)


def _map_encoders(variables, convert) -> dict:
  out = {}
  for collection, tree in variables.items():
    if isinstance(tree, Mapping) and 'encoder' in tree:
      tree = dict(tree, encoder=convert(dict(tree['encoder'])))
    out[collection] = tree
  return out


def stack_blocks(variables: Mapping[str, Any], spec) -> dict:
  """Per-block `variables` -> the stacked layout of `spec` (every collection with an encoder)."""
  if is_stacked(variables):
    raise ValueError('stack_blocks: the variables are stacked already.')

  def convert(encoder):
    for group, layers in block_groups(spec):
      blocks = [encoder.pop(block_name(i)) for i in layers]
      encoder[group] = jax.tree_util.tree_map(lambda *xs: _stack(xs), *blocks)
    return encoder

  return _map_encoders(variables, convert)


def unstack_blocks(variables: Mapping[str, Any], spec) -> dict:
  """Stacked `variables` -> the per-block layout (every collection with an encoder)."""
  if not is_stacked(variables):
    raise ValueError('unstack_blocks: the variables are per block already.')

  def convert(encoder):
    for group, layers in block_groups(spec):
      stacked = encoder.pop(group)
      for j, i in enumerate(layers):
        encoder[block_name(i)] = jax.tree_util.tree_map(lambda x, j=j: x[j], stacked)
    return dict(sorted(encoder.items()))

  return _map_encoders(variables, convert)


def to_layout(variables: Mapping[str, Any], spec, *, stacked: bool | None = None) -> dict:
  """`variables` in either layout -> stacked if `stacked` (default: spec.scan_layers), else
  per block; unchanged when already there."""
  stacked = spec.scan_layers if stacked is None else stacked
  if is_stacked(variables) == stacked:
    return dict(variables)
  return stack_blocks(variables, spec) if stacked else unstack_blocks(variables, spec)
