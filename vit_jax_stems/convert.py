"""Converts PyTorch checkpoints of the reference code into vit_jax_stems weights directories.

  python -m vit_jax_stems.convert --arch MODEL --src FILE --dst DIR \
      [--num_classes N] [--image_size N] [--override k=v ...]

Formats (chosen by the model family of --arch):
  * pycls ViT (ViT_P / ViT_C): the `model_state` of facebookresearch/pycls `pycls.models.vit.ViT`
    (branch main): stem.patchify | stem.cstem{i}_conv/_bn + stem.cstem_last_conv, class_token
    (1,1,D), pos_embedding (L,1,D) (sequence first), encoder.block_{i}.{ln_1, self_attention.block
    (torch.nn.MultiheadAttention: in_proj_weight/bias, out_proj), ln_2, mlp_block.linear_1/2},
    encoder.ln, head.head_fc.
  * ConViT: timm `timm.models.convit.ConVit` state dicts, the names of the published ConViT weights
    (facebookresearch/convit uses the same): patch_embed.proj, cls_token, pos_embed (1,N,D),
    blocks.{i}.{norm1, attn.{qk, v, proj, pos_proj, gating_param} (GPSA) or attn.{qkv, proj}, norm2,
    mlp.fc1/2}, norm, head.
Files: `.safetensors` are read with safetensors.numpy (no torch needed); `.pth`/`.pyth`/`.pt`/`.bin`
through torch when it is installed. A checkpoint dict may hold the weights under 'model_state'
(pycls), 'model' (convit/DeiT) or 'state_dict'; `--state_key` picks one explicitly (e.g.
'ema_state' for pycls's EMA weights, which P1 evaluates).

The conversion is a pure renaming and re-layout: torch Linear weight (out, in) -> Dense kernel
(in, out); Conv2d weight (out, in, kh, kw) -> Conv kernel (kh, kw, in, out); BatchNorm weight/bias
-> scale/bias and running_mean/var -> batch_stats mean/var (num_batches_tracked is dropped). The
expected names and shapes come from the Flax model itself (`jax.eval_shape` of `model.init`), and
any mismatch is reported at once, listing every missing, unexpected and wrongly shaped key. Names
are matched per block (`encoder/blockNN`); for a scanned model (`--override scan_layers=true`) the
result is stacked afterwards (models/layers_layout.py), and its weights directory is per block.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from absl import logging

from vit_jax_stems import models
from vit_jax_stems import weights as weights_lib
from vit_jax_stems.models import layers_layout, pos_embedding

# State-dict entries that are not weights: derived constants and counters.
_IGNORED_SUFFIXES = ('.num_batches_tracked', '.rel_indices')
# Where checkpoint dicts keep the weights, tried in this order (pycls, convit/DeiT, Lightning-style).
_STATE_KEYS = ('model_state', 'model', 'state_dict')


class CheckpointMismatchError(ValueError):
  """The checkpoint's keys or shapes do not fit the requested model."""


# ------------------------------------------------------------------------------------------------
# Layouts: how one torch tensor becomes one Flax leaf.
# ------------------------------------------------------------------------------------------------
def _same(x):
  return x


def _linear(x):  # torch Linear (out, in) -> Dense (in, out)
  return x.T


def _conv(x):  # torch Conv2d (out, in, kh, kw) -> Conv (kh, kw, in, out)
  return x.transpose(2, 3, 1, 0)


def _seq_first(x):  # pycls pos_embedding (L, 1, D) -> (1, L, D)
  return x.transpose(1, 0, 2)


# Each layout's inverse (Flax leaf -> torch tensor), for `vit_jax_stems.export`.
INVERSE_LAYOUT = {
  _same: lambda x: x,
  _linear: lambda x: x.T,
  _conv: lambda x: x.transpose(3, 2, 0, 1),
  _seq_first: lambda x: x.transpose(1, 0, 2),
}

