"""Every gcloud command tpu.sh can generate is accepted by the installed gcloud's parser.

Skipped when gcloud is not installed. See gcloud_parse_check.py for why parsing goes through
gcloud's CLI object instead of running `gcloud` (it never reaches the network). A negative
control (a flag that exists for one command but not the other) proves the check can fail.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
from conftest import LAUNCH_DIR

TPU_SH = LAUNCH_DIR / 'tpu.sh'
BASE = ['--name', 'vitc4', '--zone', 'us-central2-b', '--project', 'my-proj']
INVOCATIONS = [
  ['create'],
  ['create', '--spot'],
  ['create', '--accelerator-type=v3-32', '--spot'],
  ['create', '--queued'],
  ['create', '--queued', '--spot', '--valid-until-duration=6h'],
  ['sync'],
  ['setup'],
  ['run', '--workdir=gs://b/runs/vit c4', '--data-dir=gs://b/tfds', '--', '--config.x=1'],
  ['logs'],
  ['logs', '--worker=all'],
  ['stop'],
  ['status'],
  ['status', '--queued'],
  ['delete'],
  ['delete', '--queued'],
]


def gcloud_python():
  """(sdk root, python) of the installed gcloud, or None."""
  gcloud = shutil.which('gcloud')
  if gcloud is None:
    return None
  root = pathlib.Path(os.path.realpath(gcloud)).parent.parent
  if not (root / 'lib' / 'googlecloudsdk' / 'gcloud_main.py').exists():
    return None
  bundled = root / 'platform' / 'bundledpythonunix' / 'bin' / 'python3'
  python = os.environ.get('CLOUDSDK_PYTHON') or (
    str(bundled) if bundled.exists() else sys.executable
  )
  return root, python


def parse(argvs, tmp_path):
  found = gcloud_python()
  if found is None:
    pytest.skip(
      'gcloud (Google Cloud CLI) is not installed; it is not on PyPI, and its apt '
      'repository is packages.cloud.google.com'
    )
  root, python = found
  env = {
    'PATH': os.environ['PATH'],
    'HOME': str(tmp_path),
    'CLOUDSDK_ROOT_DIR': str(root),
    'CLOUDSDK_CONFIG': str(tmp_path / 'gcloud_config'),  # no user credentials or defaults
    'CLOUDSDK_CORE_DISABLE_PROMPTS': '1',
    'CLOUDSDK_CORE_DISABLE_USAGE_REPORTING': 'true',
    'CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK': '1',
  }
  proc = subprocess.run(
    [python, str(pathlib.Path(__file__).with_name('gcloud_parse_check.py'))],
    input=''.join(json.dumps(a) + '\n' for a in argvs),
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert proc.returncode == 0, proc.stderr
  return [json.loads(line) for line in proc.stdout.splitlines()]


def test_generated_gcloud_commands_parse(runner, tmp_path):
  argvs = []
  for sub, *flags in INVOCATIONS:
    for argv in runner.dry_run(TPU_SH, sub, *BASE, *flags):
      if argv[0] == 'gcloud':
        argvs.append(argv[1:])
  assert len(argvs) >= len(INVOCATIONS)
  # Negative controls: queued-resources takes --runtime-version, tpu-vm create takes --version.
  bad = [
    [
      'compute',
      'tpus',
      'tpu-vm',
      'create',
      'vitc4',
      '--zone=z',
      '--accelerator-type=v4-8',
      '--runtime-version=tpu-ubuntu2204-base',
    ],
    [
      'compute',
      'tpus',
      'queued-resources',
      'create',
      'vitc4',
      '--node-id=vitc4',
      '--zone=z',
      '--accelerator-type=v4-8',
      '--version=tpu-ubuntu2204-base',
    ],
  ]
  results = parse(argvs + bad, tmp_path)
  assert len(results) == len(argvs) + len(bad)
  for argv, result in zip(argvs, results):
    assert result['ok'], (argv, result)
    assert result['command'] == 'gcloud.' + '.'.join(argv[:4]), (argv, result)
  for argv, result in zip(bad, results[len(argvs) :]):
    assert not result['ok'] and 'unrecognized arguments' in result['error'], (argv, result)
