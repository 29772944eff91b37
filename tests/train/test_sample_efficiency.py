"""The sample-efficiency grid: the runs' durations, P2's gap arithmetic, and the real command
(a tiny ViT_C on two fractions of mnist5k): files written, finished runs skipped on a rerun,
a finished run of another config refused."""

import json
import os
import subprocess
import sys

import pytest

from configs import vitc
from tests.train import tiny
from vit_jax_stems.sweep import sample_efficiency as se
from vit_jax_stems.train import ema, run_setup

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_every_fraction_trains_the_full_runs_updates_and_evaluates_at_its_steps():
  base = vitc.get_config('demo')  # 15 epochs of 4,000 // 128 = 31 steps; eval every 5 epochs
  base.lock()  # as --config gives it: no field may be added
  full = run_setup.make_plan(base, 4000)
  config = se.fraction_config(base, 'vit_p_1gf', 0.05, full, 200)
  assert (config.model_name, config.data.train_fraction) == ('vit_p_1gf', 0.05)
  plan = run_setup.make_plan(config, 200)  # 5% of 4,000: one step per epoch
  assert plan.total_updates == full.total_updates == 465  # not 15 / 0.05 = 300 epochs of 1 step
  assert (plan.eval_every, plan.checkpoint_every) == (full.eval_every, full.checkpoint_every)
  assert plan.warmup_updates == 1  # warmup stays 1 epoch of the subset, as P2's --warmup-epochs

  def ema_rate(c, p):
    return ema.ema_rate(alpha=c.ema.alpha, batch_size=128, total_epochs=p.total_epochs, period=1)

  assert ema_rate(config, plan) == pytest.approx(ema_rate(base, full))  # the same EMA horizon
  assert base.total_epochs == 15 and base.data.train_fraction == 1.0  # the base is not changed


def test_fractions_are_percentages():
  assert se.parse_fractions(['100', '5', '2.5', '5']) == [0.025, 0.05, 1.0]
  assert [se.run_name(f) for f in (0.025, 0.05, 1.0)] == ['f2.5', 'f5', 'f100']
  for bad in ('0', '101', 'ten'):
    with pytest.raises(se.GridError, match=f'--fractions=5,{bad}: .* in \\(0, 100\\]'):
      se.parse_fractions(['5', bad])


def _result(model, fraction, top1):
  return {'model': model, 'fraction': fraction, 'top1': top1, 'diverged': False}


def test_relative_gap_is_p2s():
  """P2 Table 2, DeiT-S vs ConViT-S: gaps 37 / 24 / 12 / 5 / 2% (docs/references.md; 11.5% at
  30% from the table's rounded top-1s)."""
  deit = dict(zip((0.05, 0.1, 0.3, 0.5, 1.0), (34.8, 48.0, 66.1, 74.6, 79.9)))
  convit = dict(zip((0.05, 0.1, 0.3, 0.5, 1.0), (47.8, 59.6, 73.7, 78.2, 81.4)))
  results = {
    'convit_s': {f: _result('convit_s', f, t) for f, t in convit.items()},
    'deit_s': {f: _result('deit_s', f, t) for f, t in deit.items()},
  }
  assert se.default_baseline(results) == 'deit_s'
  gaps = se.relative_gaps(results, 'deit_s')
  assert [gaps['convit_s'][f] for f in sorted(deit)] == pytest.approx(
    [37.36, 24.17, 11.50, 4.83, 1.88], abs=0.01
  )
  table = se.markdown_table(
    {
      m: {f: dict(r, dataset='imagenet2012', steps=1) for f, r in v.items()}
      for m, v in results.items()
    },
    gaps,
    'deit_s',
    sorted(deit),
  )
  assert '| convit_s | 47.8 | 59.6 | 73.7 | 78.2 | 81.4 |' in table
  assert '| convit_s vs deit_s | +37% | +24% | +11% | +5% | +2% |' in table


def _command(workdir, *extra):
  tiny_model = [  # tests/train/tiny.py's ViT_C, from the command line
    '--config.model.hidden_size=16',
    '--config.model.mlp_dim=32',
    '--config.model.depth=1',
    '--config.model.stem_channels=(4,8,16)',
  ]
  args = [
    sys.executable,
    '-m',
    'vit_jax_stems.sweep.sample_efficiency',
    f'--config={os.path.join(ROOT, "configs", "vitc.py")}:demo',
    '--fractions=50,100',
    f'--workdir={workdir}',
    '--config.num_devices=1',
    '--config.total_steps=2',
    '--config.batch_size=16',
    '--config.data.image_size=16',
    '--config.schedule.warmup_steps=1',
    *tiny_model,
    *extra,
  ]
  return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_the_command_trains_each_run_once_and_writes_table_plot_and_numbers(tmp_path):
  workdir = tmp_path / 'grid'
  first = _command(workdir)
  assert first.returncode == 0, first.stderr[-3000:]
  assert 'checkpoint_manager.py' not in first.stderr  # the libraries' INFO lines are filtered
  results = {
    f: json.loads((workdir / 'vit_c_1gf' / f / 'result.json').read_text()) for f in ('f50', 'f100')
  }
  assert results['f50']['fraction'] == 0.5 and results['f100']['fraction'] == 1.0
  assert results['f100']['train_examples'] == 4000
  assert 1900 < results['f50']['train_examples'] <= 2000  # floor(n_c / 2) per class
  assert results['f50']['steps'] == results['f100']['steps'] == 2
  assert results['f50']['top1'] == results['f50']['top1_ema']  # the demo evaluates its EMA
  summary = json.loads((workdir / 'sample_efficiency.json').read_text())
  assert set(summary['top1']['vit_c_1gf']) == {'f50', 'f100'}
  table = (workdir / 'sample_efficiency.md').read_text()
  assert '| model | 50% | 100% |' in table and '| vit_c_1gf |' in table
  assert (workdir / 'sample_efficiency.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'

  stamps = {f: os.stat(workdir / 'vit_c_1gf' / f / 'result.json').st_mtime_ns for f in results}
  again = _command(workdir)
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stdout.count('finished before') == 2 and 'steps in' not in again.stdout
  assert stamps == {
    f: os.stat(workdir / 'vit_c_1gf' / f / 'result.json').st_mtime_ns for f in results
  }

  other = _command(workdir, '--config.optimizer.lr=0.01')
  assert other.returncode == 1 and 'Traceback' not in other.stderr
  assert 'holds a run of another config' in other.stderr and 'config.json' in other.stderr


def test_a_run_older_than_the_transfer_fields_keeps_its_digest():
  """config.json of runs written before config.evals, eval_at_start and linear_probe existed
  lacks them; with their defaults such a run is still the same run (it resumes, not reruns)."""
  c = tiny.tiny_config('vitc')
  older = json.loads(c.to_json_best_effort())
  for key in ('evals', 'eval_at_start', 'linear_probe'):
    del older[key]
  assert se._digest(older) == se.config_digest(c)
  c.linear_probe = True
  assert se._digest(older) != se.config_digest(c)
