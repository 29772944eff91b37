"""launch/slurm.sbatch run outside SLURM: fake SLURM_* variables, a stub scontrol and a stub
srun that starts the tasks locally, a stub python that records what main.py would get. The
derived JAX_* variables are compared with jax's own SLURM auto-detection (the reference)."""

import os
import textwrap

import pytest
from conftest import LAUNCH_DIR

SBATCH = LAUNCH_DIR / 'slurm.sbatch'
NODES = ['gpu-a007', 'gpu-a008']
NODELIST = 'gpu-a[007-008]'
TASKS_PER_NODE = 2


@pytest.fixture
def slurm(runner, tmp_path, make_stub_python):
  """(env, stub python, srun record file) for a fake 2-node x 2-task job."""
  bin_dir = tmp_path / 'slurm_bin'
  bin_dir.mkdir()
  (bin_dir / 'scontrol').write_text(
    textwrap.dedent(f"""\
      #!/bin/sh
      # Only the one query the template may make; anything else is a test failure.
      if [ "$1 $2 $3" = "show hostnames {NODELIST}" ]; then printf '%s\\n' {' '.join(NODES)}; exit 0; fi
      echo "stub scontrol: unexpected arguments: $*" >&2; exit 1
      """)
  )
  srun_opts = tmp_path / 'srun_opts'
  (bin_dir / 'srun').write_text(
    textwrap.dedent(f"""\
      #!/usr/bin/env bash
      # Records srun's own options, then runs the command once per task as srun would, with
      # the per-task variables SLURM sets (block distribution: tasks 0,1 on node 0).
      set -eu
      while [[ "$1" == -* ]]; do printf '%s\\n' "$1" >>'{srun_opts}'; shift; done
      for ((i = 0; i < SLURM_NTASKS; i++)); do
        SLURM_PROCID=$i SLURM_LOCALID=$((i % {TASKS_PER_NODE})) SLURM_NODEID=$((i / {TASKS_PER_NODE})) \\
          SLURM_STEP_NODELIST=$SLURM_JOB_NODELIST SLURM_STEP_NUM_NODES=$SLURM_JOB_NUM_NODES "$@"
      done
      """)
  )
  for f in bin_dir.iterdir():
    f.chmod(0o755)
  submit_dir = tmp_path / 'submit dir'
  submit_dir.mkdir()
  stub = make_stub_python(tmp_path / 'py' / 'python')
  env = runner.env(
    PATH=f'{bin_dir}{os.pathsep}{runner.path}',
    RECORD_DIR=stub.record_dir,
    SLURM_JOB_ID=918273,
    SLURM_JOB_NODELIST=NODELIST,
    SLURM_JOB_NUM_NODES=len(NODES),
    SLURM_NTASKS=len(NODES) * TASKS_PER_NODE,
    SLURM_SUBMIT_DIR=submit_dir,
    PYTHON=stub.path,
    VIT_WORKDIR='/shared/runs/vit c4',
    VIT_DATA_DIR='/shared/tfds',
  )
  return env, stub, srun_opts


def test_every_task_gets_the_jax_env_that_jax_slurm_detection_derives(runner, slurm, monkeypatch):
  env, stub, srun_opts = slurm
  proc = runner.run(SBATCH, '--config.total_epochs=100', '--config.name=a b', env=env)
  assert proc.returncode == 0, proc.stderr
  records = sorted(stub.records(), key=lambda r: int(r['env']['SLURM_PROCID']))
  assert len(records) == 4
  # Reference: jax's own SLURM cluster detection, fed each task's SLURM variables.
  from jax._src.clusters import slurm_cluster  # pylint: disable=g-import-not-at-top

  for i, rec in enumerate(records):
    for key, value in rec['env'].items():
      if key.startswith('SLURM_'):
        monkeypatch.setenv(key, value)
    cluster = slurm_cluster.SlurmCluster
    assert cluster.is_env_present()
    assert rec['env']['JAX_COORDINATOR_ADDRESS'] == cluster.get_coordinator_address(None, None)
    assert rec['env']['JAX_COORDINATOR_ADDRESS'].startswith(NODES[0] + ':')
    assert int(rec['env']['JAX_NUM_PROCESSES']) == cluster.get_process_count() == 4
    assert int(rec['env']['JAX_PROCESS_ID']) == cluster.get_process_id() == i
    assert rec['argv'] == [
      'main.py',
      '--config=configs/vitc.py:size=4gf',
      '--workdir=/shared/runs/vit c4',
      '--config.data.data_dir=/shared/tfds',
      '--mode=train',
      '--config.total_epochs=100',
      '--config.name=a b',
    ]
    assert rec['cwd'] == env['SLURM_SUBMIT_DIR']
  # One task dying ends the job instead of leaving the others hanging in a collective.
  assert '--kill-on-bad-exit=1' in srun_opts.read_text().split()


def test_coordinator_port_override(runner, slurm):
  env, stub, _ = slurm
  env['JAX_COORDINATOR_PORT'] = '23456'
  assert runner.run(SBATCH, env=env).returncode == 0
  assert {r['env']['JAX_COORDINATOR_ADDRESS'] for r in stub.records()} == {f'{NODES[0]}:23456'}


@pytest.mark.parametrize(
  'drop, message',
  [
    ('SLURM_JOB_NODELIST', 'SLURM_JOB_NODELIST is not set: submit this file with sbatch'),
    ('SLURM_NTASKS', 'SLURM_NTASKS is not set'),
    ('VIT_WORKDIR', 'set VIT_WORKDIR'),
    ('VIT_DATA_DIR', 'set VIT_DATA_DIR'),
  ],
)
def test_missing_variables_are_named(runner, slurm, drop, message):
  env, stub, srun_opts = slurm
  del env[drop]
  proc = runner.run(SBATCH, env=env)
  assert proc.returncode != 0 and message in proc.stderr, proc.stderr
  assert not stub.records() and not srun_opts.exists()
