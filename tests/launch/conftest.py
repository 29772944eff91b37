"""Fixtures for the launch-script tests: run a script with a clean environment, read its dry run.

The scripts are run as subprocesses exactly as a user runs them. Their dry-run lines are
read back with shlex.split, so the tests compare real argv lists, not strings.
"""

import json
import os
import pathlib
import shlex
import subprocess
import sys
import textwrap
import time

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
LAUNCH_DIR = REPO_ROOT / 'launch'


class ScriptRunner:
  """Runs launch scripts with only PATH and HOME from the outside, so TPU_* or SLURM_*
  variables of whoever runs the tests cannot change the result."""

  def __init__(self, home: pathlib.Path, guard_bin: pathlib.Path):
    self.home = home
    # First on PATH: gcloud and ssh that refuse to do anything, so a test mistake can never
    # reach a real cloud project or host.
    guard_bin.mkdir()
    for tool in ['gcloud', 'ssh', 'scontrol', 'srun']:
      (guard_bin / tool).write_text(
        f"#!/bin/sh\necho 'test guard: real {tool} reached' >&2\nexit 97\n"
      )
      (guard_bin / tool).chmod(0o755)
    self.path = f'{guard_bin}{os.pathsep}{os.environ["PATH"]}'

  def env(self, **extra):
    env = {'PATH': self.path, 'HOME': str(self.home), 'LANG': 'C.UTF-8'}
    env.update({k: str(v) for k, v in extra.items()})
    return env

  def run(self, script, *args, env=None, path_prefix=None, check=False, cwd=None):
    env = dict(env or self.env())
    if path_prefix:
      env['PATH'] = f'{path_prefix}{os.pathsep}{env["PATH"]}'
    proc = subprocess.run(
      ['bash', str(script), *map(str, args)],
      env=env,
      cwd=cwd,
      capture_output=True,
      text=True,
      timeout=60,
    )
    if check and proc.returncode != 0:
      raise AssertionError(f'{script} {args} failed ({proc.returncode}):\n{proc.stderr}')
    return proc

  def dry_run(self, script, subcommand, *args, env=None):
    """The commands a dry run prints, one argv list per line. --dry-run goes right after the
    subcommand: after a `--` it would be an argument of main.py."""
    proc = self.run(script, subcommand, '--dry-run', *args, env=env, check=True)
    assert proc.stderr == '', proc.stderr
    return [shlex.split(line) for line in proc.stdout.splitlines()]


@pytest.fixture
def runner(tmp_path):
  home = tmp_path / 'home'
  home.mkdir()
  return ScriptRunner(home, tmp_path / 'guard_bin')


def option_value(argv, flag):
  """The value of `--flag=value` in argv (exactly one occurrence)."""
  values = [a.split('=', 1)[1] for a in argv if a.startswith(flag + '=')]
  assert len(values) == 1, (flag, argv)
  return values[0]


@pytest.fixture
def option():
  return option_value


class StubPython:
  """An executable standing in for python: records argv, pid, process group and the JAX_*
  and SLURM_* environment as JSON in record_dir, then sleeps while STUB_SLEEP is set (so that
  a stop can be tested) or exits."""

  def __init__(self, path: pathlib.Path, record_dir: pathlib.Path):
    self.path = path
    self.record_dir = record_dir
    record_dir.mkdir(parents=True, exist_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
      f'#!{sys.executable}\n'
      + textwrap.dedent("""\
        import json, os, sys, time
        rec = dict(argv=sys.argv[1:], cwd=os.getcwd(), pid=os.getpid(), pgid=os.getpgid(0),
                   env={k: v for k, v in os.environ.items() if k.startswith(("JAX_", "SLURM_"))})
        path = os.path.join(os.environ["RECORD_DIR"], "record-%d.json" % os.getpid())
        with open(path + ".tmp", "w") as f:
          json.dump(rec, f)
        os.rename(path + ".tmp", path)
        if os.environ.get("STUB_SLEEP"):
          time.sleep(float(os.environ["STUB_SLEEP"]))
        """)
    )
    path.chmod(0o755)

  def records(self, expected=None, timeout=10.0):
    """All records, waiting up to timeout for `expected` of them (detached processes)."""
    deadline = time.monotonic() + timeout
    while True:
      files = sorted(self.record_dir.glob('record-*.json'))
      if expected is None or len(files) >= expected or time.monotonic() > deadline:
        return [json.loads(f.read_text()) for f in files]
      time.sleep(0.05)


@pytest.fixture
def make_stub_python(tmp_path):
  def make(path, record_dir=None):
    return StubPython(pathlib.Path(path), pathlib.Path(record_dir or tmp_path / 'records'))

  return make


def run_remote(line, home, **env):
  """Runs a remote command line the way sshd hands it to the login shell (bash -c)."""
  full_env = {'PATH': os.environ['PATH'], 'HOME': str(home), 'LANG': 'C.UTF-8'}
  full_env.update({k: str(v) for k, v in env.items()})
  return subprocess.run(
    ['bash', '-c', line], env=full_env, capture_output=True, text=True, timeout=60
  )


@pytest.fixture
def remote():
  return run_remote


def process_gone(pid):
  """True when pid no longer runs (absent, or a zombie nobody reaped yet)."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return True
  try:
    return '\nState:\tZ' in pathlib.Path(f'/proc/{pid}/status').read_text()
  except FileNotFoundError:
    return True


@pytest.fixture
def killer():
  """Kills, at teardown, process groups a test started and may have left behind."""
  groups = []
  yield groups.append
  for pgid in groups:
    try:
      os.killpg(pgid, 9)
    except (ProcessLookupError, PermissionError):
      pass


@pytest.fixture
def is_gone():
  return process_gone