# The torch shape that becomes a given Flax shape, for the error message.
_TORCH_SHAPE = {
  _same: lambda s: s,
  _linear: lambda s: s[::-1],
  _conv: lambda s: (s[3], s[2], s[0], s[1]),
  _seq_first: lambda s: (s[1], s[0], s[2]),
}

Layout = Callable[[np.ndarray], np.ndarray]


def _leaf_layout(leaf: str, ndim: int) -> Layout:
  if leaf == 'kernel':
    return _conv if ndim == 4 else _linear
  return _same


# ------------------------------------------------------------------------------------------------
# Name maps: Flax variable path -> torch state-dict key, one function per reference.
# ------------------------------------------------------------------------------------------------
_TORCH_LEAF = {
  'kernel': 'weight',
  'bias': 'bias',
  'scale': 'weight',
  'mean': 'running_mean',
  'var': 'running_var',
}

_PYCLS_BLOCK = {
  'norm1': 'ln_1',
  'norm2': 'ln_2',
  'attn/proj': 'self_attention.block.out_proj',
  'mlp/fc1': 'mlp_block.linear_1',
  'mlp/fc2': 'mlp_block.linear_2',
}


def _pycls_key(path: tuple[str, ...]) -> tuple[str, Layout] | None:
  """pycls main `ViT` names (pycls/models/vit.py, blocks.py)."""
  if path == ('cls_token',):
    return 'class_token', _same
  if path == ('pos_embedding',):
    return 'pos_embedding', _seq_first
  *module, leaf = path
  module = '/'.join(module)
  ndim_layout = None
  if m := re.fullmatch(r'encoder/block(\d+)/(.+)', module):
    prefix, sub = f'encoder.block_{int(m[1])}', m[2]
    if sub == 'attn/qkv':  # fused torch MHA in-projection, rows [q | k | v]
      return f'{prefix}.self_attention.block.in_proj_{_TORCH_LEAF[leaf]}', _leaf_layout(leaf, 2)
    if sub not in _PYCLS_BLOCK:
      return None
    name = f'{prefix}.{_PYCLS_BLOCK[sub]}'
  elif module == 'stem/patchify':
    name, ndim_layout = 'stem.patchify', 4
  elif module == 'stem/conv_last':
    name, ndim_layout = 'stem.cstem_last_conv', 4
  elif m := re.fullmatch(r'stem/conv(\d+)', module):
    name, ndim_layout = f'stem.cstem{int(m[1])}_conv', 4
  elif m := re.fullmatch(r'stem/bn(\d+)', module):
    name = f'stem.cstem{int(m[1])}_bn'
  elif module == 'norm':
    name = 'encoder.ln'
  elif module == 'head':
    name = 'head.head_fc'
  else:
    return None
  return f'{name}.{_TORCH_LEAF[leaf]}', _leaf_layout(leaf, ndim_layout or 2)


_CONVIT_BLOCK = {
  'norm1',
  'norm2',
  'attn/qk',
  'attn/v',
  'attn/qkv',
  'attn/proj',
  'attn/pos_proj',
  'mlp/fc1',
  'mlp/fc2',
}


def _convit_key(path: tuple[str, ...]) -> tuple[str, Layout] | None:
  """timm `ConVit` names (timm/models/convit.py; facebookresearch/convit convit.py alike)."""
  if path == ('cls_token',):
    return 'cls_token', _same
  if path == ('pos_embedding',):
    return 'pos_embed', _same
  *module, leaf = path
  module = '/'.join(module)
  ndim = 2
  if m := re.fullmatch(r'encoder/block(\d+)/(.+)', module):
    prefix, sub = f'blocks.{int(m[1])}', m[2]
    if sub == 'attn' and leaf == 'gating_param':
      return f'{prefix}.attn.gating_param', _same
    if sub not in _CONVIT_BLOCK:
      return None
    name = f'{prefix}.{sub.replace("/", ".")}'
  elif module == 'stem/patchify':
    name, ndim = 'patch_embed.proj', 4
  elif module in ('norm', 'head'):
    name = module
  else:
    return None
  return f'{name}.{_TORCH_LEAF[leaf]}', _leaf_layout(leaf, ndim)


