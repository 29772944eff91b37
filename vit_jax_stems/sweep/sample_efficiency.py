r"""Sample efficiency (P2 Table 2): each model trained on class-balanced fractions of the train split.

  python -m vit_jax_stems.sweep.sample_efficiency --config configs/convit.py:demo \
      [--models convit_ti] [--fractions 5,10,30,50,100] [--baseline MODEL] --workdir DIR \
      [--config.a.b=value ...]

One trainer run per (model, fraction f) in DIR/<model>/f<percent>/, with
config.data.train_fraction = f (the first floor(n_c * f) examples of each class c:
vit_jax_stems/data/README.md) and the full run's number of optimizer updates, so that every run
sees the same number of images: P2 trains on f of ImageNet for 300 / f epochs
(docs/references.md#experiment-protocols). Updates, not epochs, are what this command fixes: at
small subsets the last partial batch of each epoch is dropped (steps per epoch = floor(n / batch)),
and E / f epochs of 200 examples at batch 128 would see 35% fewer images than E epochs of 4,000.
Evaluations and checkpoints come at the full run's steps; the warmup stays in epochs of the
subset, as in P2 (convit `main.py` keeps --warmup-epochs when --epochs is raised). A plain
`main.py` run with config.data.train_fraction keeps its own epochs: only this command scales.

--models sets config.model_name (default: the config's); a model of another family needs its own
config file, so run the command once per config into the same DIR: the table and the plot gather
every finished run under DIR. Resumable: a run with a result.json is skipped, an unfinished one
resumes from its checkpoints; a run directory of another config (its config.json) stops the
command before anything trains.

Writes, after every run: DIR/<model>/f<percent>/result.json, and DIR/sample_efficiency.json (the
numbers), DIR/sample_efficiency.md (top-1 per model and fraction, and P2's relative gap over the
baseline model: (top1 - top1_baseline) / top1_baseline) and DIR/sample_efficiency.png (top-1
against f, log x, one curve per model). Top-1 is that of the weights the recipe evaluates (the
EMA when config.ema.enabled, else the raw weights); a run whose loss became non-finite counts as
top-1 0 (P1 counts diverged runs at error 100%) and is marked.
"""

import hashlib
import json
import math
import sys
import time

from absl import app, flags, logging
from etils import epath
from ml_collections import config_flags

from vit_jax_stems import command_line
from vit_jax_stems.sweep import trials
from vit_jax_stems.train import config_checks

RESULT_JSON = 'result.json'
SUMMARY = 'sample_efficiency'
DEFAULT_FRACTIONS = '5,10,30,50,100'  # P2 Table 2

FLAGS = flags.FLAGS


def _define_flags():
  """The command's flags, defined only when it runs as a command: the sweep CLI, which the same
  process may import, has its own --models."""
  config_flags.DEFINE_config_file(
    'config', None, 'Config file as for main.py, e.g. configs/convit.py:demo.', lock_config=True
  )
  flags.DEFINE_string('workdir', None, 'Directory of the grid: DIR/<model>/f<percent>/ per run.')
  flags.DEFINE_list('models', None, "config.model_name of each model (default: the config's).")
  flags.DEFINE_list('fractions', DEFAULT_FRACTIONS.split(','), 'Percent of the train split.')
  flags.DEFINE_string(
    'baseline', None, 'Model the relative gaps are over (default: lowest top-1 at the largest f).'
  )
  flags.mark_flags_as_required(['config', 'workdir'])


class GridError(config_checks.ConfigError):
  """An argument or a workdir that cannot work; the message says what to change."""


# ------------------------------------------------------------------ The grid
def parse_fractions(values) -> list[float]:
  """['5', '10', '100'] (percent) -> [0.05, 0.1, 1.0]; a short error naming --fractions."""
  fractions = []
  for value in values:
    try:
      percent = float(value)
    except ValueError:
      percent = math.nan
    if not 0 < percent <= 100:
      raise GridError(f'--fractions={",".join(values)}: {value!r} is not a percentage in (0, 100].')
    fractions.append(percent / 100)
  return sorted(set(fractions))


