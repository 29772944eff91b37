r"""The locality report of one run: `locality.json` and PNG figures written to the workdir.

  python -m vit_jax_stems.analysis.locality_report --workdir workdirs/demo_convit
  python main.py --mode locality --config configs/convit.py:demo --workdir workdirs/demo_convit
  python -m vit_jax_stems.analysis.locality_report --workdir /tmp/convit_s_report \
      --weights /tmp/convit_small_weights --image photo.jpg
  python -m vit_jax_stems.analysis.locality_report --workdir /tmp/init_report --arch convit_ti \
      --override image_size=64 --override num_classes=10

Sources (the first that applies): --weights DIR (converted weights), --arch NAME (a fresh init),
else the trainer checkpoints in WORKDIR/checkpoints (latest step; with the run's config from
--config or WORKDIR/config.json). Images: the measures average over the first --num_images
images of the run's eval split (converted weights and fresh inits: the embedded mnist5k digits
at the model's size unless --image is given); the attention maps show --image, else the first of
those images.

Writes to the workdir (or --out_dir):
  locality.json                 source, images and `locality.measure` of the analysed weights,
                                and under "history" the measures of every checkpoint
  nonlocality.png               nonlocality (patches) and attention distance (px) per layer, head
  gates.png                     GPSA gates per head and positional centres/spans (GPSA only)
  attention_maps_rR_cC.png      attention of query patch (R, C) over the image, layers x heads
  locality_over_training.png    per layer nonlocality (and GPSA gates) from init through every
                                kept checkpoint (trainer workdirs only)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from collections.abc import Sequence
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
from absl import logging

from vit_jax_stems.analysis import images as images_lib
from vit_jax_stems.analysis import locality, plots, sources
from vit_jax_stems.models.spec import ModelSpec
from vit_jax_stems.train import checkpointing

LOCALITY_JSON = 'locality.json'


def default_queries(grid: tuple[int, int]) -> list[tuple[int, int]]:
  """The centre patch and one between centre and top-left corner."""
  rows, cols = grid
  return [(rows // 2, cols // 2), (rows // 4, cols // 4)]


def _data_config(config, model):
  """The run's data config (ConfigDict) or, for weights without a run, mnist5k at the model's
  size with the model's normalisation."""
  import ml_collections  # pylint: disable=g-import-not-at-top

  if config is not None:
    cfg = config.to_dict() if hasattr(config, 'to_dict') else dict(config)
    return ml_collections.ConfigDict(cfg['data'])
  from vit_jax_stems import data  # pylint: disable=g-import-not-at-top

  dcfg = data.default_config()
  dcfg.image_size = model.spec.image_size
  dcfg.mean, dcfg.std = tuple(model.spec.mean), tuple(model.spec.std)
  return dcfg


def load_images(model, config=None, *, num_images: int = 64, image_path: str | None = None):
  """(images for the measures, (display image, model input) for the maps)."""
  spec = model.spec
  measured = images_lib.from_eval_split(_data_config(config, model), num_images)
  if measured.model_input.shape[1] != spec.image_size:
    raise ValueError(
      f'The eval images are {measured.model_input.shape[1]} px, the model wants '
      f"{spec.image_size}; set the run config's data.image_size."
    )
  if image_path:
    dcfg = _data_config(config, model) if config is not None else None
    mean = tuple(dcfg.mean) if dcfg is not None else tuple(spec.mean)
    std = tuple(dcfg.std) if dcfg is not None else tuple(spec.std)
    shown = images_lib.from_file(image_path, spec.image_size, mean, std)
  else:
    shown = images_lib.Images(measured.model_input[:1], measured.display[:1], measured.source)
  return measured, shown


@dataclasses.dataclass
class Analysis:
  """Everything the report and the notebook show for one source."""

  run: sources.Run
  source: str
  images: images_lib.Images  # what the measures average over
  shown: images_lib.Images  # the image of the attention maps
  measures: dict
  maps: dict  # locality.query_attention_maps of `shown`
  history: list = dataclasses.field(default_factory=list)  # [{'step', 'label', 'measures'}]

  @property
  def title(self) -> str:
    spec = self.run.model.spec
    return f'{spec.family} {spec.stem} stem - {self.run.label}'


