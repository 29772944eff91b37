r"""The report of one or more sweeps: EDFs (P1 Fig. 3), error against lr and wd (P1 Fig. 4) and a
Markdown table, written into the first workdir.

  python -m vit_jax_stems.sweep.report --workdir workdirs/sweep_vitc workdirs/sweep_vitp
  python -m vit_jax_stems.sweep.report --workdir DIR --out_dir reports/ --error best

Reads DIR/trials.jsonl of every DIR (one JSON row per trial, as each trial's result.json; where a
file repeats a trial_id, its last row counts). The error of a trial is its `final_error` (top-1
error in %, of the weights the recipe evaluates; `--error best` takes `best_error`, the lowest over
the run's evals). A diverged trial is a result, not a gap: P1 counts it at 100% error, and so does
every number and curve here (a row whose error is not a finite number counts as diverged too).

Writes into the first DIR (or --out_dir):
  edf.png               per (model, optimizer), the fraction of trials with error < e against e
                        (P1 Fig. 3); one panel per epochs value
  error_vs_hparams.png  error against optimizer.lr and optimizer.weight_decay, log x (P1 Fig. 4);
                        one row of panels per optimizer (and epochs value)
  report.md             per epochs value: trials, diverged, best, median and top-25% error per
                        model and optimizer, the AdamW-SGD gap per model; where models trained the
                        same samples, the paired comparison; the figures and the command

Paired trials: a sweep's sample is a function of its seed and the trial index, not of the model, so
sweeps of several models with one seed train every model at the same (lr, wd) per index. Comparing
them sample by sample (which model has the lower error at the same hyperparameters) removes the
spread of the samples from the comparison of the models, which an EDF of 16 trials keeps.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
from collections.abc import Mapping, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import lines as lines_lib
from matplotlib import ticker

TRIALS_JSONL = 'trials.jsonl'
EDF_PNG = 'edf.png'
HPARAMS_PNG = 'error_vs_hparams.png'
REPORT_MD = 'report.md'

DIVERGED_ERROR = 100.0  # P1 Sec. 4: a diverged trial counts at 100% error.
REQUIRED_FIELDS = ('trial_id', 'model', 'optimizer', 'epochs', 'overrides', 'diverged')
HPARAMS = ('optimizer.lr', 'optimizer.weight_decay')  # the axes of P1 Fig. 4
_OPTIMIZER_ORDER = ('adamw', 'sgd')
_LINE_STYLES = ('-', '--', ':', '-.')
_MODEL_CMAP = 'tab10'


class ReportInputError(ValueError):
  """A workdir or trials.jsonl the report cannot read; the message says which and why."""


# ---------------------------------------------------------------------------------------------
# Arithmetic: the EDF and the table's statistics (pure functions of the errors).


def edf(errors: Sequence[float], grid: Sequence[float]) -> np.ndarray:
  """EDF(e) = fraction of trials whose error is strictly below e, at every e of `grid` (P1 Sec. 4).

  Strictly: a trial at exactly e is not counted at e, so trials counted at 100% (diverged) never
  count on [0, 100] and the curve of a set with a diverged trial stays below 1 there.
  """
  errors = np.sort(np.asarray(errors, np.float64))
  if errors.size == 0:
    raise ValueError('edf of no trials')
  below = np.searchsorted(errors, np.asarray(grid, np.float64), side='left')
  return below / errors.size


def edf_steps(errors: Sequence[float], upper: float = DIVERGED_ERROR):
  """The corners of the EDF as a step function below `upper`: (x, y) with x the distinct errors
  < upper in increasing order and y[i] the EDF just above x[i], i.e. the fraction <= x[i]. The EDF
  is 0 before x[0], y[i] on (x[i], x[i+1]] and y[-1] up to `upper` (matplotlib `step(where='post')`
  draws it)."""
  errors = np.sort(np.asarray(errors, np.float64))
  x = np.unique(errors[errors < upper])
  y = np.searchsorted(errors, x, side='right') / errors.size
  return x, y


def top_quartile_mean(errors: Sequence[float]) -> float:
  """Mean of the best quarter of the trials: the ceil(n / 4) lowest errors. P1 does not define
  its "top-25%"; the mean of the best quartile (rather than the 25th percentile) is this report's
  choice, as it needs no interpolation rule and uses every trial of the quartile."""
  errors = np.sort(np.asarray(errors, np.float64))
  return float(errors[: math.ceil(errors.size / 4)].mean())


def summarize(errors: Sequence[float], num_diverged: int) -> dict:
  """The table's row for one (model, optimizer): trials, diverged, best, median, top-25%."""
  errors = np.asarray(errors, np.float64)
  return {
    'trials': int(errors.size),
    'diverged': int(num_diverged),
    'best': float(errors.min()),
    'median': float(np.median(errors)),  # the mean of the two middle ones for an even count
    'top25': top_quartile_mean(errors),
  }


