"""vit_jax_stems.sweep.submit: the exact scheduler commands of a 3-group sweep, and what each
job then runs. SLURM: the sbatch line, then launch/slurm.sbatch under a fake array task (stub
srun and python) for every index. Cloud TPU: the tpu.sh queue line per group, its dry-run gcloud
commands, and the startup script it writes, whose lines are run under a fake home."""

import os
import shlex
import shutil
import subprocess
import tarfile

import pytest
from conftest import LAUNCH_DIR, REPO_ROOT

from vit_jax_stems.sweep import submit

SBATCH = LAUNCH_DIR / 'slurm.sbatch'
TPU_SH = LAUNCH_DIR / 'tpu.sh'
GROUPS = ['vit_c_1gf-adamw-e10-g00', 'vit_c_1gf-adamw-e10-g01', 'vit_p_1gf-sgd-e10-g00']
SPACE = 'optimizer.lr=loguniform(1e-4,8e-3),optimizer.weight_decay=loguniform(0.02,0.8)'


def sweep_argv(workdir):
  return [
    '--config=configs/vitc.py:size=1gf',
    '--trials=48',
    f'--space={SPACE}',
    '--models=vit_c_1gf,vit_p_1gf',
    f'--workdir={workdir}',
    "--config.name=it's a sweep",
  ]


@pytest.fixture
def at_repo_root(monkeypatch):
  monkeypatch.chdir(REPO_ROOT)
  for var in ['TPU_ZONE', 'TPU_PROJECT', 'TPU_ACCELERATOR_TYPE', 'TPU_RUNTIME_VERSION']:
    monkeypatch.delenv(var, raising=False)


def test_job_argv_drops_the_flags_that_choose_submission():
  argv = ['--trials', '8', '--submit', 'slurm', '--groups=a,b', '-dry_run', '--groups', 'c']
  argv += ['--nodry_run', '--submit=tpu', '--dry_run=true', '--workdir=w', '--', '--groups=x']
  assert submit.job_argv(argv) == ['--trials', '8', '--workdir=w', '--', '--groups=x']


# ---------------------------------------------------------------------------------- SLURM
SHARED_DIR = '/shared/sweeps/edf 1'


def test_slurm_is_one_job_array_over_the_template(at_repo_root):
  commands = submit.submit(
    'slurm',
    sweep_argv(SHARED_DIR),
    GROUPS,
    SHARED_DIR,
    dry_run=True,
    partition='gpu',
    time='04:00:00',
    cpus_per_task=96,
    exclusive=True,
    max_parallel=2,
  )
  assert commands == [
    [
      'sbatch',
      '--array=0-2%2',
      '--job-name=sweep-edf-1',
      '--output=slurm-%x-%A_%a.out',
      '--open-mode=append',
      '--partition=gpu',
      '--time=04:00:00',
      '--cpus-per-task=96',
      '--exclusive',
      '--nodes=1',
      '--ntasks-per-node=1',
      '--export=ALL,VIT_SWEEP_GROUPS=' + ':'.join(GROUPS),
      'launch/slurm.sbatch',
      *sweep_argv(SHARED_DIR),
    ]
  ]


@pytest.fixture
def array_task(runner, tmp_path, make_stub_python):
  """run(sbatch_command, index) -> (proc, records, srun options) of one array task of the
  job that sbatch_command submits, run by launch/slurm.sbatch as SLURM would (one task)."""
  bin_dir = tmp_path / 'slurm_bin'
  bin_dir.mkdir()
  srun_opts = tmp_path / 'srun_opts'
  (bin_dir / 'srun').write_text(
    '#!/usr/bin/env bash\n'
    f'while [[ "$1" == -* ]]; do printf \'%s\\n\' "$1" >>\'{srun_opts}\'; shift; done\n'
    'SLURM_PROCID=0 SLURM_LOCALID=0 SLURM_NODEID=0 "$@"\n'
  )
  (bin_dir / 'srun').chmod(0o755)
  submit_dir = tmp_path / 'submit dir'
  submit_dir.mkdir()

  def run(command, index):
    script_at = command.index('launch/slurm.sbatch')
    [export] = [a for a in command[:script_at] if a.startswith('--export=')]
    groups = export.removeprefix('--export=ALL,VIT_SWEEP_GROUPS=')
    stub = make_stub_python(tmp_path / 'py' / 'python', tmp_path / f'records{index}')
    srun_opts.unlink(missing_ok=True)
    env = runner.env(
      PATH=f'{bin_dir}{os.pathsep}{runner.path}',
      RECORD_DIR=stub.record_dir,
      SLURM_JOB_ID=918273 + index,
      SLURM_ARRAY_JOB_ID=918273,
      SLURM_ARRAY_TASK_ID=index,
      SLURM_JOB_NODELIST='gpu-a007',
      SLURM_JOB_NUM_NODES=1,
      SLURM_NTASKS=1,
      SLURM_SUBMIT_DIR=submit_dir,
      PYTHON=stub.path,
      VIT_SWEEP_GROUPS=groups,
    )
    proc = runner.run(SBATCH, *command[script_at + 1 :], env=env)
    opts = srun_opts.read_text().split() if srun_opts.exists() else []
    return proc, stub.records(), opts, submit_dir

  return run


