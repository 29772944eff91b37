"""Entry point: `python main.py --config configs/vitc.py[:options] --workdir DIR [--mode MODE]`.

Modes are a dispatch table (`MODES`): 'train' trains (resuming from DIR) and evaluates, 'eval'
evaluates DIR's latest checkpoint or `config.init_weights` on a split. Other modes (e.g. the
locality analysis) register themselves here with one entry.

Multi-host (vit_jax_stems/train/distributed.py): pass --distributed (or set
JAX_COORDINATOR_ADDRESS) to call jax.distributed.initialize; on Cloud TPU it needs no other
flag, on GPU clusters JAX_NUM_PROCESSES / JAX_PROCESS_ID (launch/README.md) or
--coordinator_address, --num_processes and --process_id. A dead process stops the others within
about --distributed_heartbeat_timeout_s.
"""

import os
import re
import sys

# Set before TensorFlow (the input pipeline) is imported: its start-up notices are nothing a user
# can act on. TF_CPP_MIN_LOG_LEVEL=1 drops the C++ INFO lines (CPU feature guard, buffer sizes);
# warnings and errors still show. The oneDNN notice (and absl's pre-init warning that precedes
# it) only appears with oneDNN ops on: the pipeline decodes, crops, resizes and flips, and of the
# ops oneDNN replaces uses only copies (concat, transpose), so its output is the same either way.
# A value set in the environment wins.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')

from absl import app, flags
from ml_collections import config_flags

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
flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'locality'], 'What to do (see MODES).')
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


MODES = {'train': _train, 'eval': _eval, 'locality': _locality}


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


def _absolute_workdir(workdir):
  """orbax needs absolute checkpoint paths; `gs://...` and other URLs pass through."""
  return workdir if '://' in workdir else os.path.abspath(workdir)


class _QuietLibraries:
  """Drops the libraries' INFO lines from the log (orbax: several per checkpoint; TFDS: which
  files it reads; JAX: which backends it tried) and TensorFlow's deprecation warnings (about its
  own and TFDS's calls, nothing to change here). Their other warnings and errors still pass."""

  def __init__(self):
    self._quiet = tuple(_package_dirs('orbax', 'tensorflow', 'tensorflow_datasets', 'jax'))
    self._deprecation = os.path.join('tensorflow', 'python', 'util', 'deprecation.py')

  def filter(self, record):
    if record.pathname.endswith(self._deprecation):
      return False
    return record.levelno > 20 or not record.pathname.startswith(self._quiet)


def _package_dirs(*names):
  """Where the installed packages `names` live (found without importing them)."""
  import importlib.util  # pylint: disable=g-import-not-at-top

  for name in names:
    spec = importlib.util.find_spec(name)
    for directory in (spec.submodule_search_locations or []) if spec else []:
      yield os.path.join(directory, '')


def _user_errors():
  """Errors whose message says what to change: printed without a traceback."""
  from vit_jax_stems import data  # pylint: disable=g-import-not-at-top
  from vit_jax_stems.train import (  # pylint: disable=g-import-not-at-top
    checkpointing,
    config_checks,
    trainer,
  )

  return (
    trainer.NonFiniteLossError,
    checkpointing.CheckpointError,
    config_checks.ConfigError,
    data.DatasetNotReadyError,
  )


def main(argv):
  import logging as std_logging  # pylint: disable=g-import-not-at-top

  for handler in std_logging.getLogger().handlers:
    handler.addFilter(_QuietLibraries())
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  _maybe_initialize_distributed()
  from vit_jax_stems.train import durations  # pylint: disable=g-import-not-at-top

  config = durations.prefer_command_line(FLAGS.config, sys.argv)
  try:
    MODES[FLAGS.mode](config, _absolute_workdir(FLAGS.workdir))
  except _user_errors() as e:
    print(f'ERROR: {e}', file=sys.stderr, flush=True)
    sys.exit(1)


def _parse_flags(argv):
  """absl's flag parsing, with one line for what a user mistypes in --config.

  ml_collections answers an override of a field the config lacks with a bare AttributeError from
  deep inside flag parsing, and a config option it refuses with the config file's traceback.
  """
  try:
    return FLAGS(argv)
  except flags.Error as e:
    message = _without_config_traceback(str(e))
  except (AttributeError, KeyError) as e:  # an override path that the config does not have
    message = _unknown_config_field(argv) or repr(e)
  sys.stderr.write(f'FATAL Flags parsing error: {message}\n')
  sys.stderr.write('Pass --helpshort or --helpfull to see help on flags.\n')
  sys.exit(1)


def _without_config_traceback(message):
  """'flag --config=X: Error whilst parsing config file: <traceback> ValueError: why' ->
  'flag --config=X: why' for the ValueErrors that configs raise about their options."""
  head, marker, trace = message.partition(': Error whilst parsing config file:')
  last = trace.strip().splitlines()[-1] if trace.strip() else ''
  if marker and last.startswith('ValueError: '):
    return f'{head}: {last[len("ValueError: ") :]}'
  return message


def _unknown_config_field(argv):
  """'--config.optimzer.lr=1: config has no field 'optimzer'. Did you mean optimizer? ...' for
  the first --config.a.b override in `argv` that the config does not have; None if none."""
  import ml_collections  # pylint: disable=g-import-not-at-top

  from vit_jax_stems import overrides  # pylint: disable=g-import-not-at-top

  config_argument = _config_argument(argv)
  if config_argument is None:
    return None
  config = FLAGS['config'].parser.parse(config_argument)
  for arg in argv[1:]:
    match = re.match(r'-{1,2}(?:no)?config\.([^=]+)', arg)
    if not match:
      continue
    node, path = config, 'config'
    for name in match[1].split('.'):
      if not isinstance(node, ml_collections.ConfigDict):
        return f'{arg}: {path} is a single value, not a group of fields.'
      if name not in node:
        return (
          f'{arg}: {path} has no field {name!r}.{overrides.did_you_mean(name, node.keys())} '
          f'Fields of {path}: {", ".join(sorted(node.keys()))}.'
        )
      node, path = node[name], f'{path}.{name}'
  return None


def _config_argument(argv):
  """The value of --config (`configs/vitc.py:demo`) in `argv`."""
  for i, arg in enumerate(argv):
    if arg in ('--config', '-config') and i + 1 < len(argv):
      return argv[i + 1]
    if arg.startswith(('--config=', '-config=')):
      return arg.split('=', 1)[1]
  return None


if __name__ == '__main__':
  app.run(main, flags_parser=_parse_flags)
