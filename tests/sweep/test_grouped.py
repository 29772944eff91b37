"""Trials trained together in one vmapped program (vit_jax_stems/sweep/grouped.py) end as the
same trials trained alone by the trainer; a diverged trial is frozen and reported; a killed group
resumes exactly; the grouped-or-sequential measurement is cached.

Tolerance (float32, tiny ViT_C on mnist5k, 6 AdamW steps, precise BN and EMA on): every step's
loss within rtol 1e-5 (measured: equal to 1e-7); parameters, BatchNorm statistics, EMA and the
Adam moments within rtol 1e-3 + atol 1e-4 (measured: at most 3e-5 apart, 1% of one update at
lr 5e-3); eval counts exact and top-1 / top-5 within one example of 1,000 (measured: equal).
Why not bit-exact: the forward pass is (the vmapped logits equal the lone ones bit for bit), but
a dense layer's weight gradient contracts over (examples, tokens), and with the trial axis added
XLA runs that contraction as a batched dot that sums in another order (1 ulp apart; a trial
axis of size 1 differs the same way); Adam's normalisation then carries ulps of tiny gradients
into the weights. The optimizer with the per-trial lr and weight decay in its state is
bit-identical to the trainer's (tested below), so the vmap is the only difference.
"""

import json
import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

sys.path.insert(
  0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'train')
)
import tiny

from vit_jax_stems import data
from vit_jax_stems.sweep import bench, grouped
from vit_jax_stems.train import config_checks, metrics, run_setup, trainer
from vit_jax_stems.train import optimizer as optimizer_lib

STEPS = 6
RTOL, ATOL = 1e-3, 1e-4
LOSS_RTOL = 1e-5
# (lr, weight decay) per trial: the base point and two others a sweep could sample.
HPARAMS = ((2e-3, 0.05), (5e-3, 0.5), (1e-3, 0.01))
DIVERGING_LR = 1e8  # the loss reaches 1e8 at step 2 and NaN at step 3


def _base():
  c = tiny.tiny_config('vitc', steps=STEPS)
  c.num_devices = 1
  c.log_every_steps = 1
  c.precise_bn_samples = 32  # pycls precise BN before each eval, as tests/train/test_train.py
  c.eval_every_steps = 4
  return c


def _trial(i, lr, wd):
  return {
    'trial_id': f't{i}',
    'index': i,
    'model': 'vit_c_1gf',
    'optimizer': 'adamw',
    'epochs': None,
    'overrides': {'optimizer.lr': lr, 'optimizer.weight_decay': wd},
    'group': 'vit_c_1gf-adamw-g00',
  }


TRIALS = [_trial(i, lr, wd) for i, (lr, wd) in enumerate(HPARAMS)]


def _lone(trial, workdir, **changes):
  c = grouped.trial_config(_base(), trial['overrides'])
  for k, v in changes.items():
    setattr(c, k, v)
  return trainer.train_and_evaluate(c, str(workdir))


@pytest.fixture(scope='module')
def lone_runs(tmp_path_factory):
  """Each trial trained alone by the trainer: [(workdir, last metrics)]."""
  runs = []
  for trial in TRIALS:
    workdir = tmp_path_factory.mktemp(f'lone_{trial["trial_id"]}')
    runs.append((workdir, _lone(trial, workdir)))
  return runs


@pytest.fixture(scope='module')
def group_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('group')
  return workdir, grouped.train_group(_base(), TRIALS, str(workdir))


def _leaves(tree):
  return jax.tree_util.tree_leaves_with_path(tree)


def _trial_of(group_workdir, i):
  return jax.tree_util.tree_map(lambda x: x[i], tiny.checkpoint_state(group_workdir)['trials'])