def run_name(fraction: float) -> str:
  """0.05 -> 'f5', 0.025 -> 'f2.5', 1.0 -> 'f100'."""
  return f'f{100 * fraction:g}'


def fraction_config(base, model: str, fraction: float, full_plan, num_train_examples: int):
  """The config of one run: `base` with the model and the subset (of num_train_examples), the
  full run's updates and eval / checkpoint steps (`full_plan`: run_setup.Plan of `base` on the
  whole train split), and the full run's EMA rate per update: pycls's rate is alpha * batch /
  epochs (`train/ema.py`), and the subset's epochs are 1/f times more."""
  c = base.copy_and_resolve_references()
  c.model_name = model
  c.data.train_fraction = fraction
  c.total_epochs = c.total_examples = None
  c.total_steps = full_plan.total_updates
  for prefix, every in (
    ('eval_every', full_plan.eval_every),
    ('checkpoint_every', full_plan.checkpoint_every),
  ):
    for unit in ('epochs', 'examples'):
      if f'{prefix}_{unit}' in c:
        c[f'{prefix}_{unit}'] = None
    c[f'{prefix}_steps'] = every // full_plan.accum if every else None
  if c.ema.enabled:
    subset_steps_per_epoch = max(1, num_train_examples // base.batch_size)  # as make_plan
    c.ema.alpha = base.ema.alpha * full_plan.steps_per_epoch / subset_steps_per_epoch
  return c


def config_digest(config) -> str:
  """What makes two runs the same run: the config without where the data lives and without the
  extra evaluators (config.evals), which change what is measured, not what is trained."""
  return _digest(json.loads(config.to_json_best_effort()))


def _digest(plain: dict) -> str:
  for key in ('data_dir', 'manual_dir'):
    plain['data'].pop(key, None)
  for key in ('evals', 'eval_at_start'):  # what is evaluated does not change the training
    plain.pop(key, None)
  if not plain.get('linear_probe', False):  # absent from the config.json of older runs
    plain.pop('linear_probe', None)
  return hashlib.sha1(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:16]


def _read_result(path: epath.Path):
  return json.loads(path.read_text()) if path.exists() else None


def run_one(config, workdir: epath.Path, train_examples: int) -> dict | None:
  """Trains `config` in `workdir` (resuming) and returns its result; None if it was preempted."""
  from vit_jax_stems.train import trainer  # pylint: disable=g-import-not-at-top

  start = time.monotonic()
  try:
    last = trainer.train_and_evaluate(config, str(workdir))
  except trainer.NonFiniteLossError as e:  # a result, not a crash (P1)
    logging.warning('%s diverged: %s', workdir, e)
    top1_raw = top1_ema = None
    diverged = True
  else:
    if last['stopped'] is not None:
      return None
    top1_raw = 100 * last['eval']['params_top1']
    top1_ema = 100 * last['eval']['ema_top1'] if config.ema.enabled else None
    diverged = False
  return {
    'model': config.model_name,
    'dataset': config.data.name,
    'fraction': config.data.train_fraction,
    'train_examples': train_examples,
    'steps': config.total_steps,
    'top1': 0.0 if diverged else (top1_ema if config.ema.enabled else top1_raw),
    'top1_raw': top1_raw,
    'top1_ema': top1_ema,
    'diverged': diverged,
    'wall_s': time.monotonic() - start,
    'config_digest': config_digest(config),
  }


def run_grid(base, models, fractions, workdir, *, baseline=None) -> dict | None:
  """Every (model, fraction) run not finished yet, then the summary files; returns the summary,
  or None when a run was preempted (it saved a checkpoint; rerunning resumes it).

  Every run's config and workdir are checked before the first one trains.
  """
  from vit_jax_stems import data  # pylint: disable=g-import-not-at-top
  from vit_jax_stems.train import run_setup, trainer  # pylint: disable=g-import-not-at-top

  workdir = epath.Path(workdir)

  def num_train_examples(fraction):
    dcfg = base.data.copy_and_resolve_references()
    dcfg.train_fraction = fraction
    return data.get_dataset_info(dcfg).num_train_examples

  full_plan = run_setup.make_plan(base, num_train_examples(1.0))
  runs = []
  for fraction in fractions:
    n = num_train_examples(fraction)
    for model in models:
      config = fraction_config(base, model, fraction, full_plan, n)
      run_dir = workdir / model / run_name(fraction)
      trainer.check_config(config)
      _check_same_run(run_dir, config)
      runs.append((run_dir, config, n))
  runs.sort(key=lambda run: models.index(run[1].model_name))  # model by model
  for run_dir, config, train_examples in runs:
    name = f'{config.model_name} {run_dir.name}'
    done = _read_result(run_dir / RESULT_JSON)
    if done is not None:
      print(f'{name}: finished before, {done["top1"]:.1f}% top-1; skipped', flush=True)
      continue
    print(f'{name}: {train_examples} examples, {config.total_steps} steps in {run_dir}', flush=True)
    result = run_one(config, run_dir, train_examples)
    if result is None:
      print(f'{name}: preempted; rerun the same command to resume.', flush=True)
      return None
    trials.write_json_atomic(run_dir / RESULT_JSON, result)
    write_summary(workdir, baseline=baseline)
  return write_summary(workdir, baseline=baseline)


def _check_same_run(run_dir: epath.Path, config):
  """GridError if run_dir holds a run (finished or not) of another config: its config.json,
  written by the trainer when the run started, is compared without where the data lives."""
  from vit_jax_stems.train import checkpointing  # pylint: disable=g-import-not-at-top

  path = run_dir / checkpointing.CONFIG_JSON
  if path.exists() and _digest(json.loads(path.read_text())) != config_digest(config):
    raise GridError(
      f'{run_dir} holds a run of another config (its config: {path}). Use another --workdir, or '
      'delete that run directory to train it again.'
    )


# ------------------------------------------------------------------ Table, plot, numbers
def gather(workdir) -> dict[str, dict[float, dict]]:
  """{model: {fraction: result}} of every finished run under workdir."""
  results = {}
  for path in sorted(epath.Path(workdir).glob(f'*/f*/{RESULT_JSON}')):
    result = json.loads(path.read_text())
    results.setdefault(result['model'], {})[result['fraction']] = result
  return results


def relative_gaps(results, baseline: str) -> dict[str, dict[float, float]]:
  """P2 Table 2's gap: (top1_model - top1_baseline) / top1_baseline in percent, per fraction both
  have (ConViT-S over DeiT-S at 5%: (47.8 - 34.8) / 34.8 = 37%)."""
  base = results[baseline]
  gaps = {}
  for model, runs in results.items():
    if model == baseline:
      continue
    gaps[model] = {
      f: 100 * (r['top1'] - base[f]['top1']) / base[f]['top1']
      for f, r in runs.items()
      if f in base and base[f]['top1'] > 0
    }
  return gaps


def default_baseline(results) -> str:
  """The model with the lowest top-1 at the largest fraction that has runs (P2's DeiT)."""
  largest = max(f for runs in results.values() for f in runs)
  return min(
    (m for m in results if largest in results[m]), key=lambda m: results[m][largest]['top1']
  )


def write_summary(workdir, *, baseline=None) -> dict:
  """DIR/sample_efficiency.{json,md,png} from every finished run under DIR."""
  workdir = epath.Path(workdir)
  results = gather(workdir)
  if not results:
    return {}
  if baseline is not None and baseline not in results:
    raise GridError(f'--baseline={baseline}: no finished runs of it; models: {sorted(results)}.')
  baseline = baseline or default_baseline(results)
  gaps = relative_gaps(results, baseline)
  fractions = sorted({f for runs in results.values() for f in runs})
  summary = {
    'baseline': baseline,
    'fractions': fractions,
    'top1': {
      m: {run_name(f): r['top1'] for f, r in sorted(runs.items())} for m, runs in results.items()
    },
    'relative_gap_percent': {
      m: {run_name(f): g for f, g in sorted(v.items())} for m, v in gaps.items()
    },
    'runs': {m: {run_name(f): r for f, r in sorted(runs.items())} for m, runs in results.items()},
  }
  trials.write_json_atomic(workdir / f'{SUMMARY}.json', summary)
  (workdir / f'{SUMMARY}.md').write_text(markdown_table(results, gaps, baseline, fractions))
  plot(results, fractions, workdir / f'{SUMMARY}.png')
  return summary


def markdown_table(results, gaps, baseline, fractions) -> str:
  """Top-1 per model and fraction, then P2's relative gap of every other model over `baseline`."""
  head = '| model | ' + ' | '.join(f'{100 * f:g}%' for f in fractions) + ' |'
  rule = '|---|' + '---|' * len(fractions)

  def cell(runs, f):
    if f not in runs:
      return '-'
    return 'diverged' if runs[f]['diverged'] else f'{runs[f]["top1"]:.1f}'

  rows = [f'| {m} | ' + ' | '.join(cell(results[m], f) for f in fractions) + ' |' for m in results]
  every = [r for runs in results.values() for r in runs.values()]
  datasets = ', '.join(sorted({r['dataset'] for r in every}))
  steps = sorted({r['steps'] for r in every})
  updates = f'{steps[0]} optimizer updates' if len(steps) == 1 else f'{steps} optimizer updates'
  lines = [
    f'# Sample efficiency on {datasets}',
    '',
    f'Top-1 (%) on the eval split after training on a fraction f of the train split: the first '
    f'floor(n_c * f) examples of each class, {updates} in every run of a config, so that every '
    'run sees the same number of images (P2 Table 2).',
    '',
    head,
    rule,
    *rows,
    '',
  ]
  if gaps:
    lines += [
      f'Relative gap over {baseline}, (top1 - top1_{baseline}) / top1_{baseline}, as P2 Table 2 '
      'reports ConViT-S over DeiT-S:',
      '',
      head,
      rule,
      *(
        f'| {m} vs {baseline} | '
        + ' | '.join(f'{gaps[m][f]:+.0f}%' if f in gaps[m] else '-' for f in fractions)
        + ' |'
        for m in gaps
      ),
      '',
    ]
  return '\n'.join(lines)


def plot(results, fractions, path):
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(6.4, 4.4))
  for model, runs in results.items():
    fs = sorted(runs)
    ax.plot([100 * f for f in fs], [runs[f]['top1'] for f in fs], marker='o', label=model)
  ax.set_xscale('log')
  ax.set_xticks([100 * f for f in fractions], [f'{100 * f:g}' for f in fractions])
  ax.minorticks_off()
  ax.set_xlabel('training data: fraction f of the train split (%, log scale)')
  ax.set_ylabel('top-1 accuracy on the eval split (%)')
  datasets = sorted({r['dataset'] for runs in results.values() for r in runs.values()})
  ax.set_title(f'Sample efficiency, {", ".join(datasets)} (same images seen per run)')
  ax.grid(True, alpha=0.3)
  ax.legend()
  fig.tight_layout()
  with epath.Path(path).open('wb') as f:
    fig.savefig(f, format='png', dpi=120)
  plt.close(fig)


# ------------------------------------------------------------------ Command line
def main(argv):
  command_line.quiet_libraries()
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  from vit_jax_stems.train import durations  # pylint: disable=g-import-not-at-top

  config = durations.prefer_command_line(FLAGS.config, sys.argv)
  try:
    fractions = parse_fractions(FLAGS.fractions)
  except GridError as e:
    raise app.UsageError(str(e)) from None
  models = FLAGS.models or [config.model_name]
  workdir = command_line.absolute_workdir(FLAGS.workdir)
  summary = command_line.exit_on_user_error(
    run_grid, config, models, fractions, workdir, baseline=FLAGS.baseline
  )
  if summary is None:  # preempted
    return
  print(f'sample efficiency: wrote {workdir}/{SUMMARY}.{{md,png,json}}', flush=True)
  print(epath.Path(workdir, f'{SUMMARY}.md').read_text(), flush=True)


if __name__ == '__main__':
  command_line.quiet_tensorflow_startup()
  _define_flags()
  app.run(main, flags_parser=command_line.parse_flags)
