"""launch/tpu.sh: the exact gcloud argv of every subcommand, refusals, and the remote command
lines executed locally (bash -c under a fake home) to prove their quoting and behaviour."""

import re
import shutil
import tarfile

import pytest
from conftest import LAUNCH_DIR, REPO_ROOT

TPU_SH = LAUNCH_DIR / 'tpu.sh'
BASE = ['--name', 'vitc4', '--zone', 'us-central2-b', '--project', 'my-proj']
LOC = ['--zone=us-central2-b', '--project=my-proj']
TPU_VM = ['gcloud', 'compute', 'tpus', 'tpu-vm']
QR = ['gcloud', 'compute', 'tpus', 'queued-resources']


def jax_pin():
  """The jax version pinned in requirements.txt, read independently of tpu.sh."""
  for line in (REPO_ROOT / 'requirements.txt').read_text().splitlines():
    if line.startswith('jax=='):
      return line.split('==', 1)[1].strip()
  raise AssertionError('requirements.txt pins no jax version')


@pytest.mark.parametrize(
  'flags, expected',
  [
    (
      [],
      TPU_VM
      + ['create', 'vitc4']
      + LOC
      + ['--accelerator-type=v4-32', '--version=tpu-ubuntu2204-base'],
    ),
    (
      ['--spot', '--accelerator-type', 'v3-32'],
      TPU_VM
      + ['create', 'vitc4']
      + LOC
      + ['--accelerator-type=v3-32', '--version=tpu-ubuntu2204-base', '--spot'],
    ),
    (
      ['--queued'],
      QR
      + ['create', 'vitc4', '--node-id=vitc4']
      + LOC
      + ['--accelerator-type=v4-32', '--runtime-version=tpu-ubuntu2204-base'],
    ),
    (
      ['--queued', '--spot', '--valid-until-duration=6h', '--runtime-version=v2-alpha-tpuv5'],
      QR
      + ['create', 'vitc4', '--node-id=vitc4']
      + LOC
      + [
        '--accelerator-type=v4-32',
        '--runtime-version=v2-alpha-tpuv5',
        '--spot',
        '--valid-until-duration=6h',
      ],
    ),
  ],
)
def test_create_variants(runner, flags, expected):
  assert runner.dry_run(TPU_SH, 'create', *BASE, *flags) == [expected]


@pytest.mark.parametrize(
  'sub, queued, expected',
  [
    ('status', False, TPU_VM + ['describe', 'vitc4'] + LOC),
    ('status', True, QR + ['describe', 'vitc4'] + LOC),
    ('delete', False, TPU_VM + ['delete', 'vitc4'] + LOC),
    ('delete', True, QR + ['delete', 'vitc4'] + LOC + ['--force']),
  ],
)
def test_status_delete(runner, sub, queued, expected):
  flags = ['--queued'] if queued else []
  assert runner.dry_run(TPU_SH, sub, *BASE, *flags) == [expected]


def test_config_from_environment_and_project_optional(runner):
  env = runner.env(TPU_NAME='n1', TPU_ZONE='europe-west4-a', TPU_ACCELERATOR_TYPE='v3-32')
  assert runner.dry_run(TPU_SH, 'create', env=env) == [
    TPU_VM
    + [
      'create',
      'n1',
      '--zone=europe-west4-a',
      '--accelerator-type=v3-32',
      '--version=tpu-ubuntu2204-base',
    ]
  ]
  # A flag wins over the environment.
  assert runner.dry_run(TPU_SH, 'status', '--name=n2', env=env) == [
    TPU_VM + ['describe', 'n2', '--zone=europe-west4-a']
  ]


def ssh_line(argv, worker='all'):
  """Checks the shape of a `tpu-vm ssh` argv and returns its --command value."""
  assert argv[:6] == TPU_VM + ['ssh', 'vitc4'], argv
  assert argv[6:9] == LOC + [f'--worker={worker}'], argv
  assert len(argv) == 10 and argv[9].startswith('--command='), argv
  return argv[9][len('--command=') :]


def test_setup_installs_pinned_jax_tpu_on_every_worker(runner):
  [argv] = runner.dry_run(TPU_SH, 'setup', *BASE)
  line = ssh_line(argv)
  assert f"'jax[tpu]=={jax_pin()}'" in line
  assert '-r "$HOME"/vit_jax_stems/requirements.txt' in line
  assert 'python3.11 -m venv "$HOME"/vit_venv' in line