# ---------------------------------------------------------------------------------------------
# Input: trials.jsonl of every workdir.


def _read_rows(path: str) -> list[dict]:
  """The rows of one trials.jsonl, the last one per trial_id, in the file's order."""
  rows = {}
  with open(path) as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError:
        raise ReportInputError(f'{path} line {number} is not JSON.') from None
      if not isinstance(row, dict):
        raise ReportInputError(f'{path} line {number} is not a JSON object.')
      missing = [k for k in REQUIRED_FIELDS if k not in row]
      if missing:
        raise ReportInputError(f'{path} line {number} lacks {", ".join(missing)}.')
      rows.pop(row['trial_id'], None)  # a repeated trial moves to where its last row is
      rows[row['trial_id']] = row | {'_line': number}
  if not rows:
    raise ReportInputError(f'{path} has no trials yet; run the sweep first.')
  return list(rows.values())


def _number(value, path: str, row: dict, field: str) -> float:
  if value is None:
    return math.nan
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise ReportInputError(f'{path} line {row["_line"]}: {field} is not a number: {value!r}.')
  return float(value)


def _trial(row: dict, path: str, error_field: str) -> dict:
  """One trial as the report uses it: the error (100 when diverged) and the swept values."""
  if error_field not in row:
    raise ReportInputError(f'{path} line {row["_line"]} lacks {error_field}.')
  if not isinstance(row['overrides'], dict):
    raise ReportInputError(f'{path} line {row["_line"]}: overrides is not a JSON object.')
  if not isinstance(row['diverged'], bool):
    raise ReportInputError(f'{path} line {row["_line"]}: diverged is not true or false.')
  error = _number(row[error_field], path, row, error_field)
  diverged = bool(row['diverged']) or not math.isfinite(error)
  epochs = row['epochs']
  index = row.get('index')
  return {
    'trial_id': row['trial_id'],
    'index': index if isinstance(index, int) and not isinstance(index, bool) else None,
    'model': str(row['model']),
    'optimizer': str(row['optimizer']),
    'epochs': None if epochs is None else _number(epochs, path, row, 'epochs'),
    'error': DIVERGED_ERROR if diverged else error,
    'diverged': diverged,
    'hparams': {
      k: _number(row['overrides'][k], path, row, f'overrides[{k!r}]')
      for k in HPARAMS
      if row['overrides'].get(k) is not None
    },
  }


def load_trials(workdirs: Sequence[str], error_field: str = 'final_error'):
  """(trials of all workdirs, {trials.jsonl path: number of trials}). A workdir given twice is
  read once; trials of different workdirs are different trials even where their ids agree."""
  trials, sources, seen = [], {}, set()
  for workdir in workdirs:
    if os.path.realpath(workdir) in seen:
      continue
    seen.add(os.path.realpath(workdir))
    path = os.path.join(workdir, TRIALS_JSONL)
    if not os.path.isdir(workdir):
      raise ReportInputError(f'--workdir {workdir} does not exist.')
    if not os.path.isfile(path):
      raise ReportInputError(
        f'{workdir} has no {TRIALS_JSONL}; pass the --workdir of a sweep '
        '(python -m vit_jax_stems.sweep ... --workdir DIR).'
      )
    rows = _read_rows(path)
    trials += [_trial(row, path, error_field) for row in rows]
    sources[path] = len(rows)
  return trials, sources


