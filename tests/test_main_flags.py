"""`main.py` answers a mistyped --config field, value or option with one short message naming it,
a non-zero exit and nothing written (each case a real `python main.py` subprocess)."""

import pytest

from tests.main_cli import run_main


@pytest.mark.parametrize(
  'args,expected',
  [
    (
      ['--config.not_a_key=1'],
      "--config.not_a_key=1: config has no field 'not_a_key'. Fields of config: async_checkpoints,",
    ),
    (['--config.optimzer.lr=1'], "config has no field 'optimzer'. Did you mean optimizer?"),
    (['--config.ema.enabld=true'], "config.ema has no field 'enabld'. Did you mean enabled?"),
    (['--config.batch_size=abc'], 'flag --config.batch_size=abc: invalid literal for int()'),
    (['--config=configs/vitc.py:tuned=maybe'], 'config option tuned=maybe: use true or false'),
  ],
)
def test_a_mistyped_config_setting_is_one_short_message(args, expected, tmp_path):
  workdir = tmp_path / 'run'
  config = [] if args[0].startswith('--config=') else ['--config=configs/vitc.py:demo']
  proc = run_main(*config, *args, f'--workdir={workdir}')
  assert proc.returncode != 0
  assert 'Traceback' not in proc.stderr, proc.stderr
  errors = [line for line in proc.stderr.splitlines() if 'FATAL Flags parsing error' in line]
  assert len(errors) == 1 and expected in errors[0], proc.stderr
  assert not workdir.exists()


@pytest.mark.parametrize(
  'args,expected',
  [
    (['--config.total_steps=0'], 'config.total_steps: must be > 0'),
    (['--config.optimizer.name=adam'], "config.optimizer.name: 'adam' is not one of"),
    (
      ['--config.data.name=no_such_dataset'],
      "No dataset named 'no_such_dataset'. Set config.data.name",
    ),
  ],
)
def test_a_setting_that_cannot_work_is_an_error_line_without_traceback(args, expected, tmp_path):
  """Config checks and dataset lookup fail in the mode itself (after flag parsing): main.py prints
  their message as one ERROR line, no traceback, and writes nothing."""
  workdir = tmp_path / 'run'
  proc = run_main('--config=configs/vitc.py:demo', *args, f'--workdir={workdir}')
  assert proc.returncode == 1, proc.stderr
  assert 'Traceback' not in proc.stderr, proc.stderr
  errors = [line for line in proc.stderr.splitlines() if line.startswith('ERROR: ')]
  assert len(errors) == 1 and expected in errors[0], proc.stderr
  assert not any(workdir.glob('*')) if workdir.exists() else True