def test_logs_stop_address_the_right_workers(runner):
  [logs0] = runner.dry_run(TPU_SH, 'logs', *BASE)
  assert ssh_line(logs0, worker='0') == 'tail -n 200 -F "$HOME"/vit_logs/main.log'
  [logs_all] = runner.dry_run(TPU_SH, 'logs', *BASE, '--worker', 'all')
  ssh_line(logs_all, worker='all')
  [stop] = runner.dry_run(TPU_SH, 'stop', *BASE)
  assert 'kill -TERM' in ssh_line(stop)


def test_sync_copies_checkout_and_unpacks_it_remotely(runner, remote, tmp_path):
  # A checkout whose path has spaces, with things that must not travel.
  repo = tmp_path / 'my repo'
  shutil.copytree(LAUNCH_DIR, repo / 'launch')
  shutil.copy(REPO_ROOT / 'requirements.txt', repo / 'requirements.txt')
  (repo / 'main.py').write_text("print('hi')\n")
  for junk in ['.git/HEAD', '.venv/bin/python', 'pkg/__pycache__/x.pyc', 'workdirs/ckpt']:
    (repo / junk).parent.mkdir(parents=True, exist_ok=True)
    (repo / junk).write_text('junk')
  tmpdir = tmp_path / 'tmp dir'
  tmpdir.mkdir()
  env = runner.env(TMPDIR=tmpdir)
  tar, scp, ssh = runner.dry_run(repo / 'launch' / 'tpu.sh', 'sync', *BASE, env=env)
  tarball = str(tmpdir / 'vitc4-vit_jax_stems.tgz')
  assert tar[:5] == ['tar', '-czf', tarball, '-C', str(repo)] and tar[-1] == '.'
  assert scp == TPU_VM + ['scp', tarball, 'vitc4:vit_jax_stems.tgz'] + LOC + ['--worker=all']

  # Run what the worker would: make the tarball, "scp" it to the fake home, run the line.
  import subprocess

  subprocess.run(tar, check=True)
  with tarfile.open(tarball) as tf:
    names = tf.getnames()
  assert not [n for n in names if re.search(r'(^|/)(\.git|\.venv|__pycache__|workdirs)(/|$)', n)]
  home = runner.home
  shutil.copy(tarball, home / 'vit_jax_stems.tgz')
  (home / 'vit_jax_stems').mkdir()
  (home / 'vit_jax_stems' / 'stale.py').write_text('deleted locally')
  proc = remote(ssh_line(ssh), home)
  assert proc.returncode == 0, proc.stderr
  synced = home / 'vit_jax_stems'
  assert (synced / 'main.py').read_text() == "print('hi')\n"
  assert (synced / 'launch' / 'tpu.sh').exists()
  assert not (synced / 'stale.py').exists() and not (synced / '.git').exists()
  assert not (home / 'vit_jax_stems.tgz').exists()


def test_run_starts_detached_main_py_with_exact_args_and_stop_kills_it(
  runner, remote, make_stub_python, killer, is_gone
):
  extra = ['--config.total_epochs=100', '--config.name=my run', "it's"]
  [argv] = runner.dry_run(
    TPU_SH,
    'run',
    *BASE,
    '--workdir',
    'gs://bucket/runs/vit c4',
    '--data-dir=gs://bucket/tfds',
    '--',
    *extra,
  )
  line = ssh_line(argv)
  home = runner.home
  (home / 'vit_jax_stems').mkdir()
  stub = make_stub_python(home / 'vit_venv' / 'bin' / 'python')
  proc = remote(line, home, RECORD_DIR=stub.record_dir, STUB_SLEEP=60)
  assert proc.returncode == 0, proc.stderr
  [rec] = stub.records(expected=1)
  killer(rec['pgid'])
  assert rec['argv'] == [
    'main.py',
    '--config=configs/vitc.py:size=4gf',
    '--workdir=gs://bucket/runs/vit c4',
    '--config.data.data_dir=gs://bucket/tfds',
    '--mode=train',
    '--distributed',
    *extra,
  ]
  assert rec['cwd'] == str(home / 'vit_jax_stems')
  # Its own process group (what stop kills), recorded in the pid file.
  assert rec['pgid'] == rec['pid']
  assert int((home / 'vit_logs' / 'main.pid').read_text()) == rec['pid']
  assert (home / 'vit_logs' / 'main.log').exists()

  again = remote(line, home, RECORD_DIR=stub.record_dir, STUB_SLEEP=60)
  assert again.returncode == 1 and 'already runs' in again.stderr

  [stop] = runner.dry_run(TPU_SH, 'stop', *BASE)
  proc = remote(ssh_line(stop), home)
  assert proc.returncode == 0 and 'stopped main.py' in proc.stdout, proc
  assert is_gone(rec['pid'])
  assert not (home / 'vit_logs' / 'main.pid').exists()