def _assert_same_weights(got, want, *, of_leaf_max=0.0):
  """Parameters, BN statistics, EMA and optimizer moments of a grouped trial vs its lone run;
  `of_leaf_max` widens atol by that fraction of each leaf's largest magnitude."""

  def close(a, b, what):
    atol = ATOL + of_leaf_max * float(np.max(np.abs(b), initial=0.0))
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=atol, err_msg=what)

  for name in ('params', 'batch_stats', 'ema'):
    for (path, a), (_, b) in zip(_leaves(got[name]), _leaves(want[name]), strict=True):
      close(a, b, f'{name}{jax.tree_util.keystr(path)}')
  # The group's optimizer state is the trainer's inside optax.inject_hyperparams (a dict once
  # read back from the checkpoint without a target).
  inner = _leaves(got['opt_state']['inner_state'])
  for (path, a), (_, b) in zip(inner, _leaves(want['opt_state']), strict=True):
    close(a, b, f'opt_state{jax.tree_util.keystr(path)}')
  assert got['step'] == want['step']


def _losses(workdir, i=None):
  rows = metrics.read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  return [r['train/loss'] if i is None else r['train/loss'][i] for r in rows if 'train/loss' in r]


def _assert_matches_lone(result, group_workdir, i, lone):
  lone_dir, lone_out = lone
  _assert_same_weights(_trial_of(group_workdir, i), tiny.checkpoint_state(lone_dir))
  np.testing.assert_allclose(_losses(group_workdir, i), _losses(lone_dir), rtol=LOSS_RTOL)
  rows = metrics.read_jsonl(os.path.join(group_workdir, 'metrics.jsonl'))
  final = [r for r in rows if 'eval_count' in r][-1]
  assert final['eval_count'] == lone_out['eval']['eval_count'] == 1000
  for key in ('params_top1', 'params_top5', 'ema_top1', 'ema_top5'):
    assert final[f'eval/{key}'][i] == pytest.approx(lone_out['eval'][key], abs=1e-3)
  assert result['final_error_raw'] == pytest.approx(
    100 * (1 - lone_out['eval']['params_top1']), abs=0.1
  )
  assert result['final_error'] == result['final_error_ema']  # the recipe evaluates the EMA
  assert result['final_error_ema'] == pytest.approx(
    100 * (1 - lone_out['eval']['ema_top1']), abs=0.1
  )
  assert not result['diverged']
  assert result['steps'] == STEPS


def test_each_trial_of_a_group_ends_as_it_does_alone(group_run, lone_runs):
  workdir, results = group_run
  assert [r['trial_id'] for r in results] == ['t0', 't1', 't2']
  for i, (result, lone) in enumerate(zip(results, lone_runs)):
    _assert_matches_lone(result, workdir, i, lone)
    assert result['execution'] == 'grouped'
    assert result['overrides'] == TRIALS[i]['overrides']
    # best_error: the lowest EMA error of the evaluations at step 4 and at the end
    evals = [r for r in metrics.read_jsonl(workdir / 'metrics.jsonl') if 'eval_count' in r]
    assert [r['step'] for r in evals] == [4, STEPS]
    assert result['best_error'] == pytest.approx(
      min(100 * (1 - r['eval/ema_top1'][i]) for r in evals)
    )
  # Negative control: the per-trial lr and weight decay act (trial 1 is far from trial 0 alone).
  far = _trial_of(workdir, 1)['params']['head']['kernel']
  near = tiny.checkpoint_state(lone_runs[0][0])['params']['head']['kernel']
  assert not np.allclose(far, near, rtol=RTOL, atol=ATOL)
  # One input pipeline: every trial's first loss is ln(10) on the same batch (zero-init head).
  assert np.ptp(_losses(workdir)[0]) == 0


def test_a_diverged_trial_is_frozen_and_reported_while_its_siblings_match(lone_runs, tmp_path):
  bad = _trial(1, DIVERGING_LR, 0.05)
  with pytest.raises(trainer.NonFiniteLossError, match='at step 3'):
    _lone(bad, tmp_path / 'lone_bad', checkpoint_every_steps=1)
  trials = [TRIALS[0], bad, TRIALS[2]]
  results = grouped.train_group(_base(), trials, str(tmp_path / 'group'))
  assert results[1]['diverged']
  assert results[1]['final_error'] == results[1]['best_error'] == 100.0
  assert results[1]['steps'] == 2  # the good steps before the non-finite one
  # Frozen at the state its lone run last saved before the non-finite step. After two steps at
  # lr 1e8 the weights are up to 1e6 and cancellations leave entries like 258 +- 0.3 (a few ulps of
  # the leaf's scale); hence 1e-5 of each leaf's largest magnitude on top of the tolerance.
  _assert_same_weights(
    _trial_of(tmp_path / 'group', 1),
    tiny.checkpoint_state(tmp_path / 'lone_bad', step=2),
    of_leaf_max=1e-5,
  )
  rows = metrics.read_jsonl(tmp_path / 'group' / 'metrics.jsonl')
  assert [r['alive'] for r in rows if 'alive' in r][1:3] == [
    [True, True, True],
    [True, False, True],
  ]
  assert all(r['train/loss'][1] is None for r in rows[2:] if 'train/loss' in r)
  for i in (0, 2):
    _assert_matches_lone(results[i], tmp_path / 'group', i, lone_runs[i])


