"""Metric output: clu writers (TensorBoard + metrics.jsonl) and progress lines.

metrics.jsonl holds one JSON object per line, always with "step", so a run can be read back
without TensorBoard (tests and plots do). Only process 0 writes files. A resumed run first drops
the rows after its checkpoint (it writes those steps again), and `read_jsonl` keeps the last
value of each metric per step, so a workdir that was resumed still reads as one run. Each train
row says how many steps it averages (`train/steps_averaged`: fewer than log_every_steps in the
first row after a resume). clu's writers and periodic actions import TensorFlow and TensorBoard,
so they are imported where they are made. MFU: `vit_jax_stems.mfu`.
"""

import json
import time

import jax
import numpy as np
from etils import epath


class JsonlWriter:
  """Appends {"step": s, name: value, ...} lines to `path`; the write_scalars / write_hparams /
  flush / close subset of clu's MetricWriter.

  A run resumed at `start_step` keeps the rows up to that step and drops the later ones: a
  crashed run wrote them after its last checkpoint, and the resumed run writes those steps again
  (as it does the final evaluation when a finished run is started again; `read_jsonl` keeps the
  later one). A line cut short by the crash is dropped with them.
  """

  def __init__(self, path, start_step=0):
    self._path = epath.Path(path)
    self._path.parent.mkdir(parents=True, exist_ok=True)
    if self._path.exists():
      kept = [
        line for line in self._path.read_text().splitlines(True) if _step_of(line) <= start_step
      ]
      self._path.write_text(''.join(kept))
    self._file = self._path.open('a')

  def write_scalars(self, step, scalars):
    row = {'step': int(step)}
    row.update({k: _to_json(v) for k, v in scalars.items()})
    self._file.write(json.dumps(row) + '\n')
    self._file.flush()

  def write_hparams(self, hparams):
    pass

  def flush(self):
    self._file.flush()

  def close(self):
    self._file.close()


def _step_of(line):
  """The step of a metrics.jsonl line; infinity for a line that is not a whole JSON row."""
  try:
    return json.loads(line)['step']
  except (ValueError, KeyError, TypeError):
    return float('inf')


def _to_json(v):
  v = np.asarray(v)
  return v.item() if v.ndim == 0 else v.tolist()


class Writers:
  """Fans write_scalars / write_hparams / flush / close out to several writers."""

  def __init__(self, writers):
    self.writers = list(writers)

  def write_scalars(self, step, scalars):
    for w in self.writers:
      w.write_scalars(step, scalars)

  def write_hparams(self, hparams):
    for w in self.writers:
      w.write_hparams(hparams)

  def flush(self):
    for w in self.writers:
      w.flush()

  def close(self):
    for w in self.writers:
      w.close()


def create_writer(workdir, start_step=0):
  """metrics.jsonl (rows after `start_step` dropped, see JsonlWriter) + clu's TensorBoard
  SummaryWriter on process 0; nothing elsewhere."""
  if jax.process_index() != 0:
    return Writers([])
  from clu import metric_writers  # pylint: disable=g-import-not-at-top

  return Writers(
    [
      JsonlWriter(epath.Path(workdir) / 'metrics.jsonl', start_step),
      metric_writers.SummaryWriter(str(epath.Path(workdir) / 'tensorboard')),
    ]
  )


def periodic_hooks(workdir, *, total_steps, every_steps, profile_first_step, profile_steps):
  """clu periodic actions called with the step after every train step: ReportProgress (steps/s,
  ETA in the work-unit notes and logs, `timed` sections) and, when asked, Profile (a
  jax.profiler trace of `profile_steps` steps from `profile_first_step` into workdir)."""
  from clu import periodic_actions  # pylint: disable=g-import-not-at-top

  report = periodic_actions.ReportProgress(
    num_train_steps=total_steps, every_steps=every_steps, every_secs=None
  )
  hooks = [report]
  if profile_first_step is not None and jax.process_index() == 0:
    hooks.append(
      periodic_actions.Profile(
        logdir=str(workdir),
        first_profile=profile_first_step,
        num_profile_steps=profile_steps,
        profile_duration_ms=None,
        every_secs=None,
      )
    )
  return report, hooks


def read_jsonl(path):
  """The rows of a metrics.jsonl file, one per step in step order, each metric at its last value.

  The train and eval rows of one step merge into one; a step written twice (a crashed run's
  steps after its checkpoint, when a reader meets the file before the resumed run drops them,
  or the final evaluation of a run started again) reads as its last write.
  """
  by_step = {}
  with epath.Path(path).open() as f:
    for line in f:
      if line.strip():
        row = json.loads(line)
        by_step.setdefault(row['step'], {}).update(row)
  return [by_step[step] for step in sorted(by_step)]


class ProgressPrinter:
  """Prints `step s/N (p%) | name value ... | img/s | ETA` lines on process 0.

  The ETA extrapolates the step rate measured since the end of the first step of this run
  (`step_finished`), so compilation is excluded and the first printed line has one already.
  """

  def __init__(self, total_steps, start_step):
    self.total_steps = total_steps
    self._t0 = None
    self._s0 = start_step

  def step_finished(self, step):
    """Called after every train step; the first call (its step compiled) starts the clock."""
    if self._t0 is None:
      self._t0, self._s0 = time.monotonic(), step

  def __call__(self, step, values):
    eta = 'n/a'
    if self._t0 is not None and step > self._s0:
      rate = (step - self._s0) / max(time.monotonic() - self._t0, 1e-9)
      eta = format_seconds((self.total_steps - step) / rate)
    parts = [f'step {step}/{self.total_steps} ({100 * step / self.total_steps:.0f}%)']
    parts += [f'{k} {_fmt(v)}' for k, v in values.items()]
    parts.append(f'ETA {eta}')
    if jax.process_index() == 0:
      print(' | '.join(parts), flush=True)


def _fmt(v):
  if isinstance(v, str):
    return v
  v = float(v)
  if v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e5):
    return f'{v:.3e}'
  return f'{v:.4f}' if abs(v) < 10 else f'{v:.1f}'


def format_seconds(s):
  """'1h02m03s' (progress lines' ETAs)."""
  s = int(s)
  return f'{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s'