# ---------------------------------------------------------------------------------------------
# Grouping: epochs value -> (model, optimizer) -> trials.


def _optimizer_key(name: str):
  return (_OPTIMIZER_ORDER.index(name) if name in _OPTIMIZER_ORDER else len(_OPTIMIZER_ORDER), name)


def _epochs_key(epochs):
  return (-1.0, 0.0) if epochs is None else (0.0, epochs)


def epochs_label(epochs) -> str:
  return 'epochs as configured' if epochs is None else f'{epochs:g} epochs'


def group_trials(trials: Sequence[dict]) -> dict:
  """{epochs: {(model, optimizer): [trial, ...]}}, epochs ascending (None first), models by name,
  AdamW before SGD before any other optimizer."""
  out = {}
  for trial in trials:
    out.setdefault(trial['epochs'], {}).setdefault((trial['model'], trial['optimizer']), [])
    out[trial['epochs']][(trial['model'], trial['optimizer'])].append(trial)
  return {
    epochs: dict(sorted(curves.items(), key=lambda kv: (kv[0][0], _optimizer_key(kv[0][1]))))
    for epochs, curves in sorted(out.items(), key=lambda kv: _epochs_key(kv[0]))
  }


def paired_trials(curves: Mapping[tuple, list]) -> dict:
  """{optimizer: [(index, hparams, {model: trial}), ...]} of `curves` (one epochs value, as
  `group_trials` gives): the samples that two or more models trained, by trial index and with
  exactly the same swept values (sweeps of different seeds share indices, not samples). Trials
  without an index pair with nothing. Samples in index order; optimizers with no pair left out."""
  samples = {}
  for (model, optimizer), group in curves.items():
    for trial in group:
      if trial['index'] is None:
        continue
      key = (optimizer, trial['index'], tuple(sorted(trial['hparams'].items())))
      samples.setdefault(key, {})[model] = trial
  out = {}
  for (optimizer, index, hparams), by_model in sorted(
    samples.items(), key=lambda kv: (_optimizer_key(kv[0][0]), kv[0][1], kv[0][2])
  ):
    if len(by_model) > 1:
      out.setdefault(optimizer, []).append((index, dict(hparams), dict(sorted(by_model.items()))))
  return out


def paired_wins(samples: Sequence[tuple], model_a: str, model_b: str) -> dict:
  """Over the samples both models trained: how many, and at how many each had the lower error
  (a diverged trial at 100, so two diverged trials are equal)."""
  both = [by_model for _, _, by_model in samples if model_a in by_model and model_b in by_model]
  a = [by_model[model_a]['error'] for by_model in both]
  b = [by_model[model_b]['error'] for by_model in both]
  return {
    'pairs': len(both),
    'a_lower': sum(x < y for x, y in zip(a, b)),
    'b_lower': sum(y < x for x, y in zip(a, b)),
    'equal': sum(x == y for x, y in zip(a, b)),
  }


def _styles(trials: Sequence[dict]):
  """A colour per model and a line style per optimizer, the same in every panel and figure."""
  models = sorted({t['model'] for t in trials})
  optimizers = sorted({t['optimizer'] for t in trials}, key=_optimizer_key)
  cmap = plt.get_cmap(_MODEL_CMAP)
  colours = {m: cmap(i % cmap.N) for i, m in enumerate(models)}
  lines = {o: _LINE_STYLES[i % len(_LINE_STYLES)] for i, o in enumerate(optimizers)}
  return colours, lines


# ---------------------------------------------------------------------------------------------
# Figures.


