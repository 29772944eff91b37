"""The sweep command as a user runs it (real subprocesses): `main.py --mode sweep` and
`python -m vit_jax_stems.sweep` train, record and keep trials, and a bad argument is one short
message before anything is trained or written; and, in-process, what `--submit` and `--groups`
hand on."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from tests.main_cli import run_main
from vit_jax_stems.sweep import cli, trials
from vit_jax_stems.train import trainer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = 'tests/sweep/tiny_sweep_config.py'


def _run(*args, module=False):
  command = ['-m', 'vit_jax_stems.sweep'] if module else ['main.py', '--mode=sweep']
  return subprocess.run(
    [sys.executable, *command, *args], cwd=ROOT, capture_output=True, text=True, timeout=600
  )


def test_a_sweep_over_two_optimizers_trains_records_and_keeps_its_trials(tmp_path):
  workdir = tmp_path / 'sweep'
  args = [f'--config={TINY}', '--trials=1', '--optimizers=adamw,sgd', '--execution=sequential']
  proc = _run(*args, f'--workdir={workdir}')
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = [json.loads(line) for line in (workdir / 'trials.jsonl').read_text().splitlines()]
  assert [r['trial_id'] for r in rows] == ['vit_c_1gf-adamw-s3-t000', 'vit_c_1gf-sgd-s3-t000']
  adamw, sgd = (r['overrides']['optimizer.lr'] for r in rows)
  assert 2e-3 / 8 <= adamw <= 2e-3 * 4 and 0.12 / 8 <= sgd <= 0.12 * 4  # each its base point
  assert adamw / 2e-3 == pytest.approx(sgd / 0.12)  # trial 0 of each: the same relative point
  configs = [
    json.loads((workdir / 'trials' / r['trial_id'] / 'config.json').read_text()) for r in rows
  ]
  assert [c['optimizer']['name'] for c in configs] == ['adamw', 'sgd']
  assert [c['optimizer']['lr'] for c in configs] == [adamw, sgd]
  assert 'trial 2/2 vit_c_1gf-sgd-s3-t000 (optimizer.lr=' in proc.stdout
  recorded = json.loads((workdir / 'sweep.json').read_text())
  assert recorded['arguments']['config'] == TINY and len(recorded['trials']) == 2
  mtimes = [(workdir / 'trials' / r['trial_id'] / 'result.json').stat().st_mtime_ns for r in rows]

  proc = _run(*args, f'--workdir={workdir}', module=True)  # the module form: the same sweep
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'sweep: 2 trials, 2 with a result already (kept), 0 to run' in proc.stdout
  assert 'step 1/3' not in proc.stdout
  again = [(workdir / 'trials' / r['trial_id'] / 'result.json').stat().st_mtime_ns for r in rows]
  assert again == mtimes


@pytest.mark.parametrize(
  'mode,args,expected',
  [
    (
      'sweep',
      [f'--config={TINY}', '--space=optimizer.lrr=loguniform(1e-4,1e-2)'],
      "ERROR: --space: config.optimizer has no field 'lrr'. Did you mean lr?",
    ),
    (
      'sweep',
      ['--config=configs/convit.py:size=s', '--optimizers=adamw,sgd'],
      'ERROR: --optimizers sgd: --config=configs/convit.py:size=s,optimizer=sgd: optimizer=sgd: '
      'the DeiT recipe is AdamW only',
    ),
    ('sweep', [f'--config={TINY}', '--sweep_seed=1'], 'holds another sweep'),
    ('train', [f'--config={TINY}'], 'FATAL Flags parsing error: --trials: sweep flags'),
  ],
)
def test_a_bad_argument_is_one_line_before_anything_is_trained_or_written(
  tmp_path, mode, args, expected
):
  workdir = tmp_path / 'sweep'
  if 'another sweep' in expected:  # a DIR that a sweep with another seed started
    workdir.mkdir()
    (workdir / 'sweep.json').write_text(json.dumps({'arguments': {'sweep_seed': 0}, 'trials': []}))
  before = sorted(p.name for p in workdir.rglob('*')) if workdir.exists() else None
  proc = run_main(f'--mode={mode}', '--trials=2', *args, f'--workdir={workdir}', timeout=600)
  assert proc.returncode == 1
  assert 'Traceback' not in proc.stderr, proc.stderr
  errors = [line for line in proc.stderr.splitlines() if 'ERROR' in line or 'FATAL' in line]
  assert len(errors) == 1 and expected in errors[0], proc.stderr
  after = sorted(p.name for p in workdir.rglob('*')) if workdir.exists() else None
  assert after == before


# ---------------------------------------------------------------- the command's glue, in-process


def _source():
  import tiny_sweep_config

  return cli.ConfigSource(TINY, {}, lambda arg: tiny_sweep_config.get_config(arg.partition(':')[2]))


def _fake_trainer(monkeypatch):
  """A trainer that only writes a final evaluation, recording the trials it is called for."""
  calls = []

  def train(config, workdir):
    calls.append(os.path.basename(workdir))
    os.makedirs(workdir, exist_ok=True)
    row = {'step': 3, 'eval/params_top1': 0.5, 'eval/ema_top1': 0.5}
    with open(os.path.join(workdir, 'metrics.jsonl'), 'w') as f:
      f.write(json.dumps(row) + '\n')
    return {'train': {}, 'eval': row, 'stopped': None}

  monkeypatch.setattr(trainer, 'train_and_evaluate', train)
  return calls


def test_submit_gets_the_groups_with_trials_left_and_the_arguments_of_their_jobs(
  tmp_path, monkeypatch
):
  submitted = []
  from vit_jax_stems.sweep import submit  # pylint: disable=g-import-not-at-top

  monkeypatch.setattr(
    submit,
    'submit',
    lambda kind, argv, groups, workdir, *, dry_run: submitted.append(
      (kind, argv, groups, workdir, dry_run)
    ),
  )
  trained = _fake_trainer(monkeypatch)
  source, workdir = _source(), str(tmp_path)
  args = cli.Arguments(trials=3, group_size=2, optimizers=['adamw', 'sgd'], submit='tpu')
  argv = [
    '--mode=sweep',
    f'--config={TINY}',
    '--trials=3',
    '--group_size=2',
    '--optimizers=adamw,sgd',
    '--submit=tpu',
    '--dry_run',
    f'--workdir={workdir}',
  ]
  job = [f'--config={TINY}', '--trials=3', '--group_size=2', '--optimizers=adamw,sgd']
  job.append(f'--workdir={workdir}')
  groups = ['vit_c_1gf-adamw-s3-g00', 'vit_c_1gf-adamw-s3-g01', 'vit_c_1gf-sgd-s3-g00']
  groups.append('vit_c_1gf-sgd-s3-g01')
  cli.sweep(source.load(TINY), workdir, dataclasses.replace(args, dry_run=True), source, argv=argv)
  assert submitted == [('tpu', job, groups, workdir, True)]
  assert not (tmp_path / 'sweep.json').exists()  # a dry run writes nothing

  # the trials of one group finished (a job ran it): the others are submitted, for real
  cli.sweep(
    source.load(TINY),
    workdir,
    dataclasses.replace(
      args, submit=None, groups=['vit_c_1gf-adamw-s3-g00'], execution='sequential'
    ),
    source,
    argv=argv,
  )
  assert trained == ['vit_c_1gf-adamw-s3-t000', 'vit_c_1gf-adamw-s3-t001']
  cli.sweep(source.load(TINY), workdir, args, source, argv=argv)
  assert submitted[1] == ('tpu', job, groups[1:], workdir, False)
  assert (tmp_path / 'sweep.json').exists() and len(trained) == 2


def test_groups_run_only_the_groups_named(tmp_path, monkeypatch):
  trained = _fake_trainer(monkeypatch)
  source = _source()
  args = cli.Arguments(
    trials=3, group_size=2, groups=['vit_c_1gf-adamw-s3-g01'], execution='sequential'
  )
  rows = cli.sweep(source.load(TINY), str(tmp_path), args, source, argv=[])
  assert trained == ['vit_c_1gf-adamw-s3-t002'] and [r['index'] for r in rows] == [2]
  with pytest.raises(trials.SweepError, match=r"no group 'vit_c_1gf-adamw-s3-g1'\. Did you mean"):
    cli.sweep(
      source.load(TINY),
      str(tmp_path),
      dataclasses.replace(args, groups=['vit_c_1gf-adamw-s3-g1']),
      source,
      argv=[],
    )


@pytest.mark.parametrize('command', ['main', 'vit_jax_stems.sweep.__main__'])
def test_the_sweep_commands_can_load_the_modules_they_import_while_running(command):
  """`--execution auto` imports the K-trials benchmark (grouped.grouped_pays) inside a command
  that has defined --config already: a module another command imports may define no flags at
  import time (absl refuses a flag defined twice)."""
  script = (
    f'import importlib; importlib.import_module({command!r})\n'
    'from vit_jax_stems.sweep import bench, grouped, sample_efficiency\n'
  )
  done = subprocess.run(
    [sys.executable, '-c', script], cwd=ROOT, capture_output=True, text=True, timeout=300
  )
  assert done.returncode == 0, done.stderr[-2000:]
