"""What every command that takes main.py's `--config FILE[:OPTIONS] --config.a.b=value` shares:
absl flag parsing with one line for a mistyped setting, the quiet library log, and the errors
that are printed as one `ERROR:` line without a traceback.

`main.py`, `python -m vit_jax_stems.sweep` and `python -m vit_jax_stems.sweep.sample_efficiency`
use it, so a mistake reads the same in each.
"""

import os
import re
import sys

from absl import flags


def quiet_tensorflow_startup():
  """Called by each command before TensorFlow (the input pipeline) is imported: its start-up
  notices are nothing a user can act on. TF_CPP_MIN_LOG_LEVEL=1 drops the C++ INFO lines (CPU
  feature guard, buffer sizes); warnings and errors still show. The oneDNN notice (and absl's
  pre-init warning that precedes it) only appears with oneDNN ops on: the pipeline decodes,
  crops, resizes and flips, and of the ops oneDNN replaces uses only copies (concat, transpose),
  so its output is the same either way. A value set in the environment wins."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')
  os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')


def parse_flags(argv):
  """absl's flag parsing, with one line for what a user mistypes in --config.

  ml_collections answers an override of a field the config lacks with a bare AttributeError from
  deep inside flag parsing, and a config option it refuses with the config file's traceback.
  """
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    message = without_config_traceback(str(e))
  except (AttributeError, KeyError) as e:  # an override path that the config does not have
    message = _unknown_config_field(argv) or repr(e)
  sys.stderr.write(f'FATAL Flags parsing error: {message}\n')
  sys.stderr.write('Pass --helpshort or --helpfull to see help on flags.\n')
  sys.exit(1)


def without_config_traceback(message):
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
  config = flags.FLAGS['config'].parser.parse(config_argument)
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


def absolute_workdir(workdir):
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


def quiet_libraries():
  """Installs the `_QuietLibraries` filter on every handler of the root logger (absl's)."""
  import logging  # pylint: disable=g-import-not-at-top

  for handler in logging.getLogger().handlers:
    handler.addFilter(_QuietLibraries())


def _package_dirs(*names):
  """Where the installed packages `names` live (found without importing them)."""
  import importlib.util  # pylint: disable=g-import-not-at-top

  for name in names:
    spec = importlib.util.find_spec(name)
    for directory in (spec.submodule_search_locations or []) if spec else []:
      yield os.path.join(directory, '')


def user_errors():
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


def exit_on_user_error(fn, *args, **kwargs):
  """`fn(*args, **kwargs)`; a `user_errors()` error becomes one `ERROR: message` line on stderr
  and exit status 1."""
  try:
    return fn(*args, **kwargs)
  except user_errors() as e:
    print(f'ERROR: {e}', file=sys.stderr, flush=True)
    sys.exit(1)