def plot_edfs(trials: Sequence[dict]) -> plt.Figure:
  """P1 Fig. 3: per epochs value (panels), one EDF per model (colour) and optimizer (line style)."""
  groups = group_trials(trials)
  colours, lines = _styles(trials)
  finite = [t['error'] for t in trials if not t['diverged']]
  lo = max(0.0, math.floor(min(finite, default=0.0)) - 1.0)
  hi = min(DIVERGED_ERROR, max(finite, default=DIVERGED_ERROR) + 2.0)
  fig, axes = plt.subplots(
    1, len(groups), figsize=(5.6 * len(groups), 5.4), squeeze=False, sharey=True
  )
  for ax, (epochs, curves) in zip(axes[0], groups.items()):
    handles = {}
    for (model, optimizer), group in curves.items():
      x, y = edf_steps([t['error'] for t in group])
      diverged = sum(t['diverged'] for t in group)
      (handles[model, optimizer],) = ax.step(
        np.concatenate([[lo], x, [hi]]),
        np.concatenate([[0.0], y, [y[-1] if y.size else 0.0]]),
        where='post',
        color=colours[model],
        ls=lines[optimizer],
        lw=1.8,
        label=f'{model} {optimizer}: {len(group)} trials, {diverged} diverged',
      )
    ax.set_xlim(lo, hi)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel('top-1 error (%)')
    ax.set_title(epochs_label(epochs), fontsize=10)
    ax.grid(alpha=0.3)
    _legend_below(ax, handles)
  axes[0, 0].set_ylabel('fraction of trials with error < e')
  fig.tight_layout()
  return fig


def _legend_below(ax, handles: Mapping[tuple, object]) -> None:
  """The legend under the axes, clear of the curves: a column per optimizer and a row per model
  where every model has every optimizer, else one column."""
  models = {m for m, _ in handles}
  optimizers = sorted({o for _, o in handles}, key=_optimizer_key)
  complete = len(handles) == len(models) * len(optimizers)
  keys = sorted(handles, key=lambda k: (_optimizer_key(k[1]), k[0])) if complete else list(handles)
  ax.legend(
    [handles[k] for k in keys],
    [handles[k].get_label() for k in keys],
    fontsize=8,
    loc='upper center',
    bbox_to_anchor=(0.5, -0.13),
    ncol=len(optimizers) if complete else 1,
    frameon=False,
  )


def _log_limits(values: Sequence[float], min_ratio: float = 10.0) -> tuple[float, float]:
  """x limits of a log axis around `values`: 15% beyond the extremes, widened about their
  geometric centre to at least `min_ratio`, so that every panel shows two or more 1-2-5 ticks."""
  lo, hi = min(values) / 1.15, max(values) * 1.15
  if hi / lo < min_ratio:
    centre = math.sqrt(lo * hi)
    lo, hi = centre / math.sqrt(min_ratio), centre * math.sqrt(min_ratio)
  return lo, hi


