"""Writes a weights directory back out as a PyTorch state dict of the reference code.

  python -m vit_jax_stems.export --weights DIR --format pycls|timm --dst FILE.safetensors|FILE.pth

The inverse of `vit_jax_stems.convert`, name for name and layout for layout (its name maps and
`INVERSE_LAYOUT`), so the two cannot drift apart:
  * `--format pycls` (ViT_P / ViT_C): the `model_state` keys of facebookresearch/pycls
    `pycls.models.vit.ViT` (branch main), loadable with `model.load_state_dict(sd, strict=True)`;
  * `--format timm` (ConViT): the keys of timm's `timm.models.convit.ConVit` (and of the published
    ConViT weights), loadable with `strict=True`.
BatchNorm statistics (ViT_C's stem) become `running_mean` / `running_var`; torch's
`num_batches_tracked` counters, which this project does not keep (convert drops them), are written
as 0: torch only reads them when a BatchNorm has momentum=None, which neither reference uses.
ConViT over a conv stem (convit_c_*) has no reference format.

`.safetensors` needs only safetensors' numpy API; `.pth` needs torch (a plain `torch.save` of the
state dict, loadable with `torch.load(..., weights_only=True)`).
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import numpy as np

from vit_jax_stems import convert
from vit_jax_stems import weights as weights_lib

FORMATS = {'pycls': 'pycls', 'timm': 'convit'}  # --format -> the model family it holds


def state_dict_of(spec, variables) -> dict[str, np.ndarray]:
  """{torch key: float32 array} of the reference model that `spec` matches, from our variables."""
  key_of = convert.key_function(spec)
  state = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(jax.device_get(dict(variables)))[0]:
    names = convert.path_names(path)
    mapped = key_of(names[1:])  # drop the collection ('params' / 'batch_stats')
    if mapped is None:
      raise NotImplementedError(f'export has no torch name for Flax variable {"/".join(names)}.')
    key, layout = mapped
    state[key] = np.ascontiguousarray(convert.INVERSE_LAYOUT[layout](np.asarray(leaf, np.float32)))
  for key in [k for k in state if k.endswith('.running_mean')]:
    state[key.removesuffix('running_mean') + 'num_batches_tracked'] = np.zeros((), np.int64)
  return state


def export(weights_dir: str, fmt: str, dst: str) -> dict[str, np.ndarray]:
  """Reads `weights_dir`, writes its state dict in `fmt` to `dst` (.safetensors or .pth)."""
  if fmt not in FORMATS:
    raise ValueError(f'--format {fmt!r}: choose one of {", ".join(FORMATS)}.')
  if not dst.endswith(('.safetensors', '.pth')):
    raise ValueError(f'--dst {dst!r}: name a .safetensors or .pth file.')
  model, variables = weights_lib.load_weights(weights_dir)
  spec = model.spec
  if spec.family != FORMATS[fmt]:
    other = next(f for f, family in FORMATS.items() if family == spec.family)
    raise ValueError(
      f'{weights_dir!r} holds a {spec.family} model, which the {fmt} format does not describe: '
      f'pass --format {other}.'
    )
  state = state_dict_of(spec, variables)
  os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
  if dst.endswith('.safetensors'):
    from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top

    save_file(state, dst)
  else:
    try:
      import torch  # pylint: disable=g-import-not-at-top
    except ImportError:
      raise ImportError(f'--dst {dst!r}: writing .pth needs torch; write .safetensors.') from None
    torch.save({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, dst)
  return state


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(
    prog='python -m vit_jax_stems.export',
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument(
    '--weights', required=True, help='weights directory (model.json + variables/)'
  )
  parser.add_argument('--format', required=True, choices=sorted(FORMATS))
  parser.add_argument('--dst', required=True, help='FILE.safetensors or FILE.pth to write')
  args = parser.parse_args(argv)
  try:
    state = export(args.weights, args.format, args.dst)
  except (ValueError, FileNotFoundError, ImportError) as e:
    sys.exit(f'export: {e}')
  print(f'wrote {len(state)} tensors ({args.format} names) to {args.dst}')


if __name__ == '__main__':
  main()
