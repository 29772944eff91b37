r"""Trial-steps per second of K trials in one vmapped step against K single-trial steps.

  python -m vit_jax_stems.sweep.bench [--config configs/vitc.py:demo] [--ks 1,4,8,16] \
      [--steps 5] [--repeats 3] [--json out.json] [--config.batch_size=256 ...]

For each K it times the grouped training step (`grouped.make_program`: the trainer's train step
vmapped over K stacked states, as `grouped.train_group` runs it) and K sequential steps of the
trainer's own jitted step, one per trial state in turn (what sequential execution runs), at the
config's model and batch. Batches are synthetic and device-resident (one uint8 batch made once),
so the figures are the step's speed, not the input pipeline's. Timing: compile and one warm-up
step are excluded; then `repeats` windows of `steps` steps (sequential: `steps` rounds of K
steps), each dispatched back to back and waited for once at its end; the median window counts.

Columns: trial-steps/s = trials x steps / seconds, for vmapped and sequential; vmapped /
sequential; and vmapped against one trial alone (the trainer's step at K = 1), the figure of the
accelerator goal (K = 8 at 5x or more).
"""

import json
import os
import statistics
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')  # as main.py: TensorFlow's start-up notices

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from vit_jax_stems import data
from vit_jax_stems.sweep import grouped
from vit_jax_stems.train import steps as steps_lib


def synthetic_batch(config, info, batch_sharding, seed=0):
  """One host-format batch ({'image': uint8, 'label': int32}) placed on the devices once."""
  rng = np.random.default_rng(seed)
  size = config.data.image_size
  batch = {
    'image': rng.integers(0, 256, (config.batch_size, size, size, 3), dtype=np.uint8),
    'label': rng.integers(0, info.num_classes, (config.batch_size,), dtype=np.int32),
  }
  return jax.device_put(batch, batch_sharding)


def _median_window(run_window, repeats):
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(run_window())
    times.append(time.perf_counter() - start)
  return statistics.median(times), times


def measure(config, k, *, num_steps, repeats=1):
  """{'grouped', 'sequential'} trial-steps per second of K trials of `config`, and the timings."""
  info = data.get_dataset_info(config.data)
  program = grouped.make_program(config, info, [config] * k)
  setup = program.setup
  batch = synthetic_batch(config, info, setup.batch_sharding)

  # K trials in one vmapped step.
  box = {'group': program.init()}
  t0 = time.perf_counter()
  box['group'], _ = program.step(box['group'], batch)
  jax.block_until_ready(box['group'])
  compile_s = time.perf_counter() - t0

  def grouped_window():
    for _ in range(num_steps):
      box['group'], out = program.step(box['group'], batch)
    return box['group'], out

  grouped_s, grouped_times = _median_window(grouped_window, repeats)
  del box['group']

  # The trainer's own step, once per trial in turn.
  replicated = jax.sharding.NamedSharding(setup.mesh, jax.sharding.PartitionSpec())
  single = jax.jit(
    steps_lib.make_train_step(
      setup.model, setup.tx, setup.lr_schedule, setup.plan, config.ema, program.augment
    ),
    in_shardings=(setup.state_shardings, setup.batch_sharding),
    out_shardings=(setup.state_shardings, replicated),
    donate_argnums=(0,),
  )
  init = jax.jit(setup.init_fn, out_shardings=setup.state_shardings)
  states = [init(jax.random.PRNGKey(config.seed + i)) for i in range(k)]
  for i in range(k):  # compile (first) and warm up every state
    states[i], _ = single(states[i], batch)
  jax.block_until_ready(states)

  def sequential_window():
    for _ in range(num_steps):
      for i in range(k):
        states[i], out = single(states[i], batch)
    return states, out

  sequential_s, sequential_times = _median_window(sequential_window, repeats)
  return {
    'k': k,
    'grouped': k * num_steps / grouped_s,
    'sequential': k * num_steps / sequential_s,
    'grouped_window_s': grouped_times,
    'sequential_window_s': sequential_times,
    'grouped_compile_s': compile_s,
    'steps_per_window': num_steps,
  }


def table(rows):
  """The Markdown table of `measure` rows; 'vs one trial alone' divides by the K=1 sequential
  figure (the trainer's step) when K=1 was measured, else by the first row's sequential one."""
  alone = next((r['sequential'] for r in rows if r['k'] == 1), rows[0]['sequential'])
  lines = [
    '| K | vmapped trial-steps/s | sequential trial-steps/s | vmapped / sequential '
    '| vmapped / one trial alone |',
    '|---|---|---|---|---|',
  ]
  for r in rows:
    lines.append(
      f'| {r["k"]} | {r["grouped"]:.2f} | {r["sequential"]:.2f} | '
      f'{r["grouped"] / r["sequential"]:.2f}x | {r["grouped"] / alone:.2f}x |'
    )
  return '\n'.join(lines)


config_flags.DEFINE_config_file(
  'config',
  'configs/vitc.py:demo',
  'Config file as main.py takes it; any field can be overridden with --config.a.b=value.',
  lock_config=True,
)
flags.DEFINE_string('ks', '1,4,8,16', 'Comma-separated group sizes K.')
flags.DEFINE_integer('steps', 5, 'Steps per timed window (sequential: rounds of K steps).')
flags.DEFINE_integer('repeats', 3, 'Timed windows per figure (the median counts).')
flags.DEFINE_string('json', None, 'Also write every figure to this JSON file.')
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  try:
    ks = [int(k) for k in FLAGS.ks.split(',') if k.strip()]
  except ValueError:
    raise app.UsageError(f'--ks={FLAGS.ks}: use comma-separated integers, e.g. 1,4,8,16.') from None
  if not ks or min(ks) < 1:
    raise app.UsageError(f'--ks={FLAGS.ks}: every K must be at least 1.')
  config = FLAGS.config
  device = f'{jax.device_count()} x {jax.devices()[0].device_kind}'
  print(
    f'{config.model_name} {dict(config.model)} at {config.data.image_size}px, batch '
    f'{config.batch_size}, {config.dtype}, on {device}; {FLAGS.steps} steps x {FLAGS.repeats} '
    'windows per figure',
    flush=True,
  )
  rows = []
  for k in ks:
    rows.append(measure(config, k, num_steps=FLAGS.steps, repeats=FLAGS.repeats))
    r = rows[-1]
    print(
      f'K={k}: vmapped {r["grouped"]:.2f}, sequential {r["sequential"]:.2f} trial-steps/s '
      f'(vmapped compile {r["grouped_compile_s"]:.1f} s)',
      flush=True,
    )
  print(table(rows), flush=True)
  if FLAGS.json:
    record = {
      'command': ' '.join(sys.argv),
      'device': device,
      'config': json.loads(config.to_json_best_effort()),
      'rows': rows,
    }
    with open(FLAGS.json, 'w') as f:
      json.dump(record, f, indent=2)


if __name__ == '__main__':
  app.run(main)