def test_array_task_i_runs_group_i_as_one_process(at_repo_root, array_task):
  argv = sweep_argv(SHARED_DIR)
  [command] = submit.submit('slurm', argv, GROUPS, SHARED_DIR, dry_run=True)
  for i, group in enumerate(GROUPS):
    proc, records, srun_opts, submit_dir = array_task(command, i)
    assert proc.returncode == 0, proc.stderr
    [rec] = records
    assert rec['argv'] == ['-m', 'vit_jax_stems.sweep', *argv, f'--groups={group}']
    assert rec['cwd'] == str(submit_dir)
    # One process that sees every GPU of its node: no jax.distributed contract (whose SLURM
    # detection would restrict it to GPU SLURM_LOCALID), and the guard scontrol never ran.
    assert not [k for k in rec['env'] if k.startswith('JAX_')], rec['env']
    assert '--ntasks=1' in srun_opts and '--kill-on-bad-exit=1' in srun_opts
    assert f'array task {i} runs sweep group {group}' in proc.stderr


@pytest.mark.parametrize(
  'change, message',
  [
    ({'SLURM_ARRAY_TASK_ID': None}, 'SLURM_ARRAY_TASK_ID is not'),
    ({'SLURM_ARRAY_TASK_ID': '3'}, 'array task 3 has no group: VIT_SWEEP_GROUPS lists 3'),
  ],
)
def test_array_task_without_its_group_is_refused(
  runner, tmp_path, make_stub_python, change, message
):
  stub = make_stub_python(tmp_path / 'python')
  env = runner.env(
    RECORD_DIR=stub.record_dir,
    PYTHON=stub.path,
    SLURM_ARRAY_TASK_ID=0,
    VIT_SWEEP_GROUPS=':'.join(GROUPS),
  )
  for key, value in change.items():
    if value is None:
      del env[key]
    else:
      env[key] = value
  proc = runner.run(SBATCH, '--trials=2', env=env)
  assert proc.returncode == 2 and message in proc.stderr, proc.stderr
  assert not stub.records()


@pytest.mark.parametrize(
  'kind, groups, options, message',
  [
    ('slurm', GROUPS, {'nodes': 2}, 'sets nodes itself'),
    ('slurm', GROUPS, {'ntasks_per_node': 8}, 'sets ntasks_per_node itself'),
    ('slurm', GROUPS, {'max_parallel': '0'}, 'max_parallel is how many'),
    ('slurm', [], {}, 'no trial groups'),
    ('slurm', ['a:b'], {}, 'letters, digits'),
    ('slurm', ['g0', 'g0'], {}, 'listed twice'),
    ('pbs', GROUPS, {}, 'one of slurm, tpu'),
  ],
)
def test_submission_refusals(at_repo_root, kind, groups, options, message):
  with pytest.raises(submit.SubmitError, match=message):
    submit.submit(kind, ['--trials=2'], groups, SHARED_DIR, dry_run=True, **options)


def test_job_arguments_with_submission_flags_are_refused(at_repo_root):
  with pytest.raises(submit.SubmitError, match='must not hold --submit'):
    submit.submit('slurm', ['--trials=2', '--groups=g0'], GROUPS, SHARED_DIR, dry_run=True)