def test_a_killed_group_resumes_to_the_same_end_state(group_run, tmp_path, monkeypatch):
  ref_dir, ref = group_run
  real = data.make_train_iterator

  def sigterm_at_third_batch(*args, **kwargs):
    def gen():
      for i, batch in enumerate(real(*args, **kwargs)):
        if i == 2:
          os.kill(os.getpid(), signal.SIGTERM)
        yield batch

    return gen()

  monkeypatch.setattr(data, 'make_train_iterator', sigterm_at_third_batch)
  with pytest.raises(grouped.Preempted, match='at step 3'):
    grouped.train_group(_base(), TRIALS, str(tmp_path))
  assert tiny.checkpoint_state(tmp_path)['step'] == 3
  monkeypatch.undo()
  results = grouped.train_group(_base(), TRIALS, str(tmp_path))
  for got, want in zip(results, ref, strict=True):
    assert {k: v for k, v in got.items() if k != 'wall_s'} == {
      k: v for k, v in want.items() if k != 'wall_s'
    }
  for (path, a), (_, b) in zip(
    _leaves(tiny.checkpoint_state(tmp_path)), _leaves(tiny.checkpoint_state(ref_dir)), strict=True
  ):
    np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
  assert _losses(tmp_path) == _losses(ref_dir)  # every step, before and after the restart


def test_another_group_in_the_same_workdir_stops_before_training(group_run):
  workdir, _ = group_run
  other = [_trial(9, 1e-3, 0.1)]
  with pytest.raises(grouped.checkpointing.CheckpointError, match='another group of trials'):
    grouped.train_group(_base(), other, str(workdir))


def test_trials_that_differ_beyond_lr_wd_and_seed_are_refused(tmp_path):
  other = dict(_trial(1, 1e-3, 0.1), overrides={'optimizer.b1': 0.8})
  with pytest.raises(config_checks.ConfigError, match=r'config\.optimizer\.b1 \(0\.9 vs 0\.8\)'):
    grouped.train_group(_base(), [TRIALS[0], other], str(tmp_path))
  with pytest.raises(config_checks.ConfigError, match=r'config\.optimizer\.lrr is not a config'):
    grouped.trial_config(_base(), {'optimizer.lrr': 1.0})
  assert not os.listdir(tmp_path)  # refused before anything was written


def test_grouped_pays_measures_once_and_caches_the_answer(tmp_path, monkeypatch):
  cache = tmp_path / 'grouped_pays.json'
  answer = grouped.grouped_pays(_base(), 2, str(cache), num_steps=1)
  (entry,) = json.loads(cache.read_text()).values()
  assert entry['grouped_pays'] is answer
  assert entry['grouped'] > 0 and entry['sequential'] > 0 and entry['k'] == 2
  assert answer == (entry['grouped'] > entry['sequential'])

  def no_measuring(*args, **kwargs):
    raise AssertionError('measured again')

  monkeypatch.setattr(bench, 'measure', no_measuring)
  assert grouped.grouped_pays(_base(), 2, str(cache)) is answer
  with pytest.raises(AssertionError, match='measured again'):  # another K is another question
    grouped.grouped_pays(_base(), 3, str(cache))


def _bench(*args):
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  command = [sys.executable, '-m', 'vit_jax_stems.sweep.bench', '--config', 'configs/vitc.py:demo']
  return subprocess.run(
    command + list(args), cwd=root, capture_output=True, text=True, timeout=600, check=False
  )


