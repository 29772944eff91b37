"""Entry point: `python main.py --config configs/vitc.py[:options] --workdir DIR [--mode MODE]`.

Modes are a dispatch table (`MODES`): 'train' trains (resuming from DIR) and evaluates, 'eval'
evaluates DIR's latest checkpoint or `config.init_weights` on a split, 'sweep' is
`python -m vit_jax_stems.sweep` with the same flags (random search over hyperparameters:
vit_jax_stems/sweep/cli.py). Other modes (e.g. the locality analysis) register themselves here
with one entry.

Multi-host (vit_jax_stems/train/distributed.py): pass --distributed (or set
JAX_COORDINATOR_ADDRESS) to call jax.distributed.initialize; on Cloud TPU it needs no other
flag, on GPU clusters JAX_NUM_PROCESSES / JAX_PROCESS_ID (launch/README.md) or
--coordinator_address, --num_processes and --process_id. A dead process stops the others within
about --distributed_heartbeat_timeout_s.
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from vit_jax_stems import command_line
from vit_jax_stems.sweep import cli as sweep_cli  # defines the flags of --mode sweep

config_flags.DEFINE_config_file(
  'config',
  None,
  'Config file, e.g. configs/vitc.py or configs/vitc.py:size=4gf or '
  'configs/vitc.py:demo; any field can be overridden with --config.a.b=value.',
  lock_config=True,
)
flags.DEFINE_string(
  'workdir',
  None,
  'Run directory (local path or gs://...): checkpoints, metrics.jsonl, TensorBoard.',
)
flags.DEFINE_enum(
  'mode', 'train', ['train', 'eval', 'locality', 'sweep'], 'What to do (see MODES).'
)
flags.DEFINE_string(
  'eval_split', None, '--mode eval: split to evaluate (default: config.data.eval_split).'
)
flags.DEFINE_bool('distributed', False, 'Call jax.distributed.initialize (multi-host runs).')
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 (multi-host GPU).')
flags.DEFINE_integer('num_processes', None, 'Number of processes (multi-host GPU).')
flags.DEFINE_integer('process_id', None, 'This process (multi-host GPU).')
flags.DEFINE_integer(
  'distributed_heartbeat_timeout_s',
  100,
  'Multi-host: a process silent for '
  'this long is declared dead and every other process stops with an error.',
)
flags.DEFINE_integer(
  'distributed_init_timeout_s', 300, 'Multi-host: how long to wait for all processes to connect.'
)
flags.DEFINE_integer(
  'distributed_shutdown_timeout_s',
  300,
  'Multi-host: how long a finishing process waits for the others at exit.',
)
flags.mark_flags_as_required(['config', 'workdir'])
FLAGS = flags.FLAGS


def _train(config, workdir):
  from vit_jax_stems.train import trainer  # pylint: disable=g-import-not-at-top

  trainer.train_and_evaluate(config, workdir)


def _eval(config, workdir):
  from vit_jax_stems.train import evaluate  # pylint: disable=g-import-not-at-top

  evaluate.run(config, workdir, split=FLAGS.eval_split)


def _locality(config, workdir):
  from vit_jax_stems.analysis import locality_report  # pylint: disable=g-import-not-at-top

  # Converted weights when config.init_weights is set and the workdir has no checkpoint.
  result = locality_report.run_locality(
    config, workdir, weights_dir=_weights_without_checkpoint(config, workdir)
  )
  print(f'locality: wrote {result["json"]} and {len(result["figures"])} figures', flush=True)


def _weights_without_checkpoint(config, workdir):
  from etils import epath  # pylint: disable=g-import-not-at-top

  if config.get('init_weights') and not epath.Path(workdir, 'checkpoints').exists():
    return config.init_weights
  return None


def _sweep(config, workdir):
  sweep_cli.run(config, workdir)


MODES = {'train': _train, 'eval': _eval, 'locality': _locality, 'sweep': _sweep}


def _maybe_initialize_distributed():
  from vit_jax_stems.train import distributed  # pylint: disable=g-import-not-at-top

  distributed.maybe_initialize(
    distributed=FLAGS.distributed,
    coordinator_address=FLAGS.coordinator_address,
    num_processes=FLAGS.num_processes,
    process_id=FLAGS.process_id,
    heartbeat_timeout_s=FLAGS.distributed_heartbeat_timeout_s,
    init_timeout_s=FLAGS.distributed_init_timeout_s,
    shutdown_timeout_s=FLAGS.distributed_shutdown_timeout_s,
  )


def main(argv):
  command_line.quiet_libraries()
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if FLAGS.mode != 'sweep':
    sweep_cli.refuse_sweep_flags()
  _maybe_initialize_distributed()
  from vit_jax_stems.train import durations  # pylint: disable=g-import-not-at-top

  config = durations.prefer_command_line(FLAGS.config, sys.argv)
  workdir = command_line.absolute_workdir(FLAGS.workdir)
  command_line.exit_on_user_error(MODES[FLAGS.mode], config, workdir)


if __name__ == '__main__':
  command_line.quiet_tensorflow_startup()
  app.run(main, flags_parser=command_line.parse_flags)
