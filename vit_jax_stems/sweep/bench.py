r"""Trial-steps per second of K trials in one vmapped step against K single-trial runs.

  python -m vit_jax_stems.sweep.bench [--config configs/vitc.py:demo] [--ks 1,4,8,16] \
      [--steps 5] [--repeats 3] [--json out.json] [--config.batch_size=256 ...]

For each K, at the config's model and batch, it times:
- vmapped: the grouped training step (`grouped.make_program`: the trainer's train step vmapped
  over K stacked states, as `grouped.train_group` runs it);
- sequential: the trainer's own jitted step, `steps` steps of one trial and then of the next
  (what sequential execution runs: one trial after another);
- interleaved (--interleaved, on by default): the same K trial states stepped in turn, K
  independent programs in flight that the runtime may run side by side. No execution mode of the
  sweep runs trials so; it shows how much of a device one trial's chain of steps leaves idle.
Batches are synthetic and device-resident (one uint8 batch made once), so the figures are the
step's speed, not the input pipeline's. Timing: compile and one warm-up step are excluded; then
`repeats` windows of K x `steps` trial-steps, each waited for once at its end (sequential: at
the end of each trial); the median window counts.

--num_classes=N times the same steps without reading the dataset (no prepared dataset and no
TensorFlow needed, as on an accelerator image; benchmarks/gpu_check.sh): only the number of
classes and the image size change a step's cost.

Columns: trial-steps/s = K x steps / seconds; vmapped / sequential; vmapped / one trial alone
(the K = 1 sequential figure: the accelerator goal is K = 8 at 5x or more).
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
from vit_jax_stems.train import config_checks, trainer
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


def synthetic_info(config, num_classes):
  """The DatasetInfo of synthetic batches of `config`'s image size and `num_classes` labels. The
  dataset's length only sets the schedule's length, not a step's cost: long enough here that the
  timed steps stay inside the schedule."""
  return data.DatasetInfo(
    name=f'synthetic ({config.data.name} not read)',
    data_dir='',
    num_classes=num_classes,
    num_train_examples=1000 * config.batch_size,
    num_eval_examples=0,
    image_size=config.data.image_size,
    train_split='train',
    eval_split='test',
  )


def _median_window(run_window, repeats):
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(run_window())
    times.append(time.perf_counter() - start)
  return statistics.median(times), times


def measure(config, k, *, num_steps, repeats=1, interleaved=False, info=None):
  """Trial-steps per second of K trials of `config`: 'grouped' (one vmapped step), 'sequential'
  (each trial's steps, then the next trial's: what sequential execution runs) and, with
  `interleaved`, K trial states stepped in turn (independent programs that the runtime may
  overlap; no execution mode of the sweep runs them so), with every window's seconds. `info`:
  the dataset's (default: read from TFDS) or `synthetic_info`."""
  info = info or data.get_dataset_info(config.data)
  program = grouped.make_program(config, info, [config] * k)
  setup = program.setup
  batch = synthetic_batch(config, info, setup.batch_sharding)

  # K trials in one vmapped step.
  box = {'group': program.initial_state()}
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

  # The trainer's own step on K trial states.
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
    for i in range(k):  # a trial finishes before the next starts
      for _ in range(num_steps):
        states[i], _ = single(states[i], batch)
      jax.block_until_ready(states[i])
    return states

  def interleaved_window():
    for _ in range(num_steps):
      for i in range(k):
        states[i], _ = single(states[i], batch)
    return states

  row = {'k': k, 'steps_per_window': num_steps, 'grouped_compile_s': compile_s}
  row['grouped'], row['grouped_window_s'] = k * num_steps / grouped_s, grouped_times
  sequential_s, row['sequential_window_s'] = _median_window(sequential_window, repeats)
  row['sequential'] = k * num_steps / sequential_s
  if interleaved:
    interleaved_s, row['interleaved_window_s'] = _median_window(interleaved_window, repeats)
    row['interleaved'] = k * num_steps / interleaved_s
  return row


