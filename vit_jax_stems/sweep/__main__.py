"""`python -m vit_jax_stems.sweep --config configs/X.py[:OPTIONS] --trials N --workdir DIR ...`:
a random-search sweep over hyperparameters (flags and behaviour: cli.py). The same command as
`python main.py --mode sweep ...`, without main.py's multi-host flags.
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from vit_jax_stems import command_line
from vit_jax_stems.sweep import cli  # defines the sweep's flags

config_flags.DEFINE_config_file(
  'config',
  None,
  'Config file as for main.py, e.g. configs/vitc.py:demo; any field can be overridden with '
  '--config.a.b=value (every trial gets it).',
  lock_config=True,
)
flags.DEFINE_string('workdir', None, 'Sweep directory (local path or gs://...).')
flags.mark_flags_as_required(['config', 'workdir'])
flags.adopt_module_key_flags(cli)  # --helpshort lists the sweep's flags too
FLAGS = flags.FLAGS


def main(argv):
  command_line.quiet_libraries()
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  from vit_jax_stems.train import durations  # pylint: disable=g-import-not-at-top

  config = durations.prefer_command_line(FLAGS.config, sys.argv)
  workdir = command_line.absolute_workdir(FLAGS.workdir)
  command_line.exit_on_user_error(cli.run, config, workdir)


if __name__ == '__main__':
  command_line.quiet_tensorflow_startup()
  app.run(main, flags_parser=command_line.parse_flags)
