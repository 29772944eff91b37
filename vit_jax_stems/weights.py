"""Saving and loading a model's weights together with what is needed to rebuild the model.

A weights directory holds:
  variables/   the Flax variables ({'params'[, 'batch_stats']}) as an orbax checkpoint, always per
               block (`encoder/blockNN`, models/layers_layout.py), whatever the model's layout
  model.json   {"arch", "num_classes", "image_size", "overrides"}: `create_model(arch, **overrides)`
               rebuilds the exact module, so a directory is usable without knowing how it was made
  labels.txt   optional, one class name per line (index order), used by `predict`

The converter writes these directories; `predict` and evaluation read them back with
`load_weights`. Plain orbax, no torch, no tensorflow.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from vit_jax_stems import models
from vit_jax_stems.models import layers_layout, pos_embedding

MODEL_JSON = 'model.json'
VARIABLES_DIR = 'variables'
LABELS_TXT = 'labels.txt'


def _tree_shapes(tree) -> dict[str, tuple[tuple[int, ...], Any]]:
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {jax.tree_util.keystr(path): (tuple(x.shape), jnp.dtype(x.dtype)) for path, x in flat}


def check_variables(model, variables) -> None:
  """Raises ValueError listing every leaf whose presence or shape differs from `model.init`."""
  expected = _tree_shapes(models.abstract_variables(model))
  got = _tree_shapes(variables)
  missing = sorted(set(expected) - set(got))
  unexpected = sorted(set(got) - set(expected))
  wrong = sorted(
    f'{k}: {got[k][0]} (model wants {expected[k][0]})'
    for k in set(got) & set(expected)
    if got[k][0] != expected[k][0]
  )
  if missing or unexpected or wrong:
    raise ValueError(
      'Variables do not fit the model: '
      f'missing {missing or "none"}; unexpected {unexpected or "none"}; wrong shape {wrong or "none"}.'
    )


def save_weights(
  dst_dir: str,
  arch: str,
  variables: Mapping[str, Any],
  *,
  overrides: Mapping[str, Any] | None = None,
  class_names: Sequence[str] | None = None,
) -> str:
  """Writes `variables` of `create_model(arch, **overrides)` to `dst_dir`; returns its absolute path.

  The variables are checked against the model first, so a directory that loads is one that runs;
  a scanned model's are written per block. An existing `variables/` checkpoint in `dst_dir` is
  replaced.
  """
  overrides = dict(overrides or {})
  model = models.create_model(arch, **overrides)
  variables = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), dict(variables))
  check_variables(model, variables)
  variables = layers_layout.to_layout(variables, model.spec, stacked=False)
  if class_names is not None and len(class_names) != model.spec.num_classes:
    raise ValueError(
      f'Got {len(class_names)} class names for num_classes={model.spec.num_classes}.'
    )
  dst = os.path.abspath(dst_dir)
  os.makedirs(dst, exist_ok=True)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(os.path.join(dst, VARIABLES_DIR), variables, force=True)
  checkpointer.wait_until_finished()
  meta = {
    'arch': arch,
    'num_classes': model.spec.num_classes,
    'image_size': model.spec.image_size,
    'overrides': _jsonable(overrides),
  }
  with open(os.path.join(dst, MODEL_JSON), 'w') as f:
    json.dump(meta, f, indent=1, sort_keys=True)
    f.write('\n')
  if class_names is not None:
    with open(os.path.join(dst, LABELS_TXT), 'w') as f:
      f.writelines(f'{name}\n' for name in class_names)
  return dst


def read_model_json(weights_dir: str) -> dict:
  path = os.path.join(weights_dir, MODEL_JSON)
  if not os.path.isfile(path):
    raise FileNotFoundError(
      f'{weights_dir!r} is not a weights directory (no {MODEL_JSON}); make one with '
      '`python -m vit_jax_stems.convert` or `weights.save_weights`.'
    )
  with open(path) as f:
    return json.load(f)


def load_weights(
  weights_dir: str,
  *,
  dtype: Any = jnp.float32,
  image_size: int | None = None,
  pos_embedding_interpolation: str = 'bicubic',
):
  """Returns (model, variables) from a directory written by `save_weights`.

  The model is recreated by name with the saved overrides; `dtype` is the compute dtype. With an
  `image_size` other than the saved one, the model is built at that size and the learned position
  embedding resampled to its token grid (`models.pos_embedding.for_spec`, timm's
  `resample_abs_pos_embed`); GPSA's relative positions follow the grid by construction. The
  per-block variables are stacked when the overrides say scan_layers.
  """
  meta = read_model_json(weights_dir)
  overrides = dict(meta.get('overrides', {}))
  model = models.create_model(meta['arch'], dtype=dtype, **overrides)
  unrolled = layers_layout.unrolled_model(model)
  checkpointer = ocp.StandardCheckpointer()
  variables = checkpointer.restore(
    os.path.join(os.path.abspath(weights_dir), VARIABLES_DIR), models.abstract_variables(unrolled)
  )
  check_variables(unrolled, variables)
  if image_size is not None and image_size != model.spec.image_size:
    model, variables = at_image_size(
      meta['arch'],
      overrides,
      variables,
      image_size,
      dtype=dtype,
      interpolation=pos_embedding_interpolation,
    )
  return model, layers_layout.to_layout(variables, model.spec)


def at_image_size(
  arch, overrides, variables, image_size, *, dtype=jnp.float32, interpolation='bicubic'
):
  """(model, per-block variables) of `create_model(arch, **overrides)` moved to `image_size`: the
  learned position embedding resampled to the new token grid (`resized`), everything else as it
  is; unchanged when the size is the model's own."""
  model = models.create_model(arch, dtype=dtype, **{**overrides, 'image_size': image_size})
  variables = layers_layout.to_layout(variables, model.spec, stacked=False)
  if image_size != models.get_spec(arch, **overrides).image_size:
    variables = resized(variables, model.spec, interpolation=interpolation)
  check_variables(layers_layout.unrolled_model(model), variables)
  return model, variables


def resized(variables, spec, *, interpolation: str = 'bicubic'):
  """`variables` with params/pos_embedding resampled to `spec`'s token grid; the rest shared."""
  params = dict(variables['params'])
  params['pos_embedding'] = jnp.asarray(
    pos_embedding.for_spec(np.asarray(params['pos_embedding']), spec, interpolation=interpolation)
  )
  return {**variables, 'params': params}


def read_class_names(weights_dir: str) -> list[str] | None:
  """The directory's labels.txt (one name per line), or None when it has none."""
  path = os.path.join(weights_dir, LABELS_TXT)
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return [line.rstrip('\n') for line in f]


def _jsonable(overrides: Mapping[str, Any]) -> dict:
  out = {}
  for k, v in overrides.items():
    if isinstance(v, (tuple, list)):
      v = [x.item() if isinstance(x, np.generic) else x for x in v]
    elif isinstance(v, np.generic):
      v = v.item()
    out[k] = v
  return out
