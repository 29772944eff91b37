"""Takes weights out of this project: a trainer run to a weights directory, and either to PyTorch.

  python -m vit_jax_stems.export --workdir RUN --format weights --dst DIR [--step N] [--which ema]
  python -m vit_jax_stems.export --weights DIR --format pycls|timm --dst FILE.safetensors|FILE.pth
  python -m vit_jax_stems.export --workdir RUN --format pycls|timm --dst FILE.pth [--step N]

A run's checkpoint (`--workdir`, the latest or `--step N`) gives its raw weights (`--which params`)
or its EMA copy (`--which ema`; default `auto`: the weights the run's recipe evaluates, the EMA
when config.ema.enabled), BatchNorm statistics included, read with the locality analysis's
partial restore (`analysis/sources.py`). `--format weights` writes them as the weights directory
(`vit_jax_stems/weights.py`) that `predict`, `--mode eval`, the locality report, fine-tuning
(`config.init_weights`) and this command read.

The PyTorch formats are the inverse of `vit_jax_stems.convert`, name for name and layout for
layout (its name maps and `INVERSE_LAYOUT`), so the two cannot drift apart:
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

from vit_jax_stems import convert, models
from vit_jax_stems import weights as weights_lib
from vit_jax_stems.models import layers_layout

FORMATS = {'pycls': 'pycls', 'timm': 'convit'}  # --format -> the model family it holds
WEIGHTS_FORMAT = 'weights'
WHICH = ('auto', 'params', 'ema')


def from_run(workdir: str, *, step: int | None = None, which: str = 'auto'):
  """(arch, overrides, variables) of a trainer checkpoint; `which` as in the module doc."""
  from vit_jax_stems.analysis import sources  # pylint: disable=g-import-not-at-top
  from vit_jax_stems.train import train_state  # pylint: disable=g-import-not-at-top

  config = sources.read_run_config(workdir)
  if which == 'auto':
    which = 'ema' if config['ema']['enabled'] else 'params'
  run = sources.from_checkpoint(workdir, step, config=config, which=which)
  overrides = train_state.model_kwargs(config, run.model.spec.num_classes)
  return config['model_name'], overrides, jax.device_get(run.variables)


def state_dict_of(spec, variables) -> dict[str, np.ndarray]:
  """{torch key: float32 array} of the reference model that `spec` matches, from our variables
  (either layout: a scanned model's are unstacked first, models/layers_layout.py)."""
  key_of = convert.key_function(spec)
  per_block = layers_layout.to_layout(jax.device_get(dict(variables)), spec, stacked=False)
  state = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(per_block)[0]:
    names = convert.path_names(path)
    mapped = key_of(names[1:])  # drop the collection ('params' / 'batch_stats')
    if mapped is None:
      raise NotImplementedError(f'export has no torch name for Flax variable {"/".join(names)}.')
    key, layout = mapped
    state[key] = np.ascontiguousarray(convert.INVERSE_LAYOUT[layout](np.asarray(leaf, np.float32)))
  for key in [k for k in state if k.endswith('.running_mean')]:
    state[key.removesuffix('running_mean') + 'num_batches_tracked'] = np.zeros((), np.int64)
  return state


def export(
  fmt: str,
  dst: str,
  *,
  weights_dir: str | None = None,
  workdir: str | None = None,
  step: int | None = None,
  which: str = 'auto',
) -> str:
  """Writes the weights of `weights_dir` or of the run `workdir` in `fmt` to `dst`; returns a
  one-line account of what it wrote. The arguments are checked before anything is read."""
  if (weights_dir is None) == (workdir is None):
    raise ValueError('give --weights DIR or --workdir RUN (one of the two).')
  formats = (*FORMATS, WEIGHTS_FORMAT)
  if fmt not in formats:
    raise ValueError(f'--format {fmt!r}: choose one of {", ".join(formats)}.')
  if which not in WHICH:
    raise ValueError(f'--which {which!r}: choose one of {", ".join(WHICH)}.')
  if fmt != WEIGHTS_FORMAT and not dst.endswith(('.safetensors', '.pth')):
    raise ValueError(f'--dst {dst!r}: name a .safetensors or .pth file.')
  if fmt == WEIGHTS_FORMAT and workdir is None:
    raise ValueError('--format weights writes the weights directory of a run: pass --workdir RUN.')
  if (step is not None or which != 'auto') and workdir is None:
    raise ValueError('--step and --which choose a checkpoint of a run: pass --workdir RUN.')
  if workdir is not None:
    arch, overrides, variables = from_run(workdir, step=step, which=which)
    spec, source = models.get_spec(arch, **overrides), f'{arch} from {workdir}'
  else:
    model, variables = weights_lib.load_weights(weights_dir)
    spec, source = model.spec, weights_dir
  if fmt == WEIGHTS_FORMAT:
    dst = weights_lib.save_weights(dst, arch, variables, overrides=overrides)
    return f'wrote the weights directory of {source} to {dst}'
  if spec.family != FORMATS[fmt]:
    other = next(f for f, family in FORMATS.items() if family == spec.family)
    raise ValueError(
      f'{source} holds a {spec.family} model, which the {fmt} format does not describe: '
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
  return f'wrote {len(state)} tensors of {source} ({fmt} names) to {dst}'


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(
    prog='python -m vit_jax_stems.export',
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument('--weights', help='weights directory (model.json + variables/)')
  source.add_argument('--workdir', help='trainer run directory (config.json + checkpoints/)')
  parser.add_argument('--format', required=True, choices=sorted((*FORMATS, WEIGHTS_FORMAT)))
  parser.add_argument('--dst', required=True, help='DIR (weights) or FILE.safetensors / FILE.pth')
  parser.add_argument('--step', type=int, default=None, help='checkpoint step (default: latest)')
  parser.add_argument('--which', choices=WHICH, default='auto', help='raw or EMA weights of a run')
  args = parser.parse_args(argv)
  try:
    done = export(
      args.format,
      args.dst,
      weights_dir=args.weights,
      workdir=args.workdir,
      step=args.step,
      which=args.which,
    )
  except (ValueError, FileNotFoundError, ImportError) as e:
    sys.exit(f'export: {e}')
  print(done)


if __name__ == '__main__':
  main()