def test_bench_cli_prints_the_table_and_writes_every_window(tmp_path):
  out = _bench(
    *('--config.model.hidden_size=16', '--config.model.num_heads=4', '--config.model.mlp_dim=32'),
    *('--config.model.depth=1', '--config.model.stem_channels=(8,8,16)', '--config.batch_size=8'),
    *('--ks', '1,2', '--steps', '1', '--repeats', '2', '--json', str(tmp_path / 'b.json')),
  )
  assert out.returncode == 0, out.stderr[-2000:]
  lines = out.stdout.splitlines()
  assert lines[-4].startswith('| K | vmapped trial-steps/s | sequential trial-steps/s |')
  assert [line.split(' | ')[0] for line in lines[-2:]] == ['| 1', '| 2']
  record = json.loads((tmp_path / 'b.json').read_text())
  assert [r['k'] for r in record['rows']] == [1, 2]
  windows = ('grouped', 'sequential', 'interleaved')
  assert all(len(r[f'{w}_window_s']) == 2 for r in record['rows'] for w in windows)
  assert record['config']['model']['depth'] == 1


def test_bench_cli_refuses_a_bad_config_in_one_line():
  out = _bench('--config.model.hidden_size=16', '--ks', '1')
  assert out.returncode == 1
  assert out.stderr.strip().splitlines()[-1].startswith('ERROR: ')
  assert 'stem_channels' in out.stderr and 'Traceback' not in out.stderr


def test_bench_table_divides_by_one_trial_alone():
  rows = [
    {'k': 1, 'grouped': 9.0, 'sequential': 10.0},
    {'k': 8, 'grouped': 50.0, 'sequential': 10.0},
  ]
  lines = bench.table(rows).splitlines()
  assert lines[2] == '| 1 | 9.00 | 10.00 | 0.90x | 0.90x |'
  assert lines[3] == '| 8 | 50.00 | 10.00 | 5.00x | 5.00x |'
  rows = [dict(r, sequential=s, interleaved=i) for r, s, i in zip(rows, (10.0, 8.0), (11.0, 20.0))]
  lines = bench.table(rows).splitlines()
  assert lines[3] == '| 8 | 50.00 | 8.00 | 6.25x | 5.00x | 20.00 |'  # alone: K=1 sequential


@pytest.mark.parametrize('name', ['adamw', 'sgd'])
def test_the_injected_optimizer_is_the_trainers_bit_for_bit(name):
  import jax.numpy as jnp

  c = _base()
  c.optimizer.update(dict(name=name, lr=0.3, weight_decay=0.1, grad_clip_norm=1.0, accum_steps=2))
  plan = run_setup.make_plan(c, 5000)
  plain = optimizer_lib.make_optimizer(c.optimizer, run_setup.lr_schedule_of(c, plan, 0.3))
  injected = optimizer_lib.make_injected_optimizer(
    c.optimizer, lambda peak: run_setup.lr_schedule_of(c, plan, peak), peak_lr=0.3
  )
  keys = jax.random.split(jax.random.PRNGKey(0), 7)
  params = {'dense': {'kernel': jax.random.normal(keys[0], (4, 3)), 'bias': jnp.ones(3)}}

  def run(tx, state):
    p = params
    for key in keys[1:]:
      grads = jax.tree_util.tree_map(lambda x, k=key: jax.random.normal(k, x.shape), p)
      updates, state = jax.jit(tx.update)(grads, state, p)
      p = jax.tree_util.tree_map(jnp.add, p, updates)
    return p

  want = run(plain, plain.init(params))
  state = injected.init(params)
  for a, b in zip(jax.tree_util.tree_leaves(run(injected, state)), jax.tree_util.tree_leaves(want)):
    np.testing.assert_array_equal(a, b)
  # Negative control: the weight decay in the state is the one that acts.
  other = state._replace(hyperparams=dict(state.hyperparams, weight_decay=jnp.float32(0.5)))
  assert not np.array_equal(run(injected, other)['dense']['kernel'], want['dense']['kernel'])