def open_source(entry, *, config=None, which: str = 'params', history: bool = True):
  """(Run, run config or None, [earlier Runs]) of one source.

  `entry`: a trainer workdir (checkpoints/ + config.json: the latest step, and with `history`
  the re-created init and every earlier kept step), a converted weights directory (model.json),
  or {'arch': name, 'overrides': {...}, 'seed': 0} for a fresh init.
  """
  if isinstance(entry, dict):
    if 'arch' not in entry:
      raise ValueError(f"A dict source needs 'arch' (and optional 'overrides', 'seed'): {entry}.")
    run = sources.from_arch(
      entry['arch'], seed=int(entry.get('seed', 0)), **dict(entry.get('overrides') or {})
    )
    return run, None, []
  path = str(entry)
  if os.path.isfile(os.path.join(path, 'model.json')):
    return sources.from_weights(path), None, []
  steps = sources.checkpoint_steps(path)
  if not steps:
    raise FileNotFoundError(
      f'{path!r} is neither a weights directory (model.json) nor a run with checkpoints '
      f'({sources.CHECKPOINTS_DIR}/<step>): train first (python main.py --config ... '
      "--workdir ...), or convert weights, or use {'arch': NAME} for a fresh init."
    )
  if config is not None:  # a --config given with a run's workdir must be that run's model
    checkpointing.check_same_model(config, path)
  config = sources.read_run_config(path) if config is None else config
  run = sources.from_checkpoint(path, steps[-1], config=config, which=which)
  earlier = []
  if history:
    earlier = [sources.init_of_run(config, run.model.spec.num_classes)] + [
      sources.from_checkpoint(path, s, config=config, which=which) for s in steps[:-1]
    ]
  return run, config, earlier


def analyse(
  entry,
  *,
  config=None,
  which: str = 'params',
  history: bool = True,
  num_images: int = 64,
  image_path: str | None = None,
  queries: Sequence[tuple[int, int]] | None = None,
  batch_size: int = 16,
) -> Analysis:
  """Measures one source (see `open_source`) on its eval images; maps of `image_path` or of the
  first eval image."""
  run, run_config, earlier = open_source(entry, config=config, which=which, history=history)
  source = (
    f'fresh init of {entry["arch"]}' if isinstance(entry, dict) else f'{run.label} of {entry}'
  )
  measured, shown = load_images(run.model, run_config, num_images=num_images, image_path=image_path)
  logging.info('Measuring %s on %s', source, measured.source)
  measures = locality.measure(run.model, run.variables, measured.model_input, batch_size=batch_size)
  entries = []
  if earlier:
    entries = [
      {
        'step': past.step,
        'label': past.label,
        'measures': locality.measure(
          past.model, past.variables, measured.model_input, batch_size=batch_size
        ),
      }
      for past in earlier
    ]
    entries.append({'step': run.step, 'label': run.label, 'measures': measures})
  grid = tuple(measures['grid'])
  queries = [tuple(q) for q in (queries or default_queries(grid))]
  maps = locality.query_attention_maps(run.model, run.variables, shown.model_input[0], queries)
  return Analysis(run, source, measured, shown, measures, maps, entries)


def figures_of(analysis: Analysis) -> dict[str, plt.Figure]:
  """{file name: figure} of one analysis (see the module doc)."""
  figures = {'nonlocality.png': plots.plot_nonlocality({analysis.title: analysis.measures})}
  gates = plots.plot_gates({analysis.title: analysis.measures})
  if gates is not None:
    figures['gates.png'] = gates
  shown_name = os.path.basename(analysis.shown.source)
  for q, (r, c) in enumerate(analysis.maps['queries']):
    figures[f'attention_maps_r{r}_c{c}.png'] = plots.plot_attention_maps(
      analysis.maps, analysis.shown.display[0], query=q, title=f'{analysis.title}; {shown_name}'
    )
  if analysis.history:
    figures['locality_over_training.png'] = plots.plot_training(
      analysis.history, title=analysis.title
    )
  return figures


