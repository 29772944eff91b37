r"""The training loop's own cost per step, as a share of the step's time.

  python -m vit_jax_stems.bench.host_overhead --config configs/vitc.py:demo \
      [--steps N] [--repeats 2] [--skip 3] [--json out.json] [--config.batch_size=64 ...]

Why: a train step is one jitted program; what the trainer's loop does around it each step
(the next batch made a global array, the dispatch, the non-finite check of the step before,
clu's ReportProgress hook, and every `log_every_steps` the metrics row with its host reads, and
every `checkpoint_every` a checkpoint save) is host work. It costs nothing while the host keeps
ahead of the device, and shows as a longer step where a host sync or slow host work leaves the
device idle: most at small models such as the demos (goal: under 2% of the step there).

Two measurements in one process, alternated (bare, loop, bare, loop, ..., bare) so that
a changing load on shared cores hits both:
  bare  the trainer's own jitted train step (`trainer.jit_train_step`: the same model, optimizer,
        schedule, device augmentation, shardings and donation) run `steps` times back to back on
        one device-resident batch, with one block_until_ready at the end: the step alone.
  loop  `trainer.train_and_evaluate` on the same config, its input pipeline replaced by the same
        batch as host numpy arrays (what the pipeline hands over), evaluation off during training
        (not training time: the trainer's own images/s leaves it out too). Timed between the
        batch requests of step `skip` + 1 and step `skip` + 1 + `steps`: the loop keeps one step
        in flight, so that is the steady state, compilation excluded. Logging and checkpoint
        saves happen inside that window at the config's cadence (the output says how many); the
        default `steps` is one checkpoint interval, so each cadence is sampled in proportion.
Figures, each loop run against the mean of the bare windows on either side of it (median over
runs), with the load average:
  * loop / bare per step in wall-clock seconds (everything, host syncs included) and in CPU
    seconds of the process (all threads, orbax's background saves included; CPU time counts
    work done, so other jobs on shared cores disturb it less, though still by several percent);
  * the loop's Python work: the CPU time of the thread that runs the loop (the step computes on
    XLA's threads; waiting costs that thread no CPU) per step, as a share of the bare step, and
    what it adds to the bare dispatch's own. Under other jobs' load the wall ratio wanders by
    up to 15% between windows (benchmarks/NOTES.md, "Host overhead"); this share does not.
"""

import json
import os
import shutil
import statistics
import sys
import tempfile
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from vit_jax_stems import command_line
from vit_jax_stems.data import device_augment
from vit_jax_stems.train import run_setup, sharding, trainer

FLAGS = flags.FLAGS


def clocks():
  """(wall, CPU seconds of the process, CPU seconds of this thread): the loop's Python runs on
  the calling thread, the step's computation on XLA's threads."""
  return time.perf_counter(), time.process_time(), time.thread_time()


class TimedBatches:
  """Yields the same host batch forever and notes the clocks at each request."""

  def __init__(self, batch):
    self.batch = batch
    self.clocks = []

  def __iter__(self):
    return self

  def __next__(self):
    self.clocks.append(clocks())
    return self.batch


def host_batch(config, num_classes, seed=0):
  """One batch as the input pipeline yields it: uint8 images and int32 labels, on the host."""
  rng = np.random.default_rng(seed)
  size = config.data.image_size
  return {
    'image': rng.integers(0, 256, (config.batch_size, size, size, 3), dtype=np.uint8),
    'label': rng.integers(0, num_classes, (config.batch_size,), dtype=np.int32),
  }


def loop_config(config, total_steps):
  """`config` trained for `total_steps` steps without evaluation; cadences otherwise unchanged."""
  c = config.copy_and_resolve_references()
  with c.unlocked():
    c.total_epochs, c.total_examples, c.total_steps = None, None, total_steps
    c.eval_every_epochs, c.eval_every_steps = None, None
  return c


def cadence_in(first, steps, every):
  """How many of the steps first .. first + steps - 1 are multiples of `every` (0: never)."""
  return 0 if not every else (first + steps - 1) // every - (first - 1) // every