def test_submit_outside_a_checkout_root_is_refused(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  with pytest.raises(submit.SubmitError, match='from the root of the checkout'):
    submit.submit('slurm', ['--trials=2'], GROUPS, SHARED_DIR, dry_run=True)


def fake_tool(bin_dir, name, log, fail_if=''):
  """An executable that appends its argv (one JSON-free line, shell-quoted) to log; exits 1
  when that line contains fail_if (if given)."""
  bin_dir.mkdir(exist_ok=True)
  (bin_dir / name).write_text(
    '#!/usr/bin/env bash\n'
    f'line="{name} $(printf "%q " "$@")"\n'
    f'printf "%s\\n" "$line" >>\'{log}\'\n'
    f"if [ -n '{fail_if}' ] && [[ \"$line\" == *'{fail_if}'* ]]; then exit 1; fi\n"
  )
  (bin_dir / name).chmod(0o755)


def logged(log):
  return [shlex.split(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_slurm_dry_run_runs_nothing_and_submission_runs_the_command(
  at_repo_root, tmp_path, monkeypatch
):
  log = tmp_path / 'sbatch.log'
  fake_tool(tmp_path / 'bin', 'sbatch', log)
  monkeypatch.setenv('PATH', f'{tmp_path / "bin"}{os.pathsep}{os.environ["PATH"]}')
  argv = sweep_argv(SHARED_DIR)
  dry = submit.submit('slurm', argv, GROUPS, SHARED_DIR, dry_run=True)
  assert logged(log) == []
  assert submit.submit('slurm', argv, GROUPS, SHARED_DIR, dry_run=False) == dry
  assert logged(log) == dry


# ------------------------------------------------------------------------------ Cloud TPU
BUCKET_DIR = 'gs://bucket/sweeps/edf1'
LOC = ['--zone=us-central2-b', '--project=my-proj']
NAMES = [
  'edf1-vit-c-1gf-adamw-e10-g00',
  'edf1-vit-c-1gf-adamw-e10-g01',
  'edf1-vit-p-1gf-sgd-e10-g00',
]


def tpu_submit(monkeypatch, dry_run=True, **options):
  monkeypatch.setenv('TPU_ZONE', 'us-central2-b')
  monkeypatch.setenv('TPU_PROJECT', 'my-proj')
  return submit.submit(
    'tpu', sweep_argv(BUCKET_DIR), GROUPS, BUCKET_DIR, dry_run=dry_run, spot=True, **options
  )


def test_tpu_is_one_queued_resource_per_group(at_repo_root, monkeypatch):
  assert tpu_submit(monkeypatch, valid_until_duration='12h') == [
    [
      'launch/tpu.sh',
      'queue',
      f'--name={name}',
      *LOC,
      '--accelerator-type=v4-8',
      '--spot',
      '--valid-until-duration=12h',
      f'--code-url={BUCKET_DIR}/submit/{name}.tgz',
      '--module=vit_jax_stems.sweep',
      '--',
      *sweep_argv(BUCKET_DIR),
      f'--groups={group}',
    ]
    for name, group in zip(NAMES, GROUPS)
  ]


def queue_dry_run(runner, command, tmpdir):
  """The commands tpu.sh prints for a `launch/tpu.sh queue ...` line from submit."""
  assert command[:2] == ['launch/tpu.sh', 'queue']
  return runner.dry_run(TPU_SH, 'queue', *command[2:], env=runner.env(TMPDIR=tmpdir))


@pytest.fixture
def tmpdir_with_space(tmp_path):
  path = tmp_path / 'tmp dir'
  path.mkdir()
  return path


def test_tpu_gcloud_commands_per_group(at_repo_root, monkeypatch, runner, tmpdir_with_space):
  for name, command in zip(NAMES, tpu_submit(monkeypatch)):
    tarball = str(tmpdir_with_space / f'{name}-vit_jax_stems.tgz')
    tar, upload, create = queue_dry_run(runner, command, tmpdir_with_space)
    assert tar[:5] == ['tar', '-czf', tarball, '-C', str(REPO_ROOT)] and tar[-1] == '.'
    assert upload == ['gcloud', 'storage', 'cp', tarball, f'{BUCKET_DIR}/submit/{name}.tgz']
    assert create == [
      'gcloud',
      'compute',
      'tpus',
      'queued-resources',
      'create',
      name,
      f'--node-id={name}',
      *LOC,
      '--accelerator-type=v4-8',
      '--runtime-version=tpu-ubuntu2204-base',
      '--spot',
      f'--metadata-from-file=startup-script={tmpdir_with_space / f"{name}-startup.sh"}',
    ]


def ssh_command(argv):
  """The --command of a `gcloud compute tpus tpu-vm ssh` argv."""
  assert argv[:5] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh'], argv
  return argv[-1].removeprefix('--command=')


def test_tpu_startup_script_fetches_sets_up_and_starts_the_group(
  at_repo_root, monkeypatch, runner, remote, make_stub_python, killer, tmpdir_with_space
):
  command = tpu_submit(monkeypatch)[1]
  name, group = NAMES[1], GROUPS[1]
  queue_dry_run(runner, command, tmpdir_with_space)
  script = (tmpdir_with_space / f'{name}-startup.sh').read_text().splitlines()
  # The same lines as sync's unpack, setup and run (--module) over ssh, as root.
  base = ['--name', name, *LOC]
  *_, unpack = runner.dry_run(TPU_SH, 'sync', *base)
  [setup] = runner.dry_run(TPU_SH, 'setup', *base)
  [run] = runner.dry_run(
    TPU_SH, 'run', *base, *command[command.index('--module=vit_jax_stems.sweep') :]
  )
  code_url = f'{BUCKET_DIR}/submit/{name}.tgz'
  assert script[0] == '#!/bin/bash' and 'set -euo pipefail' in script
  assert script[-4:] == [
    'rm -f "$HOME"/vit_logs/main.pid',
    f'gcloud storage cp {code_url} "$HOME"/vit_jax_stems.tgz && {ssh_command(unpack)}',
    ssh_command(setup),
    ssh_command(run),
  ]
  assert script.index('export HOME=/root') < len(script) - 4

  # Run the fetch and start lines under a fake home: a stub gcloud "downloads" a checkout.
  home = runner.home
  checkout = tmpdir_with_space / 'checkout.tgz'
  with tarfile.open(checkout, 'w:gz') as tf:
    tf.add(REPO_ROOT / 'launch' / 'tpu.sh', arcname='launch/tpu.sh')
  bin_dir = tmpdir_with_space / 'bin'
  bin_dir.mkdir()
  (bin_dir / 'gcloud').write_text(
    f'#!/bin/sh\n[ "$1 $2 $3" = \'storage cp {code_url}\' ] && cp \'{checkout}\' "$4"\n'
  )
  (bin_dir / 'gcloud').chmod(0o755)
  path = f'{bin_dir}{os.pathsep}{os.environ["PATH"]}'
  fetch = remote(script[-3], home, PATH=path)
  assert fetch.returncode == 0, fetch.stderr
  assert (home / 'vit_jax_stems' / 'launch' / 'tpu.sh').exists()
  assert not (home / 'vit_jax_stems.tgz').exists()
  stub = make_stub_python(home / 'vit_venv' / 'bin' / 'python')
  start = remote(script[-1], home, RECORD_DIR=stub.record_dir)
  assert start.returncode == 0, start.stderr
  [rec] = stub.records(expected=1)
  killer(rec['pgid'])
  assert rec['argv'] == ['-m', 'vit_jax_stems.sweep', *sweep_argv(BUCKET_DIR), f'--groups={group}']
  assert rec['cwd'] == str(home / 'vit_jax_stems')

  if shutil.which('shellcheck'):
    check = subprocess.run(
      ['shellcheck', '--shell=bash', str(tmpdir_with_space / f'{name}-startup.sh')],
      capture_output=True,
      text=True,
    )
    assert check.returncode == 0, check.stdout


def test_tpu_queue_dry_run_runs_nothing_and_submission_runs_tpu_sh(
  at_repo_root, monkeypatch, tmp_path, tmpdir_with_space
):
  log = tmp_path / 'gcloud.log'
  # The second group's create fails (say, quota): the error says which groups were queued.
  fake_tool(tmp_path / 'bin', 'gcloud', log, fail_if=f'create {NAMES[1]}')
  monkeypatch.setenv('PATH', f'{tmp_path / "bin"}{os.pathsep}{os.environ["PATH"]}')
  monkeypatch.setenv('TMPDIR', str(tmpdir_with_space))
  tpu_submit(monkeypatch)
  assert logged(log) == []
  with pytest.raises(submit.SubmitError, match=f'failed.*queued before it: {GROUPS[0]}$'):
    tpu_submit(monkeypatch, dry_run=False)
  calls = logged(log)
  assert [c[1:3] for c in calls] == [['storage', 'cp'], ['compute', 'tpus']] * 2
  assert [c[5] for c in calls if 'queued-resources' in c] == NAMES[:2]
  with tarfile.open(tmpdir_with_space / f'{NAMES[0]}-vit_jax_stems.tgz') as tf:
    assert './main.py' in tf.getnames()


@pytest.mark.parametrize(
  'workdir, env, options, message',
  [
    ('/shared/sweeps/edf1', {'TPU_ZONE': 'z'}, {}, 'needs a gs:// --workdir'),
    (BUCKET_DIR, {}, {}, 'needs a zone: set TPU_ZONE'),
    (BUCKET_DIR, {'TPU_ZONE': 'z'}, {'accelerator_type': 'v4-32'}, 'single-host slice'),
    (BUCKET_DIR, {'TPU_ZONE': 'z', 'TPU_ACCELERATOR_TYPE': 'v5litepod-16'}, {}, 'single-host'),
    (BUCKET_DIR, {'TPU_ZONE': 'z'}, {'partition': 'gpu'}, 'unknown --submit tpu option partition'),
  ],
)
def test_tpu_refusals(at_repo_root, monkeypatch, workdir, env, options, message):
  for key, value in env.items():
    monkeypatch.setenv(key, value)
  with pytest.raises(submit.SubmitError, match=message):
    submit.submit('tpu', ['--trials=2'], GROUPS, workdir, dry_run=True, **options)


def test_tpu_names_are_valid_unique_ids():
  assert submit.tpu_name('gs://b/sweeps/EDF_1/', 'vit_c_1gf-adamw-e10-g03') == (
    'edf-1-vit-c-1gf-adamw-e10-g03'
  )
  assert submit.tpu_name('gs://b/2024', 'g0') == 'sweep-2024-g0'
  assert submit.tpu_name('gs://b/x', 'g0', prefix='mine') == 'mine-g0'
  long_a = submit.tpu_name('gs://b/' + 'a' * 70, 'g0')
  long_b = submit.tpu_name('gs://b/' + 'a' * 70, 'g1')
  assert len(long_a) == len(long_b) == 63 and long_a != long_b
  assert long_a.startswith('a' * 50)


def test_parse_options():
  assert submit.parse_options(['partition=gpu', 'time=04:00:00', 'spot', 'gpus-per-node=4']) == {
    'partition': 'gpu',
    'time': '04:00:00',
    'spot': True,
    'gpus_per_node': '4',
  }
  with pytest.raises(submit.SubmitError, match='key=value'):
    submit.parse_options(['=gpu'])


# ------------------------------------------------------------------- tpu.sh's new paths
BASE = ['--name', 'vitc4', '--zone', 'us-central2-b', '--project', 'my-proj']


def test_tpu_sh_run_module_passes_only_the_flags_after_dashes(runner):
  [argv] = runner.dry_run(
    TPU_SH, 'run', *BASE, '--module', 'vit_jax_stems.sweep', '--', '--trials=2'
  )
  line = ssh_command(argv)
  assert '"$HOME"/vit_venv/bin/python -m vit_jax_stems.sweep --trials=2 >>' in line


def test_tpu_sh_logs_and_stop_as_root(runner):
  for sub in ['logs', 'stop']:
    [plain] = runner.dry_run(TPU_SH, sub, *BASE)
    [as_root] = runner.dry_run(TPU_SH, sub, *BASE, '--as-root')
    assert as_root[:-1] == plain[:-1]
    assert shlex.split(ssh_command(as_root)) == ['sudo', '-H', 'bash', '-c', ssh_command(plain)]


@pytest.mark.parametrize(
  'args, message',
  [
    (['--module=m'], '--code-url gs://.../code.tgz is required'),
    (['--module=m', '--code-url=/tmp/c.tgz'], '--code-url must be a gs:// path'),
    (['--code-url=gs://b/c.tgz'], '--workdir (or TPU_WORKDIR) is required for'),
    (['--code-url=gs://b/c.tgz', '--module=a-b'], '--module must be a python module name'),
  ],
)
def test_tpu_sh_queue_refusals(runner, tmp_path, args, message):
  proc = runner.run(TPU_SH, 'queue', *BASE, *args, env=runner.env(TMPDIR=tmp_path))
  assert proc.returncode == 2 and message in proc.stderr, proc.stderr
  assert proc.stdout == '' and not list(tmp_path.glob('*-startup.sh'))


def test_tpu_queue_commands_parse_with_gcloud(at_repo_root, monkeypatch, runner, tmpdir_with_space):
  from test_gcloud_parse import parse  # pylint: disable=g-import-not-at-top

  argvs = []
  for command in tpu_submit(monkeypatch, valid_until_duration='12h'):
    argvs += [a[1:] for a in queue_dry_run(runner, command, tmpdir_with_space) if a[0] == 'gcloud']
  results = parse(argvs, tmpdir_with_space)
  assert [r.get('command') for r in results] == [
    'gcloud.storage.cp',
    'gcloud.compute.tpus.queued-resources.create',
  ] * len(GROUPS), results