def run_locality(
  config,
  workdir: str,
  *,
  weights_dir: str | None = None,
  arch: str | None = None,
  arch_overrides: dict | None = None,
  image_path: str | None = None,
  num_images: int = 64,
  which: str = 'params',
  queries: Sequence[tuple[int, int]] | None = None,
  out_dir: str | None = None,
  history: bool = True,
  batch_size: int = 16,
) -> dict[str, Any]:
  """Measures one model and writes locality.json and the figures; returns {'json', 'figures',
  'measures'}. The entry point of `main.py --mode locality`.

  config: the run's ConfigDict (main.py passes its --config) or None (then WORKDIR/config.json
    is read when analysing checkpoints). Its model_name/model/data.image_size rebuild the model
    and its data section gives the eval images. Unused with weights_dir / arch.
  workdir: the run directory; outputs go there unless `out_dir` is given.
  weights_dir / arch (+ arch_overrides, e.g. {'image_size': 32, 'num_classes': 10}): analyse
    converted weights or a fresh init instead of the workdir's checkpoints.
  which: 'params' or 'ema' weights of trainer checkpoints.
  history: also measure every kept checkpoint and the re-created init (trainer workdirs).
  """
  t0 = time.time()
  out_dir = out_dir or workdir
  os.makedirs(out_dir, exist_ok=True)
  if weights_dir and arch:
    raise ValueError('Pass weights_dir or arch, not both.')
  if weights_dir:
    entry, config = weights_dir, None
  elif arch:
    entry, config = {'arch': arch, 'overrides': dict(arch_overrides or {})}, None
  else:
    entry = workdir
  analysis = analyse(
    entry,
    config=config,
    which=which,
    history=history,
    num_images=num_images,
    image_path=image_path,
    queries=queries,
    batch_size=batch_size,
  )
  result = {
    'source': analysis.source,
    'label': analysis.run.label,
    'step': analysis.run.step,
    'model': analysis.run.model.spec.to_dict(),
    'images': analysis.images.source,
    'measures': analysis.measures,
  }
  if analysis.history:
    result['history'] = analysis.history

  paths = []
  for name, fig in figures_of(analysis).items():
    path = os.path.join(out_dir, name)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
  json_path = os.path.join(out_dir, LOCALITY_JSON)
  with open(json_path, 'w') as f:
    json.dump(result, f, indent=1)
    f.write('\n')
  logging.info('Wrote %s and %d figures in %.1fs', json_path, len(paths), time.time() - t0)
  return {'json': json_path, 'figures': paths, 'measures': analysis.measures}


def _parse_queries(text: str | None):
  if not text:
    return None
  out = []
  for part in text.split(';'):
    r, c = (int(v) for v in part.split(','))
    out.append((r, c))
  return out


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(
    description='Attention locality report (nonlocality, attention distance, GPSA gates, '
    'attention maps) of a run, converted weights or a fresh init.'
  )
  parser.add_argument(
    '--workdir',
    required=True,
    help='Run directory (checkpoints + config.json); outputs are written here.',
  )
  parser.add_argument('--weights', default=None, help='Converted weights directory instead.')
  parser.add_argument('--arch', default=None, help='Registered model name: analyse a fresh init.')
  parser.add_argument(
    '--override',
    action='append',
    default=[],
    metavar='FIELD=VALUE',
    help='ModelSpec field for --arch, e.g. --override image_size=32; repeatable.',
  )
  parser.add_argument('--image', default=None, help='Image file for the attention maps.')
  parser.add_argument(
    '--num_images', type=int, default=64, help='Eval images the measures average over.'
  )
  parser.add_argument(
    '--which',
    default='params',
    choices=('params', 'ema'),
    help='Raw or EMA weights of trainer checkpoints.',
  )
  parser.add_argument(
    '--queries', default=None, help="Query patches 'r,c;r,c' (default: centre and quarter)."
  )
  parser.add_argument('--out_dir', default=None, help='Write here instead of the workdir.')
  parser.add_argument(
    '--no_history', action='store_true', help='Only the latest checkpoint, not every kept one.'
  )
  args = parser.parse_args(argv)
  if args.weights and args.arch:
    parser.error('Pass --weights or --arch, not both.')
  if args.override and not args.arch:
    parser.error('--override applies to --arch only.')
  try:
    arch_overrides = ModelSpec.parse_overrides(args.override)
  except ValueError as e:
    parser.error(str(e))
  logging.set_verbosity(logging.INFO)
  matplotlib.use('Agg')  # files only, no display needed
  out = run_locality(
    None,
    args.workdir,
    weights_dir=args.weights,
    arch=args.arch,
    arch_overrides=arch_overrides,
    image_path=args.image,
    num_images=args.num_images,
    which=args.which,
    queries=_parse_queries(args.queries),
    out_dir=args.out_dir,
    history=not args.no_history,
  )
  layers = out['measures']['layers']
  print(f'Wrote {out["json"]}')
  for layer in layers:
    extra = f'  gate {layer["gate_mean"]:.3f}' if layer['kind'] == 'gpsa' else ''
    cls = (
      ''
      if layer['class_token_mass_mean'] is None
      else f'  cls mass {layer["class_token_mass_mean"]:.3f}'
    )
    print(
      f'  {layer["name"]} ({layer["kind"]}): nonlocality {layer["nonlocality_mean"]:.3f} '
      f'patches, distance {layer["attention_distance_px_mean"]:.2f} px{cls}{extra}'
    )
  for path in out['figures']:
    print(f'Wrote {path}')


if __name__ == '__main__':
  main()