def itemized(thread_ms, plan):
  """{kind: mean ms} over the iterations of each kind: 'plain', 'log row', 'checkpoint save'."""

  def kind(step):
    if plan.saves_at(step):
      return 'checkpoint save'
    return 'log row' if step % plan.log_every == 0 else 'plain'

  by_kind = {}
  for step, ms in thread_ms.items():
    by_kind.setdefault(kind(step), []).append(ms)
  return {k: statistics.mean(v) for k, v in sorted(by_kind.items())}


def measure(config, *, steps=None, repeats=2, skip=3):
  """The figures of the module docstring, as a dict (also written by --json)."""
  info = trainer.check_config(config)
  setup = run_setup.make_run_setup(config, info)
  plan = setup.plan
  if steps is None:
    steps = plan.checkpoint_every or 2 * plan.log_every
  augment = device_augment.DeviceAugment.from_config(config.data, info.num_classes)
  batch = host_batch(config, info.num_classes)

  step_fn = trainer.jit_train_step(config, setup, augment)
  init = jax.jit(setup.init_fn, out_shardings=setup.state_shardings)
  box = {'state': init(jax.random.PRNGKey(config.seed))}
  device_batch = sharding.global_batch(batch, setup.batch_sharding)
  for _ in range(skip):  # compile and warm up
    box['state'], _ = step_fn(box['state'], device_batch)
  jax.block_until_ready(box['state'])

  def per_step(start, end):  # (wall, process CPU, thread CPU) seconds per step
    return tuple((b - a) / steps for a, b in zip(start, end))

  def bare_window():
    start = clocks()
    for _ in range(steps):
      box['state'], _ = step_fn(box['state'], device_batch)
    jax.block_until_ready(box['state'])
    return per_step(start, clocks())

  first = skip + 1  # the window: iterations first .. first + steps - 1
  run_config = loop_config(config, total_steps=first + steps)

  def loop_run():
    timed = TimedBatches(batch)
    workdir = tempfile.mkdtemp(prefix='vit_jax_stems_host_overhead_')
    try:
      trainer.train_and_evaluate(run_config, workdir, train_batches=timed)
    finally:
      shutil.rmtree(workdir, ignore_errors=True)
    if len(timed.clocks) != run_config.total_steps:
      raise RuntimeError(
        f'the loop took {len(timed.clocks)} batches in {run_config.total_steps} steps'
      )
    # Request i (0-based) is made at the start of iteration i + 1, so iteration i runs from
    # request i - 1 to request i.
    c = timed.clocks
    thread_ms = {i: 1e3 * (c[i][2] - c[i - 1][2]) for i in range(first, first + steps)}
    return per_step(c[first - 1], c[first - 1 + steps]), itemized(thread_ms, plan)

  load_before = os.getloadavg()
  bare, loop, items = [bare_window()], [], []
  for _ in range(repeats):
    figures, per_kind = loop_run()
    loop.append(figures)
    items.append(per_kind)
    bare.append(bare_window())

  def beside(r, i):  # the bare windows before and after loop run r
    return (bare[r][i] + bare[r + 1][i]) / 2

  def ratios(i):  # 0: wall, 1: process CPU
    return [loop[r][i] / beside(r, i) for r in range(repeats)]

  # The loop's Python work per step (its thread's CPU time; dispatch included, waits not) as a
  # share of the bare step's wall time, and what it adds to the bare dispatch's own.
  host_share = [loop[r][2] / beside(r, 0) for r in range(repeats)]
  host_extra = [(loop[r][2] - beside(r, 2)) / beside(r, 0) for r in range(repeats)]
  return {
    'model': config.model_name,
    'model_overrides': dict(config.model),
    'batch_size': config.batch_size,
    'image_size': config.data.image_size,
    'dtype': config.dtype,
    'device': f'{jax.device_count()} x {jax.devices()[0].device_kind}',
    'steps_per_window': steps,
    'window_first_step': first,
    'log_rows_in_window': cadence_in(first, steps, plan.log_every),
    'checkpoints_in_window': cadence_in(first, steps, plan.checkpoint_every),
    'loop_batches_requested': run_config.total_steps,  # one per step (checked)
    'bare_step_s': [x[0] for x in bare],
    'bare_cpu_s_per_step': [x[1] for x in bare],
    'bare_thread_cpu_s_per_step': [x[2] for x in bare],
    'loop_step_s': [x[0] for x in loop],
    'loop_cpu_s_per_step': [x[1] for x in loop],
    'loop_thread_cpu_s_per_step': [x[2] for x in loop],
    'loop_over_bare_wall': ratios(0),
    'loop_over_bare_cpu': ratios(1),
    'overhead_wall': statistics.median(ratios(0)) - 1,
    'overhead_cpu': statistics.median(ratios(1)) - 1,
    'loop_host_share': statistics.median(host_share),
    'loop_host_extra_share': statistics.median(host_extra),
    # The loop thread's CPU ms in one iteration, by kind (median over runs): where it goes.
    'loop_thread_ms_by_step_kind': {
      kind: statistics.median(run[kind] for run in items) for kind in items[0]
    },
    'load_average': [load_before, os.getloadavg()],
  }