def plot_error_vs_hparams(trials: Sequence[dict]) -> plt.Figure | None:
  """P1 Fig. 4's view: error against each swept hyperparameter (columns, log x) per optimizer and
  epochs value (rows), a colour per model; diverged trials as crosses at 100. None when no trial
  records optimizer.lr or optimizer.weight_decay."""
  hparams = [h for h in HPARAMS if any(h in t['hparams'] for t in trials)]
  if not hparams:
    return None
  colours, _ = _styles(trials)
  rows = sorted(
    {(t['epochs'], t['optimizer']) for t in trials},
    key=lambda r: (_epochs_key(r[0]), _optimizer_key(r[1])),
  )
  several_epochs = len({epochs for epochs, _ in rows}) > 1
  fig, axes = plt.subplots(
    len(rows),
    len(hparams),
    figsize=(4.6 * len(hparams) + 0.4, 3.3 * len(rows) + 0.6),
    squeeze=False,
    sharey=True,
  )
  for r, (epochs, optimizer) in enumerate(rows):
    for c, hparam in enumerate(hparams):
      ax = axes[r, c]
      panel = [
        t
        for t in trials
        if (t['epochs'], t['optimizer']) == (epochs, optimizer) and hparam in t['hparams']
      ]
      for model, colour in colours.items():
        for diverged, marker, size in ((False, 'o', 22), (True, 'x', 40)):
          chosen = [t for t in panel if (t['model'], t['diverged']) == (model, diverged)]
          ax.scatter(
            [t['hparams'][hparam] for t in chosen],
            [t['error'] for t in chosen],
            marker=marker,
            s=size,
            color=colour,
            alpha=0.85,
          )
      ax.set_xscale('log')
      if panel:
        ax.set_xlim(*_log_limits([t['hparams'][hparam] for t in panel]))
      else:
        ax.text(0.5, 0.5, 'not recorded', ha='center', transform=ax.transAxes, color='grey')
      # Labels on the 1-2-5 ticks, '%g', over at least a decade: a sweep spans 1.5 decades (P1:
      # 1/8x..4x), too few for decade labels only, and matplotlib's own minor labels overlap.
      ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
      ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f'{v:g}'))
      ax.xaxis.set_minor_formatter(ticker.NullFormatter())
      ax.set_xlabel(hparam)
      ax.grid(alpha=0.3)
      title = f'{optimizer}, {epochs_label(epochs)}' if several_epochs else optimizer
      ax.set_title(title, fontsize=10)
    axes[r, 0].set_ylabel('top-1 error (%)')
  legend = [
    *(
      lines_lib.Line2D([], [], ls='', marker='o', color=colour, label=model)
      for model, colour in colours.items()
    ),
    lines_lib.Line2D([], [], ls='', marker='x', color='k', label='diverged (drawn at 100)'),
  ]
  fig.legend(
    handles=legend, loc='upper center', ncol=min(len(legend), 5), fontsize=8, frameon=False
  )
  legend_rows = -(-len(legend) // 5)
  fig.tight_layout(rect=(0, 0, 1, 1 - (0.22 * legend_rows + 0.05) / fig.get_figheight()))
  return fig


# ---------------------------------------------------------------------------------------------
# The Markdown report.


def _fmt(value: float) -> str:
  return f'{value:.2f}'


def _gap_rows(curves: Mapping[tuple, list]) -> list[str]:
  """| model | best gap | median gap | for each model swept with both AdamW and SGD."""
  stats = {key: summarize([t['error'] for t in g], 0) for key, g in curves.items()}
  out = []
  for model in sorted({m for m, _ in curves}):
    adamw, sgd = stats.get((model, 'adamw')), stats.get((model, 'sgd'))
    if adamw and sgd:
      best, median = sgd['best'] - adamw['best'], sgd['median'] - adamw['median']
      out.append(f'| {model} | {best:+.2f} | {median:+.2f} |')
  return out


def _paired_lines(epochs, curves: Mapping[tuple, list]) -> list[str]:
  """The paired comparison of one epochs value: wins per pair of models, then every sample."""
  paired = paired_trials(curves)
  if not paired:
    return []
  lines = [
    '',
    f'## {epochs_label(epochs)}, paired trials',
    '',
    'Models trained at the same sample (same trial index, same swept values), compared one to '
    'one: at how many samples each model of a pair had the lower error.',
    '',
    '| optimizer | model A | model B | pairs | A lower | B lower | equal |',
    '|---|---|---|---:|---:|---:|---:|',
  ]
  for optimizer, samples in paired.items():
    models = sorted({m for _, _, by_model in samples for m in by_model})
    for i, model_a in enumerate(models):
      for model_b in models[i + 1 :]:
        w = paired_wins(samples, model_a, model_b)
        if w['pairs']:
          lines.append(
            f'| {optimizer} | {model_a} | {model_b} | {w["pairs"]} | {w["a_lower"]} '
            f'| {w["b_lower"]} | {w["equal"]} |'
          )
  for optimizer, samples in paired.items():
    models = sorted({m for _, _, by_model in samples for m in by_model})
    hparams = [h for h in HPARAMS if any(h in hp for _, hp, _ in samples)]
    lines += [
      '',
      f'Error per sample, {optimizer} (diverged: 100):',
      '',
      '| trial | ' + ' | '.join([*hparams, *models]) + ' |',
      '|---:|' + '---:|' * (len(hparams) + len(models)),
    ]
    for index, hp, by_model in samples:
      cells = [f'{hp[h]:.3g}' if h in hp else '' for h in hparams]
      cells += [_fmt(by_model[m]['error']) if m in by_model else '' for m in models]
      lines.append(f'| {index} | ' + ' | '.join(cells) + ' |')
  return lines


def markdown(
  trials: Sequence[dict],
  sources: Mapping[str, int],
  error_field: str,
  figures: Sequence[str],
  command: str,
) -> str:
  lines = [
    '# Sweep report',
    '',
    f'Made by `{command}`, from:',
    '',
    *(f'* `{path}`: {n} trials' for path, n in sources.items()),
    '',
    f'Error: `{error_field}`, top-1 error in % (100 - top-1 accuracy); a diverged trial counts '
    'at 100 (P1 Sec. 4).',
  ]
  for epochs, curves in group_trials(trials).items():
    lines += [
      '',
      f'## {epochs_label(epochs)}',
      '',
      '| model | optimizer | trials | diverged | best | median | top-25% |',
      '|---|---|---:|---:|---:|---:|---:|',
    ]
    for (model, optimizer), group in curves.items():
      s = summarize([t['error'] for t in group], sum(t['diverged'] for t in group))
      lines.append(
        f'| {model} | {optimizer} | {s["trials"]} | {s["diverged"]} | {_fmt(s["best"])} '
        f'| {_fmt(s["median"])} | {_fmt(s["top25"])} |'
      )
    lines += [
      '',
      'Top-1 error (%) over all trials of the row, diverged ones at 100. best: the lowest; '
      'median: the middle one (the mean of the two middle ones for an even count); top-25%: the '
      'mean of the ceil(n/4) lowest (P1 does not define its top-25%; this report takes the mean '
      'of the best quartile, not the 25th percentile).',
    ]
    gaps = _gap_rows(curves)
    if gaps:
      lines += [
        '',
        'AdamW-SGD gap: SGD error minus AdamW error, in points (positive: SGD is worse).',
        '',
        '| model | best | median |',
        '|---|---:|---:|',
        *gaps,
      ]
    lines += _paired_lines(epochs, curves)
  lines += ['', '## Figures', '']
  lines += [f'![{name}]({name})' for name in figures]
  return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------------------------------------
# The command.


def write_report(
  workdirs: Sequence[str],
  out_dir: str | None = None,
  *,
  error_field: str = 'final_error',
  command: str = '',
) -> list[str]:
  """Reads every workdir's trials.jsonl, then writes the figures and report.md into `out_dir`
  (default: the first workdir). Returns the paths written. Unreadable input raises
  ReportInputError before anything is written."""
  trials, sources = load_trials(workdirs, error_field)
  out_dir = out_dir or workdirs[0]
  os.makedirs(out_dir, exist_ok=True)
  written = []
  for name, fig in ((EDF_PNG, plot_edfs(trials)), (HPARAMS_PNG, plot_error_vs_hparams(trials))):
    if fig is None:
      continue
    path = os.path.join(out_dir, name)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    written.append(path)
  figures = [os.path.basename(p) for p in written]
  path = os.path.join(out_dir, REPORT_MD)
  with open(path, 'w') as f:
    f.write(markdown(trials, sources, error_field, figures, command))
  return [*written, path]


def main(argv: Sequence[str] | None = None) -> None:
  argv = sys.argv[1:] if argv is None else list(argv)
  parser = argparse.ArgumentParser(
    description='EDFs (P1 Fig. 3), error against lr and wd (P1 Fig. 4) and a table of sweeps.'
  )
  parser.add_argument(
    '--workdir',
    nargs='+',
    required=True,
    metavar='DIR',
    help='Sweep directories (each with a trials.jsonl); outputs go into the first.',
  )
  parser.add_argument('--out_dir', default=None, help='Write here instead of the first workdir.')
  parser.add_argument(
    '--error',
    default='final',
    choices=('final', 'best'),
    help='Error of a trial: at the end of training (P1) or the lowest over its evals.',
  )
  args = parser.parse_args(argv)
  matplotlib.use('Agg')  # files only, no display needed
  command = shlex.join(['python', '-m', 'vit_jax_stems.sweep.report', *argv])
  try:
    paths = write_report(
      args.workdir, args.out_dir, error_field=f'{args.error}_error', command=command
    )
  except ReportInputError as e:
    print(f'ERROR: {e}', file=sys.stderr, flush=True)
    sys.exit(1)
  for path in paths:
    print(f'Wrote {path}')


if __name__ == '__main__':
  main()