def key_function(spec) -> Callable[[tuple[str, ...]], tuple[str, Layout] | None]:
  if spec.family == 'pycls':
    return _pycls_key
  if spec.stem != 'patchify':
    raise ValueError(
      'ConViT over a conv stem (convit_c_*) exists only in this project; no reference '
      'checkpoint format holds it. Convert a convit_* (patchify) or vit_p_*/vit_c_* model.'
    )
  return _convit_key


# ------------------------------------------------------------------------------------------------
# Conversion.
# ------------------------------------------------------------------------------------------------
def path_names(path) -> tuple[str, ...]:
  return tuple(str(getattr(k, 'key', k)) for k in path)


def _nest(flat: Mapping[tuple[str, ...], np.ndarray]) -> dict:
  out: dict = {}
  for path, value in flat.items():
    node = out
    for name in path[:-1]:
      node = node.setdefault(name, {})
    node[path[-1]] = value
  return out


def convert_state_dict(
  model, state_dict: Mapping[str, Any], *, pos_embedding_interpolation: str = 'bicubic'
) -> dict:
  """Returns the Flax variables of `model` (a VisionTransformer) from a reference state dict.

  A position embedding of another (square) token grid is resampled to the model's grid
  (`models.pos_embedding`, as timm's `resample_abs_pos_embed`), so `--image_size` may differ from
  the checkpoint's. Raises CheckpointMismatchError naming every missing, unexpected and wrongly
  shaped key. The variables are in the model's own layout (stacked when spec.scan_layers).
  """
  spec = model.spec
  key_of = key_function(spec)
  state = {k: v for k, v in state_dict.items() if not k.endswith(_IGNORED_SUFFIXES)}
  abstract = models.abstract_variables(layers_layout.unrolled_model(model))
  flat, used = {}, set()
  missing, wrong_shape = [], []
  for path, leaf in jax.tree_util.tree_flatten_with_path(abstract)[0]:
    names = path_names(path)
    mapped = key_of(names[1:])  # drop the collection ('params' / 'batch_stats')
    if (
      mapped is None
    ):  # the model has a variable this converter does not know: our bug, not the user's
      raise NotImplementedError(
        f'convert.py has no torch name for Flax variable {"/".join(names)}.'
      )
    key, layout = mapped
    if key not in state:
      missing.append(f'{key} {_TORCH_SHAPE[layout](tuple(leaf.shape))}')
      continue
    used.add(key)
    value = np.asarray(state[key])
    want_torch = _TORCH_SHAPE[layout](tuple(leaf.shape))
    if names[-1] == 'pos_embedding' and tuple(value.shape) != tuple(want_torch):
      value = _resampled_pos_embedding(value, layout, spec, pos_embedding_interpolation)
      if value is not None:
        used.add(key)
        flat[names] = value
        continue
      value = np.asarray(state[key])
    if tuple(value.shape) != tuple(want_torch):
      wrong_shape.append(f'{key}: checkpoint {tuple(value.shape)}, model wants {tuple(want_torch)}')
      continue
    flat[names] = np.ascontiguousarray(layout(value.astype(np.float32)))
  unexpected = sorted(set(state) - used)
  if missing or unexpected or wrong_shape:
    raise CheckpointMismatchError(_mismatch_message(spec, missing, unexpected, wrong_shape))
  return layers_layout.to_layout(_nest(flat), spec)


def _resampled_pos_embedding(value, layout, spec, interpolation):
  """The checkpoint's position embedding on `spec`'s token grid, or None when its width or its
  grid (not a square one) cannot be resampled (then the shape mismatch is reported)."""
  ours = layout(value.astype(np.float32))  # (1, prefix + rows * cols, D)
  want = (1, pos_embedding.prefix_tokens(spec) + math.prod(spec.grid_size()), spec.hidden_size)
  if ours.ndim != 3 or ours.shape[0] != 1 or ours.shape[2] != want[2]:
    return None
  try:
    resampled = pos_embedding.for_spec(ours, spec, interpolation=interpolation)
  except ValueError:
    return None
  logging.info(
    'convert: position embedding %s resampled to %s (%s)',
    ours.shape,
    resampled.shape,
    interpolation,
  )
  return np.ascontiguousarray(resampled)


