"""Runs a sweep's trials group by group, writes each trial's result and gathers them.

Layout of a sweep's DIR:

  sweep.json                     the arguments and the trial list (trials.py)
  trials/<trial_id>/             a trial trained alone: the trainer's workdir (checkpoints,
                                 metrics.jsonl, config.json), so a killed trial resumes there
  trials/<trial_id>/result.json  the trial's result, written once it has one
  groups/<group>/                a group trained as one vmapped program (grouped.py)
  trials.jsonl                   every result.json, one row each, gathered after every trial

A result (result.json, a row of trials.jsonl) is the trial dict (trials.py) and:

  final_error      top-1 error in percent at the end, of the weights the recipe evaluates (EMA
                   when config.ema.enabled, else raw)
  best_error       the lowest of those over the run's evaluations
  final_error_raw, final_error_ema (None without EMA)
  diverged         the loss or gradients became non-finite; then every error is 100.0, as P1
                   counts a diverged trial in its EDFs
  steps            steps trained (the step that diverged, for a diverged trial)
  wall_s           seconds of the run that finished the trial (not of earlier, killed runs)
  execution        'sequential' or 'grouped'

Each result.json is written whole and renamed into place, and trials.jsonl is rebuilt from all of
them rather than appended to, so jobs on other machines may write into the same DIR. A trial with
a result.json is never run again.
"""

import importlib
import json
import time

import jax
from absl import logging
from etils import epath

from vit_jax_stems.sweep import trials as trials_lib
from vit_jax_stems.train import metrics, trainer

RESULT_JSON = 'result.json'
TRIALS_JSONL = 'trials.jsonl'
EXECUTIONS = ('auto', 'grouped', 'sequential')
RESULT_FIELDS = (
  'final_error',
  'best_error',
  'final_error_raw',
  'final_error_ema',
  'diverged',
  'steps',
  'wall_s',
)
DIVERGED_ERROR = 100.0  # P1 Sec. 4: a diverged trial counts at 100% error


class SweepStopped(Exception):
  """A trial was preempted (SIGTERM, preemption notice): its checkpoint is saved and rerunning
  the same command resumes it."""


def trial_dir(workdir, trial):
  return epath.Path(workdir) / 'trials' / trial['trial_id']


def read_result(workdir, trial):
  """The trial's result, or None if it has none yet."""
  path = trial_dir(workdir, trial) / RESULT_JSON
  return json.loads(path.read_text()) if path.exists() else None


def pending(trials, workdir):
  """The trials that have no result yet."""
  return [t for t in trials if read_result(workdir, t) is None]


def make_result(trial, *, evals, diverged, steps, wall_s, execution, ema_enabled):
  """The result of `trial` from its evaluations, oldest first, each {'params_top1', 'ema_top1'}
  (top-1 as a fraction; the last is the final one). Also for grouped.py."""
  result = {**trial, 'diverged': bool(diverged), 'steps': int(steps), 'wall_s': float(wall_s)}
  if diverged:
    result.update(final_error=DIVERGED_ERROR, best_error=DIVERGED_ERROR)
    result['final_error_raw'] = DIVERGED_ERROR
    result['final_error_ema'] = DIVERGED_ERROR if ema_enabled else None
  else:
    name = 'ema' if ema_enabled else 'params'
    result['final_error'] = _error(evals[-1][f'{name}_top1'])
    result['best_error'] = min(_error(e[f'{name}_top1']) for e in evals)
    result['final_error_raw'] = _error(evals[-1]['params_top1'])
    result['final_error_ema'] = _error(evals[-1]['ema_top1']) if ema_enabled else None
  result['execution'] = execution
  return result


def write_result(workdir, result):
  if jax.process_index() == 0:
    trials_lib.write_json_atomic(trial_dir(workdir, result) / RESULT_JSON, result)


def gather(workdir):
  """Rebuilds DIR/trials.jsonl from every DIR/trials/*/result.json (sorted by model, optimizer,
  epochs, index); returns the rows."""
  workdir = epath.Path(workdir)
  rows = [json.loads(p.read_text()) for p in workdir.glob(f'trials/*/{RESULT_JSON}')]
  rows.sort(key=lambda r: (r['model'], r['optimizer'], r['epochs'] or 0.0, r['index']))
  if jax.process_index() == 0:
    trials_lib.write_text_atomic(
      workdir / TRIALS_JSONL, ''.join(json.dumps(r) + '\n' for r in rows)
    )
  return rows


def run(trials, base_configs, workdir, *, execution='auto'):
  """Trains every trial of `trials` that has no result, group by group; returns all results.

  Args:
    trials: the trials to run (the sweep's list, or the groups a scheduler job was given).
    base_configs: {optimizer name: config} the trials were made from.
    workdir: the sweep's DIR.
    execution: 'sequential' (each trial by the trainer alone), 'grouped' (each group as one
      vmapped program, grouped.train_group) or 'auto' (grouped where grouped.grouped_pays says
      it is faster on this device; groups of one trial run alone).

  Raises:
    SweepStopped: a trial was preempted; rerunning resumes it.
  """
  if execution not in EXECUTIONS:
    raise trials_lib.SweepError(f'--execution={execution}: choose one of {", ".join(EXECUTIONS)}.')
  todo = pending(trials, workdir)
  progress = _Progress(len(trials), len(trials) - len(todo))
  progress.start(execution)
  pays = {}
  for members in trials_lib.by_group(todo).values():
    base = base_configs[members[0]['optimizer']]
    how = _execution_of(
      execution, trials_lib.group_config(base, members[0]), len(members), pays, workdir
    )
    if how == 'grouped':
      t0 = time.monotonic()
      results = _run_group(base, trials, members, workdir)
      gather(workdir)
      for result in results:
        progress.trial_done(result, (time.monotonic() - t0) / len(results))
    else:
      for trial in members:
        t0 = time.monotonic()
        result = _run_alone(trials_lib.trial_config(base, trial), trial, workdir)
        gather(workdir)
        progress.trial_done(result, time.monotonic() - t0)
  rows = gather(workdir)
  progress.finish(workdir)
  return rows