def table(rows):
  """The Markdown table of `measure` rows; 'one trial alone' is the K=1 sequential figure (the
  trainer's step) when K=1 was measured, else the first row's sequential one."""
  alone = next((r['sequential'] for r in rows if r['k'] == 1), rows[0]['sequential'])
  with_interleaved = all('interleaved' in r for r in rows)
  header = (
    '| K | vmapped trial-steps/s | sequential trial-steps/s | vmapped / sequential '
    '| vmapped / one trial alone |'
  )
  rule = '|---|---|---|---|---|'
  if with_interleaved:
    header += ' interleaved trial-steps/s |'
    rule += '---|'
  lines = [header, rule]
  for r in rows:
    line = (
      f'| {r["k"]} | {r["grouped"]:.2f} | {r["sequential"]:.2f} | '
      f'{r["grouped"] / r["sequential"]:.2f}x | {r["grouped"] / alone:.2f}x |'
    )
    if with_interleaved:
      line += f' {r["interleaved"]:.2f} |'
    lines.append(line)
  return '\n'.join(lines)


FLAGS = flags.FLAGS


def _define_flags():
  """The command's flags, defined only when it runs as a command: the sweep CLI imports this
  module (grouped_pays) and has its own --config."""
  config_flags.DEFINE_config_file(
    'config',
    'configs/vitc.py:demo',
    'Config file as main.py takes it; any field can be overridden with --config.a.b=value.',
    lock_config=True,
  )
  flags.DEFINE_string('ks', '1,4,8,16', 'Comma-separated group sizes K.')
  flags.DEFINE_integer('steps', 5, 'Steps per timed window (sequential: rounds of K steps).')
  flags.DEFINE_integer('repeats', 3, 'Timed windows per figure (the median counts).')
  flags.DEFINE_bool(
    'interleaved',
    True,
    'Also time K trial states stepped in turn by the trainer step (independent programs).',
  )
  flags.DEFINE_integer(
    'num_classes',
    None,
    'Classes of the synthetic labels; given, the dataset is not read (no prepared dataset, no '
    "TensorFlow). Default: the dataset's.",
  )
  flags.DEFINE_string('json', None, 'Also write every figure to this JSON file.')


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
  if FLAGS.num_classes is not None and FLAGS.num_classes < 1:
    raise app.UsageError(f'--num_classes={FLAGS.num_classes}: must be at least 1.')
  given = None if FLAGS.num_classes is None else synthetic_info(config, FLAGS.num_classes)
  try:
    info = trainer.check_config(config, given)  # before any compile: a short message
  except config_checks.ConfigError as e:
    print(f'ERROR: {e}', file=sys.stderr, flush=True)
    sys.exit(1)
  except ModuleNotFoundError as e:  # an image without TensorFlow: no dataset to read
    print(
      f'ERROR: reading config.data.name={config.data.name!r} needs {e.name}; pass '
      '--num_classes=N to time synthetic batches.',
      file=sys.stderr,
    )
    sys.exit(1)
  except data.DatasetNotReadyError as e:  # (looked up, so TensorFlow imported, only if raised)
    print(f'ERROR: {e}\nOr pass --num_classes=N to time synthetic batches.', file=sys.stderr)
    sys.exit(1)
  device = f'{jax.device_count()} x {jax.devices()[0].device_kind}'
  print(
    f'{config.model_name} {dict(config.model)} at {config.data.image_size}px, batch '
    f'{config.batch_size}, {config.dtype}, on {device}; {FLAGS.steps} steps x {FLAGS.repeats} '
    'windows per figure',
    flush=True,
  )
  rows = []
  for k in ks:
    rows.append(
      measure(
        config,
        k,
        num_steps=FLAGS.steps,
        repeats=FLAGS.repeats,
        interleaved=FLAGS.interleaved,
        info=info,
      )
    )
    r = rows[-1]
    print(
      f'K={k}: vmapped {r["grouped"]:.2f}, sequential {r["sequential"]:.2f}, interleaved '
      f'{r.get("interleaved", float("nan")):.2f} trial-steps/s '
      f'(vmapped compile {r["grouped_compile_s"]:.1f} s)',
      flush=True,
    )
  print(table(rows), flush=True)
  if FLAGS.json:
    record = {
      'command': ' '.join(['python -m vit_jax_stems.sweep.bench', *sys.argv[1:]]),
      'device': device,
      'config': json.loads(config.to_json_best_effort()),
      'rows': rows,
    }
    with open(FLAGS.json, 'w') as f:
      json.dump(record, f, indent=2)


if __name__ == '__main__':
  _define_flags()
  app.run(main)