def _mismatch_message(spec, missing, unexpected, wrong_shape) -> str:
  lines = [
    f'Checkpoint does not match the {spec.family} {spec.stem}-stem model '
    f'(hidden {spec.hidden_size}, depth {spec.depth}, heads {spec.num_heads}, image '
    f'{spec.image_size}, {spec.num_classes} classes):'
  ]
  for title, items in (
    ('missing', missing),
    ('unexpected', unexpected),
    ('wrong shape', wrong_shape),
  ):
    lines.append(f'  {len(items)} {title} key(s)' + (':' if items else ''))
    lines.extend(f'    {item}' for item in items)
  hints = []
  if any(k.startswith('head.') for k in wrong_shape):
    hints.append('the head has another number of classes: pass --num_classes')
  if any(k.startswith(('pos_embed', 'pos_embedding')) for k in wrong_shape):
    hints.append(
      'the position embedding is for another token grid: pass --image_size (or patch size)'
    )
  if missing and unexpected:
    hints.append('check that --arch names the right model family and depth')
  if hints:
    lines.append('Hint: ' + '; '.join(hints) + '.')
  return '\n'.join(lines)


# ------------------------------------------------------------------------------------------------
# Reading checkpoint files.
# ------------------------------------------------------------------------------------------------
def load_state_dict(
  path: str, *, state_key: str | None = None, allow_pickle: bool = False
) -> dict[str, np.ndarray]:
  """A flat {name: float numpy array} from a .safetensors or torch (.pth/.pyth/.pt/.bin) file."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'--src {path!r} does not exist.')
  if path.endswith('.safetensors'):
    obj = _safetensors_load(path)
  elif path.endswith(('.pth', '.pyth', '.pt', '.bin')):
    obj = _torch_load(path, allow_pickle)
  else:
    raise ValueError(f'--src {path!r}: use a .safetensors, .pth, .pyth, .pt or .bin file.')
  return _select_state(obj, path, state_key)


def _safetensors_load(path: str):
  import safetensors
  from safetensors.numpy import load_file

  try:
    return load_file(path)
  except safetensors.SafetensorError as e:
    raise ValueError(
      f'--src {path!r} is not a safetensors file ({e}): check that the download is complete, '
      'or, if it is a torch checkpoint, give it its .pth / .pyth name.'
    ) from None


def _torch_load(path: str, allow_pickle: bool):
  try:
    import torch
  except ImportError as e:
    raise ImportError(
      f'Reading {path!r} needs torch (see requirements-reference.txt); or re-save the state dict '
      'as .safetensors, which needs no torch.'
    ) from e
  try:
    import argparse as _argparse

    with torch.serialization.safe_globals(
      [_argparse.Namespace]
    ):  # convit/DeiT checkpoints hold args
      obj = torch.load(path, map_location='cpu', weights_only=not allow_pickle)
  except Exception as e:  # torch raises UnpicklingError subclasses for unsafe objects
    if allow_pickle:
      raise
    raise ValueError(
      f'torch.load(weights_only=True) refused {path!r} ({type(e).__name__}: {e}). If you trust '
      'the file, pass --allow_pickle.'
    ) from e
  return _to_numpy(obj)


def _to_numpy(obj):
  if isinstance(obj, Mapping):
    return {k: _to_numpy(v) for k, v in obj.items()}
  if hasattr(obj, 'detach') and hasattr(obj, 'numpy'):  # a torch tensor
    return (
      obj.detach().cpu().float().numpy() if obj.is_floating_point() else obj.detach().cpu().numpy()
    )
  return obj


def _select_state(obj, path: str, state_key: str | None) -> dict[str, np.ndarray]:
  if not isinstance(obj, Mapping):
    raise ValueError(f'{path!r} holds a {type(obj).__name__}, not a state dict.')
  if state_key is not None:
    if state_key not in obj:
      raise KeyError(f'--state_key {state_key!r} not in {path!r}; top-level keys: {sorted(obj)}.')
    obj = obj[state_key]
  else:
    for key in _STATE_KEYS:
      if key in obj and isinstance(obj[key], Mapping):
        obj = obj[key]
        break
  state = {k: v for k, v in obj.items() if isinstance(v, np.ndarray)}
  if not state:
    raise ValueError(
      f'No tensors found in {path!r}; top-level keys: {sorted(obj)}. Use --state_key.'
    )
  if all(k.startswith('module.') for k in state):  # saved from DistributedDataParallel
    state = {k[len('module.') :]: v for k, v in state.items()}
  return state


# ------------------------------------------------------------------------------------------------
# Command line.
# ------------------------------------------------------------------------------------------------
def convert(
  arch: str,
  src: str,
  dst: str,
  *,
  overrides: Mapping[str, Any] | None = None,
  state_key: str | None = None,
  allow_pickle: bool = False,
  pos_embedding_interpolation: str = 'bicubic',
) -> str:
  """Reads `src`, converts it for `create_model(arch, **overrides)`, writes `dst`; returns dst."""
  overrides = dict(overrides or {})
  model = models.create_model(arch, **overrides)  # validates arch and overrides before reading
  key_function(model.spec)
  state = load_state_dict(src, state_key=state_key, allow_pickle=allow_pickle)
  variables = convert_state_dict(
    model, state, pos_embedding_interpolation=pos_embedding_interpolation
  )
  return weights_lib.save_weights(dst, arch, variables, overrides=overrides)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(
    prog='python -m vit_jax_stems.convert',
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument(
    '--arch', required=True, help='registered model name, e.g. vit_c_1gf, convit_ti'
  )
  parser.add_argument('--src', required=True, help='.safetensors, .pth or .pyth checkpoint')
  parser.add_argument('--dst', required=True, help='weights directory to write')
  parser.add_argument('--num_classes', type=int, default=None)
  parser.add_argument(
    '--image_size',
    type=int,
    default=None,
    help="input size of the converted model (default: the arch's); a position embedding of "
    'another grid is resampled to it',
  )
  parser.add_argument(
    '--pos_embedding_interpolation',
    choices=pos_embedding.INTERPOLATIONS,
    default='bicubic',
    help='how a position embedding is resampled (torch interpolate, antialias off)',
  )
  parser.add_argument(
    '--override',
    action='append',
    default=[],
    metavar='KEY=VALUE',
    help='any ModelSpec field, e.g. --override depth=2 --override stem_strides=2,2,1',
  )
  parser.add_argument(
    '--state_key',
    default=None,
    help='key of the state dict inside the checkpoint (default: model_state, '
    'model, state_dict, or the file itself)',
  )
  parser.add_argument(
    '--allow_pickle',
    action='store_true',
    help='torch.load with weights_only=False (only for files you trust)',
  )
  args = parser.parse_args(argv)
  try:
    overrides = models.ModelSpec.parse_overrides(args.override)
  except ValueError as e:
    parser.error(str(e))
  if args.num_classes is not None:
    overrides['num_classes'] = args.num_classes
  if args.image_size is not None:
    overrides['image_size'] = args.image_size
  try:
    dst = convert(
      args.arch,
      args.src,
      args.dst,
      overrides=overrides,
      state_key=args.state_key,
      allow_pickle=args.allow_pickle,
      pos_embedding_interpolation=args.pos_embedding_interpolation,
    )
  except (CheckpointMismatchError, ValueError, KeyError, FileNotFoundError, ImportError) as e:
    sys.exit(f'convert: {e}')
  print(f'wrote {args.arch} weights to {dst}')


if __name__ == '__main__':
  main()
