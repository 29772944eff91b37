"""Metric output: clu writers (TensorBoard + metrics.jsonl), progress lines, throughput and MFU.

metrics.jsonl holds one JSON object per line, always with "step", so a run can be read back
without TensorBoard (tests and plots do). Only process 0 writes files.

clu's writers and periodic actions import TensorFlow and TensorBoard; they are imported lazily
so that training works on an image without TensorFlow (metrics.jsonl and the progress lines
then carry everything, and the profiler hook falls back to jax.profiler).
"""

import contextlib
import json
import time

import jax
import numpy as np
from absl import logging
from etils import epath

# Dense peak FLOP/s per JAX device for bf16 matmuls, by `device.device_kind` substring. MFU
# divides by these; a CPU has no entry and its MFU is reported as n/a.
# Sources: NVIDIA H100 SXM datasheet (989.4 TFLOP/s bf16 dense; SPEC.md says ~790 measured on a
# large matmul here), NVIDIA H200 datasheet (same Hopper SXM core, 989), NVIDIA A100 datasheet
# (312); Google Cloud TPU "system architecture" pages: v3 123 TFLOP/s per chip = 2 JAX devices
# (one per core), v4 275 per chip (1 device, megacore), v5e 197, v5p 459, v6e (Trillium) 918.
PEAK_BF16_FLOPS = (
  ('H100', 989.4e12, 'NVIDIA H100 SXM datasheet, bf16 dense'),
  ('H200', 989.4e12, 'NVIDIA H200 datasheet, bf16 dense'),
  ('A100', 312e12, 'NVIDIA A100 datasheet, bf16 dense'),
  ('TPU v3', 61.5e12, 'Cloud TPU docs: 123 TFLOP/s per v3 chip, 2 cores'),
  ('TPU v4', 275e12, 'Cloud TPU docs: v4 chip'),
  ('TPU v5 lite', 197e12, 'Cloud TPU docs: v5e chip'),
  ('TPU v5e', 197e12, 'Cloud TPU docs: v5e chip'),
  ('TPU v5', 459e12, 'Cloud TPU docs: v5p chip'),
  ('TPU v6 lite', 918e12, 'Cloud TPU docs: v6e chip'),
)


def peak_flops_per_device(device_kind):
  """(peak bf16 FLOP/s, source) for a device kind, or (None, reason) when unknown (CPU)."""
  for key, peak, source in PEAK_BF16_FLOPS:
    if key.lower() in device_kind.lower():
      return peak, source
  return None, f'no peak known for device kind {device_kind!r}: MFU n/a'


def train_flops_per_image(macs_per_image):
  """6 x MACs: the forward pass is 2 FLOPs per MAC, the backward about twice the forward."""
  return 6.0 * macs_per_image


class JsonlWriter:
  """Appends {"step": s, name: value, ...} lines to `path` (resumed runs keep appending);
  the write_scalars / write_hparams / flush / close subset of clu's MetricWriter."""

  def __init__(self, path):
    self._path = epath.Path(path)
    self._path.parent.mkdir(parents=True, exist_ok=True)
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


def create_writer(workdir):
  """metrics.jsonl + clu's TensorBoard SummaryWriter on process 0; nothing elsewhere."""
  if jax.process_index() != 0:
    return Writers([])
  writers = [JsonlWriter(epath.Path(workdir) / 'metrics.jsonl')]
  try:
    from clu import metric_writers  # pylint: disable=g-import-not-at-top

    writers.append(metric_writers.SummaryWriter(str(epath.Path(workdir) / 'tensorboard')))
  except ImportError as e:
    logging.warning('No TensorBoard summaries (%s); metrics.jsonl only.', e)
  return Writers(writers)


def periodic_hooks(workdir, *, total_steps, every_steps, profile_first_step, profile_steps):
  """clu periodic actions called with the step after every train step: ReportProgress (steps/s,
  ETA in the work-unit notes and logs, `timed` sections) and, when asked, Profile (a
  jax.profiler trace of `profile_steps` steps from `profile_first_step` into workdir)."""
  try:
    from clu import periodic_actions  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    logging.warning('clu periodic actions unavailable (%s).', e)
    return _NullReport(), []
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


class _NullReport:
  def __call__(self, step):
    pass

  @contextlib.contextmanager
  def timed(self, name):
    del name
    yield


def read_jsonl(path):
  """All rows of a metrics.jsonl file (for tests and plots)."""
  with epath.Path(path).open() as f:
    return [json.loads(line) for line in f if line.strip()]


class ProgressPrinter:
  """Prints `step s/N (p%) | name value ... | img/s | ETA` lines on process 0.

  The ETA extrapolates the step rate measured since the first printed line (so compilation
  is excluded).
  """

  def __init__(self, total_steps, start_step):
    self.total_steps = total_steps
    self._t0 = None
    self._s0 = start_step

  def __call__(self, step, values):
    now = time.monotonic()
    if self._t0 is None:
      self._t0, self._s0 = now, step
      eta = 'n/a'
    else:
      rate = (step - self._s0) / max(now - self._t0, 1e-9)
      eta = _fmt_secs((self.total_steps - step) / rate) if rate > 0 else 'n/a'
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


def _fmt_secs(s):
  s = int(s)
  return f'{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s'