def _run_alone(config, trial, workdir):
  """Trains `trial` with the trainer in its own workdir (resuming there) and writes its result."""
  t0 = time.monotonic()
  directory = trial_dir(workdir, trial)
  try:
    out = trainer.train_and_evaluate(config, str(directory))
  except trainer.NonFiniteLossError as e:
    logging.warning('Trial %s diverged: %s', trial['trial_id'], e)
    diverged, steps, evals = True, e.step or 0, []
  else:
    if out['stopped']:
      raise SweepStopped(f'trial {trial["trial_id"]} {out["stopped"]}')
    rows = metrics.read_jsonl(directory / 'metrics.jsonl')
    evals = [
      {k[len('eval/') :]: v for k, v in r.items() if k.startswith('eval/')}
      for r in rows
      if 'eval/params_top1' in r
    ]
    diverged, steps = False, rows[-1]['step']
  result = make_result(
    trial,
    evals=evals,
    diverged=diverged,
    steps=steps,
    wall_s=time.monotonic() - t0,
    execution='sequential',
    ema_enabled=config.ema.enabled,
  )
  write_result(workdir, result)
  return result


def _run_group(base_config, all_trials, members, workdir):
  """Trains `members` (a group's trials without a result) as one vmapped program and writes
  their results. The group's DIR/groups/<group>/ is theirs when they are the whole group; when
  trials were added to a group whose first trials had finished, the rest trains in a
  subdirectory, so no checkpoint of one trial set is resumed by another."""
  group = members[0]['group']
  whole = [t for t in all_trials if t['group'] == group]
  directory = epath.Path(workdir) / 'groups' / group
  if len(members) < len(whole):
    directory = directory / f'rest-t{members[0]["index"]:03d}'
  ids = [t['trial_id'] for t in members]
  record = directory / 'sweep_trials.json'
  if record.exists() and json.loads(record.read_text()) != ids:
    raise trials_lib.SweepError(
      f'{directory} trained trials {", ".join(json.loads(record.read_text()))}, not '
      f'{", ".join(ids)}: rerun with the --trials it was started with, or remove {directory}.'
    )
  if jax.process_index() == 0 and not record.exists():
    trials_lib.write_json_atomic(record, ids)
  grouped = importlib.import_module('vit_jax_stems.sweep.grouped')
  config = trials_lib.group_config(base_config, members[0])
  try:
    returned = grouped.train_group(config, members, str(directory))
  except grouped.Preempted:
    returned = None
  if returned is None:
    raise SweepStopped(f'group {group} preempted')
  results = []
  for trial, got in zip(members, returned, strict=True):
    missing = [k for k in RESULT_FIELDS if k not in got]
    if missing:
      raise ValueError(f'grouped.train_group gave no {", ".join(missing)} for {trial["trial_id"]}.')
    result = {**trial, **{k: got[k] for k in RESULT_FIELDS}, 'execution': 'grouped'}
    write_result(workdir, result)
    results.append(result)
  return results


def _execution_of(execution, group_config, k, pays, workdir):
  """'grouped' or 'sequential' for a group of `k` trials; `pays` memoises grouped_pays, which
  caches its measurement in DIR/grouped_pays.json."""
  if execution == 'sequential' or (execution == 'auto' and k < 2):
    return 'sequential'
  if execution == 'grouped':
    return 'grouped'
  key = (group_config.model_name, group_config.optimizer.name, group_config.batch_size, k)
  if key not in pays:
    grouped = importlib.import_module('vit_jax_stems.sweep.grouped')
    cache = str(epath.Path(workdir) / 'grouped_pays.json')
    pays[key] = bool(grouped.grouped_pays(group_config, k, cache_path=cache))
    logging.info('Execution of %d-trial groups of %s: grouped pays: %s', k, key[:3], pays[key])
  return 'grouped' if pays[key] else 'sequential'


def _error(top1):
  return 100.0 * (1.0 - float(top1))


class _Progress:
  """One line per finished trial: `trial i/N id (hyperparameters): result, time | sweep ETA`.

  The ETA is the mean time of the trials finished by this run times the trials left."""

  def __init__(self, total, done):
    self.total, self.done, self.ran, self.seconds = total, done, 0, 0.0

  def start(self, execution):
    _say(
      f'sweep: {self.total} trials, {self.done} with a result already (kept), '
      f'{self.total - self.done} to run; execution {execution}'
    )

  def trial_done(self, result, seconds):
    self.done += 1
    self.ran += 1
    self.seconds += seconds
    left = self.total - self.done
    eta = metrics.format_seconds(left * self.seconds / self.ran)
    values = ', '.join(f'{k}={v:.4g}' for k, v in result['overrides'].items())
    if result['diverged']:
      outcome = f'diverged at step {result["steps"]} (error {DIVERGED_ERROR:g}%)'
    else:
      outcome = f'error {result["final_error"]:.2f}% (best {result["best_error"]:.2f}%)'
    _say(
      f'trial {self.done}/{self.total} {result["trial_id"]} ({values}): {outcome} in '
      f'{metrics.format_seconds(seconds)} | sweep ETA {eta}'
    )

  def finish(self, workdir):
    _say(
      f'sweep: {self.done}/{self.total} trials have a result; '
      f'{epath.Path(workdir) / TRIALS_JSONL} holds every trial of the DIR'
    )


def _say(line):
  if jax.process_index() == 0:
    print(line, flush=True)