@pytest.mark.parametrize(
  'args, message',
  [
    (['create', *BASE, '--bogus'], "unknown flag '--bogus'"),
    (['create', *BASE, '--spot=yes'], "unknown flag '--spot=yes'"),
    (['frobnicate', *BASE], "unknown subcommand 'frobnicate'"),
    ([*BASE], 'missing subcommand'),
    (['create', '--zone', 'z'], '--name (or TPU_NAME) is required'),
    (['create', '--name', 'n'], '--zone (or TPU_ZONE) is required'),
    (['create', *BASE, '--name'], '--name needs a value'),
    (['create', *BASE, 'extra'], "unexpected argument 'extra'"),
    (['create', *BASE, '--valid-until-duration=1h'], 'only applies with --queued'),
    (['status', *BASE, '--', '--x'], "only allowed with 'run'"),
    (['run', *BASE, '--data-dir=gs://d'], '--workdir (or TPU_WORKDIR) is required'),
    (['run', *BASE, '--workdir=/local/w', '--data-dir=gs://d'], '--workdir must be a gs:// path'),
    (['run', *BASE, '--workdir=gs://w', '--data-dir=/data'], '--data-dir must be a gs:// path'),
    (['run', *BASE, '--workdir=gs://w', '--data-dir=gs://d', '--mode=test'], '--mode must be'),
    (['logs', *BASE, '--worker=first'], '--worker must be'),
    (['setup', *BASE, '--python=python'], '--python must look like python3.11'),
    (['sync', *BASE, '--remote-dir=/abs'], 'must be relative to the remote home'),
  ],
)
def test_refusals_are_clear_and_run_nothing(runner, tmp_path, args, message):
  # A gcloud on PATH that leaves a mark: nothing may run when the arguments are wrong.
  stub_bin = tmp_path / 'bin'
  stub_bin.mkdir()
  mark = tmp_path / 'ran'
  for tool in ['gcloud', 'tar']:
    (stub_bin / tool).write_text(f"#!/bin/sh\ntouch '{mark}'\n")
    (stub_bin / tool).chmod(0o755)
  proc = runner.run(TPU_SH, *args, path_prefix=stub_bin)
  assert proc.returncode == 2, proc
  assert message in proc.stderr, proc.stderr
  assert proc.stdout == '' and not mark.exists()


def test_dry_run_runs_nothing(runner, tmp_path):
  stub_bin = tmp_path / 'bin'
  stub_bin.mkdir()
  mark = tmp_path / 'ran'
  for tool in ['gcloud', 'tar']:
    (stub_bin / tool).write_text(f"#!/bin/sh\ntouch '{mark}'\n")
    (stub_bin / tool).chmod(0o755)
  for sub in ['create', 'setup', 'sync', 'logs', 'stop', 'status', 'delete']:
    assert runner.run(TPU_SH, sub, *BASE, '--dry-run', path_prefix=stub_bin).returncode == 0
  assert not mark.exists()
  # Without --dry-run the same command does run (the stub is reached), echoed on stderr.
  proc = runner.run(TPU_SH, 'status', *BASE, path_prefix=stub_bin)
  assert proc.returncode == 0 and mark.exists()
  assert proc.stderr.startswith('+ gcloud compute tpus tpu-vm describe vitc4')


def test_help(runner):
  proc = runner.run(TPU_SH, '--help')
  assert proc.returncode == 0
  for sub in ['create', 'setup', 'sync', 'run', 'logs', 'stop', 'status', 'delete']:
    assert re.search(rf'^  {sub} ', proc.stdout, re.M), sub
