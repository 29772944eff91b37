"""Every launch script passes shellcheck (all severities, sourced files followed)."""

import shutil
import subprocess

import pytest
from conftest import LAUNCH_DIR, REPO_ROOT

SCRIPTS = ['tpu.sh', 'ssh_multinode.sh', 'remote_process.sh', 'slurm.sbatch']


def test_every_shell_file_is_covered():
  on_disk = {p.name for p in LAUNCH_DIR.iterdir() if p.suffix in ('.sh', '.sbatch')}
  assert on_disk == set(SCRIPTS), 'add new launch scripts to SCRIPTS'


@pytest.mark.parametrize('script', SCRIPTS)
def test_shellcheck_clean(script):
  if shutil.which('shellcheck') is None:
    pytest.skip('shellcheck is not installed (apt-get install -y shellcheck)')
  proc = subprocess.run(
    ['shellcheck', '--external-sources', '--shell=bash', f'launch/{script}'],
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
  )
  assert proc.returncode == 0, proc.stdout + proc.stderr