def report(r):
  ms = lambda xs: ', '.join(f'{1e3 * x:.1f}' for x in xs)
  ms2 = lambda xs: ', '.join(f'{1e3 * x:.2f}' for x in xs)
  return '\n'.join(
    [
      f'{r["model"]} {r["model_overrides"]} at {r["image_size"]}px, batch {r["batch_size"]}, '
      f'{r["dtype"]}, on {r["device"]}; windows of {r["steps_per_window"]} steps from step '
      f'{r["window_first_step"]} ({r["log_rows_in_window"]} log rows, '
      f'{r["checkpoints_in_window"]} checkpoint saves in each loop window)',
      f'bare step ms: {ms(r["bare_step_s"])}; CPU ms/step {ms(r["bare_cpu_s_per_step"])}; '
      f'main thread CPU ms/step {ms2(r["bare_thread_cpu_s_per_step"])}',
      f'loop step ms: {ms(r["loop_step_s"])}; CPU ms/step {ms(r["loop_cpu_s_per_step"])}; '
      f'main thread CPU ms/step {ms2(r["loop_thread_cpu_s_per_step"])}',
      "the loop thread's CPU ms in one step: "
      + ', '.join(f'{k} {v:.2f}' for k, v in r['loop_thread_ms_by_step_kind'].items()),
      'loop / bare (each run against the bare windows beside it): wall '
      + ', '.join(f'{x:.4f}' for x in r['loop_over_bare_wall'])
      + '; CPU '
      + ', '.join(f'{x:.4f}' for x in r['loop_over_bare_cpu']),
      f'loop overhead: {100 * r["overhead_wall"]:+.2f}% of the step (wall), '
      f"{100 * r['overhead_cpu']:+.2f}% (CPU); the loop's Python work "
      f'{100 * r["loop_host_share"]:.2f}% of the step ({100 * r["loop_host_extra_share"]:+.2f}% '
      'over the bare dispatch); load average '
      + ' -> '.join('/'.join(f'{x:.2f}' for x in la) for la in r['load_average']),
    ]
  )


def _define_flags():
  config_flags.DEFINE_config_file(
    'config',
    'configs/vitc.py:demo',
    'Config file as main.py takes it; any field can be overridden with --config.a.b=value.',
    lock_config=True,
  )
  flags.DEFINE_integer(
    'steps', None, 'Steps per timed window; default: one checkpoint interval of the config.'
  )
  flags.DEFINE_integer('repeats', 2, 'Loop runs, each between two bare windows.')
  flags.DEFINE_integer('skip', 3, 'Steps before the window (the first one compiles).')
  flags.DEFINE_string('json', None, 'Also write every figure to this JSON file.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  for name, least in (('repeats', 1), ('skip', 2)):
    if FLAGS[name].value < least:
      raise app.UsageError(f'--{name} must be at least {least}.')
  if FLAGS.steps is not None and FLAGS.steps < 1:
    raise app.UsageError('--steps must be at least 1.')
  result = measure(FLAGS.config, steps=FLAGS.steps, repeats=FLAGS.repeats, skip=FLAGS.skip)
  result['command'] = ' '.join(['python -m vit_jax_stems.bench.host_overhead', *sys.argv[1:]])
  print(report(result), flush=True)
  if FLAGS.json:
    with open(FLAGS.json, 'w') as f:
      json.dump(result, f, indent=1)


if __name__ == '__main__':
  command_line.quiet_tensorflow_startup()  # the evaluation at the end of each loop run uses it
  _define_flags()
  app.run(main)
