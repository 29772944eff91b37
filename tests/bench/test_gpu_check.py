"""benchmarks/gpu_check.sh end to end in its dry mode: every part of the GPU check runs on CPU
with tiny models, in a Python where TensorFlow, TFDS and clu cannot be imported (as on a GPU
image), and its one JSON and one Markdown page hold every part's figures.

The dry parts use the suite's persistent compilation cache (tests/conftest.py; several parts
compile the same tiny programs): their compile-time figures then mean nothing, which a dry run
does not need.
"""

import glob
import json
import os
import subprocess
import sys

import jax
import pytest

from vit_jax_stems.bench import gpu_check, timm_peer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOT_ON_GPU_IMAGE = ('tensorflow', 'tensorflow_datasets', 'clu')

# Run at start-up of every Python of the check (parts and peers inherit PYTHONPATH): a module in
# sys.modules as None cannot be imported and importlib.util.find_spec reports it absent, as an
# uninstalled one.
SITECUSTOMIZE = f"""
import sys
for name in {NOT_ON_GPU_IMAGE!r}:
  sys.modules[name] = None
"""


@pytest.fixture(scope='module')
def dry_run(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('gpu_check')
  (tmp / 'site').mkdir()
  (tmp / 'site' / 'sitecustomize.py').write_text(SITECUSTOMIZE)
  env = dict(
    os.environ,
    PYTHON=sys.executable,
    PYTHONPATH=str(tmp / 'site'),
    JAX_PLATFORMS='cpu',
    XLA_FLAGS='--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true',
    JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir,
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0.5',
  )
  proc = subprocess.run(
    ['bash', 'benchmarks/gpu_check.sh', '--dry', '--results_dir', str(tmp / 'results')],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  (folder,) = glob.glob(str(tmp / 'results' / 'gpu_check_dry_*_cpu'))
  with open(os.path.join(folder, 'gpu_check.json')) as f:
    doc = json.load(f)
  with open(os.path.join(folder, 'gpu_check.md')) as f:
    page = f.read()
  return doc, page, proc.stdout


@pytest.mark.skipif(not timm_peer.available(), reason='torch/timm not installed')
def test_every_part_runs_without_tensorflow_and_lands_in_one_json_and_page(dry_run):
  doc, page, stdout = dry_run
  names = [p.name for p in gpu_check.parts(dry=True)]
  assert list(doc['parts']) == names
  for name, record in doc['parts'].items():
    assert record['status'] == 'ok', (name, record)
    assert doc['results'][name], name
    assert f'[{name}] ok in ' in stdout  # each part's seconds, with the running total
  table = doc['results']['table']
  assert {r['role'] for r in table['cases']} == {'model', 'twin', 'explicit', 'plain'}
  peers = doc['results']['peers']['peers']  # one per model and twin, paired by case label
  assert set(peers) == {r['case'] for r in table['cases'] if r['role'] in ('model', 'twin')}
  assert all('error' not in p for p in peers.values()), peers
  kinds = {c['kind'] for c in doc['comparisons']}
  assert kinds == {
    'ours/peer',
    'conv/patchify step time at equal GF',
    'fast/explicit GPSA',
    'GPSA/plain step time',
  }
  assert {r['case'] for r in doc['attention']} == {'vit_c_1gf', 'convit_ti'}
  assert {r['attention'] for r in doc['results']['attention']['cases']} == {'xla'}
  assert {r['case'] for r in doc['scan']} == {'vit_c_1gf', 'convit_ti'}
  assert [r['k'] for r in doc['results']['sweep']['rows']] == [1, 2]
  for heading in ('## Models', '## Ratios and goals', '## Attention', '## K trials'):
    assert heading in page
  assert '## Scanned against unrolled' in page
  assert f'of the {gpu_check.BUDGET_S} s budget' in page


def test_parts_in_dry_mode_are_the_gpu_parts_at_cpu_size():
  """The dry run checks the GPU commands: the same parts with the same flags, only smaller."""
  real, dry = gpu_check.parts(dry=False), gpu_check.parts(dry=True)
  assert [p.name for p in real] == [p.name for p in dry]
  assert sum(p.timeout_s for p in real) <= gpu_check.BUDGET_S
  for r, d in zip(real, dry):
    assert r.argv[0] == d.argv[0]
    real_flags = {a for a in r.argv if a.startswith('--')} - {'--peer_no_compile'}
    dry_flags = {a.split('=')[0] for a in d.argv if a.startswith('--')}
    assert real_flags <= dry_flags
  table, peers = real[0].argv, real[-1].argv
  assert table[table.index('--models') + 1] == gpu_check.GPU_MODELS
  assert table[table.index('--batch_size') + 1] == '256'
  assert table[table.index('--dtype') + 1] == 'bfloat16'
  assert peers[: len(table)] == table  # the peers of exactly the table's cases
  assert '--peer_no_compile' not in peers  # the GPU peer runs under torch.compile


def test_unknown_part_or_limit_is_refused_before_anything_runs(capsys):
  with pytest.raises(SystemExit):
    gpu_check.parse_args(['--parts', 'table,tabel'])
  assert 'unknown tabel' in capsys.readouterr().err
  with pytest.raises(SystemExit):
    gpu_check.parse_args(['--limits', 'table=5m'])
  assert "'table=5m': write PART=SECONDS" in capsys.readouterr().err
  assert gpu_check.parse_args(['--limits', 'table=300']).limit_of == {'table': 300.0}


def test_sweep_bench_without_tensorflow_names_num_classes(tmp_path):
  """Without TensorFlow the dataset cannot be read: one line that says what to pass instead."""
  (tmp_path / 'sitecustomize.py').write_text(SITECUSTOMIZE)
  proc = subprocess.run(
    [sys.executable, '-m', 'vit_jax_stems.sweep.bench', '--config', 'configs/vitc.py:demo'],
    cwd=ROOT,
    env=dict(os.environ, PYTHONPATH=str(tmp_path), JAX_PLATFORMS='cpu'),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1] == (
    "ERROR: reading config.data.name='mnist5k' needs tensorflow_datasets; pass "
    '--num_classes=N to time synthetic batches.'
  )


def test_a_rerun_of_some_parts_keeps_the_others_results(tmp_path, monkeypatch):
  """`--parts sweep` into the same folder (same day and device) redoes the sweep only."""
  runs = []

  def fake_run(part, parts_dir, timeout_s):
    runs.append(part.name)
    with open(os.path.join(parts_dir, part.json), 'w') as f:
      json.dump({'cases': [], 'rows': [], 'peers': {}, 'run': len(runs)}, f)
    return dict(
      gpu_check.skipped(part, 'never'),
      status='ok',
      seconds=float(len(runs)),
      json=f'parts/{part.json}',
    )

  monkeypatch.setattr(gpu_check, 'probe_device', lambda: {'platform': 'cpu', 'device_kind': 'cpu'})
  monkeypatch.setattr(gpu_check, 'run_part', fake_run)
  monkeypatch.setattr(gpu_check, 'markdown', lambda doc: '')
  args = ['--dry', '--results_dir', str(tmp_path)]
  folder = gpu_check.main(args)
  first = json.load(open(os.path.join(folder, 'gpu_check.json')))
  assert gpu_check.main([*args, '--parts', 'sweep']) == folder
  again = json.load(open(os.path.join(folder, 'gpu_check.json')))
  assert runs == [p.name for p in gpu_check.parts(dry=True)] + ['sweep']
  assert again['parts']['table'] == first['parts']['table']
  assert again['results']['table'] == first['results']['table']
  assert again['results']['sweep']['run'] == len(runs) != first['results']['sweep']['run']
