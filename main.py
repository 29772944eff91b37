"""Entry point: `python main.py --config configs/vitc.py[:options] --workdir DIR [--mode MODE]`.

Modes are a dispatch table (`MODES`): 'train' trains (resuming from DIR) and evaluates, 'eval'
evaluates DIR's latest checkpoint or `config.init_weights` on a split. Other modes (e.g. the
locality analysis) register themselves here with one entry.

Multi-host: pass --distributed (or set JAX_COORDINATOR_ADDRESS) to call
jax.distributed.initialize; on Cloud TPU it needs no other flag, on GPU clusters give
--coordinator_address, --num_processes and --process_id (or SLURM's environment).
"""
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

config_flags.DEFINE_config_file(
    'config', None, 'Config file, e.g. configs/vitc.py or configs/vitc.py:size=4gf or '
    'configs/vitc.py:demo; any field can be overridden with --config.a.b=value.',
    lock_config=True)
flags.DEFINE_string('workdir', None, 'Run directory (local path or gs://...): checkpoints, '
                    'metrics.jsonl, TensorBoard.')
flags.DEFINE_enum('mode', 'train', ['train', 'eval'], 'What to do (see MODES).')
flags.DEFINE_string('eval_split', None, '--mode eval: split to evaluate (default: '
                    'config.data.eval_split).')
flags.DEFINE_bool('distributed', False, 'Call jax.distributed.initialize (multi-host runs).')
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 (multi-host GPU).')
flags.DEFINE_integer('num_processes', None, 'Number of processes (multi-host GPU).')
flags.DEFINE_integer('process_id', None, 'This process (multi-host GPU).')
flags.mark_flags_as_required(['config', 'workdir'])
FLAGS = flags.FLAGS


def _train(config, workdir):
  from vit_jax_stems.train import trainer  # pylint: disable=g-import-not-at-top
  try:
    trainer.train_and_evaluate(config, workdir)
  except trainer.NonFiniteLossError as e:
    logging.error('%s', e)
    print(f'ERROR: {e}', file=sys.stderr, flush=True)
    sys.exit(1)


def _eval(config, workdir):
  from vit_jax_stems.train import evaluate  # pylint: disable=g-import-not-at-top
  evaluate.run(config, workdir, split=FLAGS.eval_split)


MODES = {'train': _train, 'eval': _eval}


def _maybe_initialize_distributed():
  import jax  # pylint: disable=g-import-not-at-top
  if FLAGS.distributed or os.environ.get('JAX_COORDINATOR_ADDRESS'):
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                               num_processes=FLAGS.num_processes,
                               process_id=FLAGS.process_id)
    logging.info('jax.distributed: process %d of %d', jax.process_index(), jax.process_count())


class _QuietLibraries:
  """Drops INFO lines of orbax (several per checkpoint) from the log; warnings still pass."""

  def filter(self, record):
    return record.levelno > 20 or '/orbax/' not in record.pathname


def main(argv):
  import logging as std_logging  # pylint: disable=g-import-not-at-top
  for handler in std_logging.getLogger().handlers:
    handler.addFilter(_QuietLibraries())
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  _maybe_initialize_distributed()
  from vit_jax_stems.train import durations  # pylint: disable=g-import-not-at-top
  config = durations.prefer_command_line(FLAGS.config, sys.argv)
  MODES[FLAGS.mode](config, FLAGS.workdir)


if __name__ == '__main__':
  app.run(main)
