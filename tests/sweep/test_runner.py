"""The sweep runner with the real trainer on tiny models (tests/train/tiny.py): a rerun keeps the
finished trials and resumes a killed one from its checkpoints, a diverged trial is a result and
the sweep goes on, and groups go to grouped.train_group when asked or when it pays."""

import json
import os
import signal
import sys
import types

import numpy as np
import pytest
import tiny

from vit_jax_stems import data
from vit_jax_stems.sweep import runner, space, trials
from vit_jax_stems.train import trainer

STEPS = 3


def _base():
  c = tiny.tiny_config('vitc', steps=STEPS)
  c.num_devices = 1
  return {'adamw': c}


def _trials(n, base, **kwargs):
  spaces = {name: space.default_space(c) for name, c in base.items()}
  args = dict(models=None, epochs=None, n_trials=n, spaces=spaces, sweep_seed=0, group_size=8)
  return trials.make_trials(base_configs=base, **dict(args, **kwargs))


@pytest.fixture
def trainer_calls(monkeypatch):
  """The trial ids the trainer is called for, and the start step of each call's input stream."""
  calls, starts = [], []
  real_train, real_iterator = trainer.train_and_evaluate, data.make_train_iterator

  def train(config, workdir):
    calls.append(os.path.basename(workdir))
    return real_train(config, workdir)

  def iterator(*args, start_step=0, **kwargs):
    starts.append(start_step)
    return real_iterator(*args, start_step=start_step, **kwargs)

  monkeypatch.setattr(trainer, 'train_and_evaluate', train)
  monkeypatch.setattr(data, 'make_train_iterator', iterator)
  return calls, starts


def _preempt_at_batch(monkeypatch, at_batch):
  """SIGTERM (a preemption notice) while the next trainer run reads batch `at_batch`."""
  real = data.make_train_iterator

  def make(*args, **kwargs):
    it = real(*args, **kwargs)

    def batches():
      for i, batch in enumerate(it):
        if i == at_batch:
          os.kill(os.getpid(), signal.SIGTERM)
        yield batch

    return batches()

  monkeypatch.setattr(data, 'make_train_iterator', make)


def _mtimes(workdir):
  return {p.parent.name: p.stat().st_mtime_ns for p in (workdir / 'trials').glob('*/result.json')}


def test_a_rerun_keeps_finished_trials_and_resumes_a_killed_one(
  tmp_path, trainer_calls, monkeypatch
):
  calls, starts = trainer_calls
  base = _base()
  rows = runner.run(_trials(2, base), base, tmp_path, execution='sequential')
  assert calls == ['vit_c_1gf-adamw-s3-t000', 'vit_c_1gf-adamw-s3-t001']
  assert [r['index'] for r in rows] == [0, 1] and not any(r['diverged'] for r in rows)
  first_two = _mtimes(tmp_path)

  # --trials 3: the third trial is preempted at its second step; the first two are not rerun
  with monkeypatch.context() as m:
    _preempt_at_batch(m, 1)
    with pytest.raises(runner.SweepStopped, match='t002 preempted at step 2'):
      runner.run(_trials(3, base), base, tmp_path, execution='sequential')
  third = tmp_path / 'trials' / 'vit_c_1gf-adamw-s3-t002'
  assert calls[2:] == [third.name] and not (third / 'result.json').exists()
  assert tiny.checkpoint_state(third)['step'] == 2

  # the rerun trains only the third, from its checkpoint of step 2
  starts.clear()
  rows = runner.run(_trials(3, base), base, tmp_path, execution='sequential')
  assert calls[3:] == [third.name] and starts == [2]
  assert [r['trial_id'] for r in rows] == [f'vit_c_1gf-adamw-s3-t00{i}' for i in range(3)]
  assert rows[2]['steps'] == STEPS and rows[2]['execution'] == 'sequential'
  mtimes = _mtimes(tmp_path)
  assert {k: mtimes[k] for k in first_two} == first_two

  # killed after its last step but before its result: the trainer resumes at the end, trains no
  # step, evaluates again and the result is the same
  result = json.loads((third / 'result.json').read_text())
  (third / 'result.json').unlink()
  starts.clear()
  rows = runner.run(_trials(3, base), base, tmp_path, execution='sequential')
  assert calls[4:] == [third.name] and starts == [STEPS]
  again = json.loads((third / 'result.json').read_text())
  assert {k: again[k] for k in again if k != 'wall_s'} == {
    k: result[k] for k in result if k != 'wall_s'
  }
  lines = (tmp_path / 'trials.jsonl').read_text().splitlines()
  assert [json.loads(line)['trial_id'] for line in lines] == [r['trial_id'] for r in rows]


def test_a_result_holds_the_recipes_errors_and_the_best_over_evaluations(tmp_path):
  base = _base()
  base['adamw'].eval_every_steps = 1
  (trial,) = _trials(1, base)
  (row,) = runner.run([trial], base, tmp_path, execution='sequential')
  assert {k: row[k] for k in trial} == trial
  evals = [
    r
    for r in map(json.loads, open(tmp_path / 'trials' / trial['trial_id'] / 'metrics.jsonl'))
    if 'eval/ema_top1' in r
  ]
  assert [r['step'] for r in evals] == [1, 2, 3]
  ema = [100 * (1 - r['eval/ema_top1']) for r in evals]  # config.ema.enabled: EMA is evaluated
  assert row['final_error'] == pytest.approx(ema[-1]) == pytest.approx(row['final_error_ema'])
  assert row['best_error'] == pytest.approx(min(ema))
  assert row['final_error_raw'] == pytest.approx(100 * (1 - evals[-1]['eval/params_top1']))
  assert (row['diverged'], row['steps'], row['execution']) == (False, STEPS, 'sequential')
  assert row['wall_s'] > 0


def test_a_diverged_trial_is_a_result_at_100_percent_and_the_sweep_goes_on(
  tmp_path, trainer_calls, capsys
):
  calls, _ = trainer_calls
  base = _base()
  diverging, fine = _trials(2, base)
  diverging['overrides'] = dict(diverging['overrides'], **{'optimizer.lr': 1e30})
  rows = runner.run([diverging, fine], base, tmp_path, execution='sequential')
  assert [r['diverged'] for r in rows] == [True, False]
  bad = rows[0]
  assert (bad['final_error'], bad['best_error'], bad['final_error_raw']) == (100.0,) * 3
  assert bad['final_error_ema'] == 100.0 and 1 <= bad['steps'] <= STEPS
  assert np.isfinite(rows[1]['final_error']) and rows[1]['final_error'] < 100.0
  lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith('trial ')]
  assert lines[0].startswith(
    f'trial 1/2 {diverging["trial_id"]} (optimizer.lr=1e+30, optimizer.weight_decay='
  )
  assert f'diverged at step {bad["steps"]} (error 100%) in ' in lines[0]
  assert f'error {rows[1]["final_error"]:.2f}% (best ' in lines[1]
  assert lines[0].split(' | ')[1].startswith('sweep ETA 0h') and lines[1].endswith('ETA 0h00m00s')
  # kept as a result: a rerun trains neither again
  rows = runner.run([diverging, fine], base, tmp_path, execution='sequential')
  assert len(calls) == 2 and [r['diverged'] for r in rows] == [True, False]


def _fake_grouped(monkeypatch, pays):
  """A stand-in for vit_jax_stems.sweep.grouped (the vmapped groups) recording its calls."""
  module = types.ModuleType('vit_jax_stems.sweep.grouped')
  module.calls, module.asked = [], []

  def train_group(config, members, workdir):
    module.calls.append((config.model_name, [t['trial_id'] for t in members], workdir))
    return [
      dict(
        final_error=10.0 + t['index'],
        best_error=9.0,
        final_error_raw=11.0,
        final_error_ema=10.0 + t['index'],
        diverged=False,
        steps=STEPS,
        wall_s=1.0,
      )
      for t in members
    ]

  def grouped_pays(config, k, cache_path=None):
    assert cache_path.endswith('grouped_pays.json')
    module.asked.append((config.model_name, k))
    return pays

  module.train_group, module.grouped_pays = train_group, grouped_pays
  module.Preempted = type('Preempted', (Exception,), {})
  monkeypatch.setitem(sys.modules, 'vit_jax_stems.sweep.grouped', module)
  return module


def _fake_trainer(monkeypatch):
  """A trainer that only writes a final evaluation (the dispatch tests train nothing)."""
  calls = []

  def train(config, workdir):
    calls.append(os.path.basename(workdir))
    os.makedirs(workdir, exist_ok=True)
    row = {'step': STEPS, 'eval/params_top1': 0.5, 'eval/ema_top1': 0.25}
    with open(os.path.join(workdir, 'metrics.jsonl'), 'w') as f:
      f.write(json.dumps(row) + '\n')
    return {'train': {}, 'eval': row, 'stopped': None}

  monkeypatch.setattr(trainer, 'train_and_evaluate', train)
  return calls


@pytest.mark.parametrize('execution,pays', [('grouped', None), ('auto', True)])
def test_groups_train_as_one_program_when_asked_or_when_it_pays(
  tmp_path, monkeypatch, execution, pays
):
  grouped, alone = _fake_grouped(monkeypatch, pays), _fake_trainer(monkeypatch)
  base = _base()
  trial_list = _trials(5, base, group_size=2)
  rows = runner.run(trial_list, base, tmp_path, execution=execution)
  assert alone == ([] if execution == 'grouped' else ['vit_c_1gf-adamw-s3-t004'])  # a group of 1
  groups = tmp_path / 'groups'
  want = [
    (
      'vit_c_1gf',
      ['vit_c_1gf-adamw-s3-t000', 'vit_c_1gf-adamw-s3-t001'],
      str(groups / 'vit_c_1gf-adamw-s3-g00'),
    ),
    (
      'vit_c_1gf',
      ['vit_c_1gf-adamw-s3-t002', 'vit_c_1gf-adamw-s3-t003'],
      str(groups / 'vit_c_1gf-adamw-s3-g01'),
    ),
  ]
  if execution == 'grouped':  # a group of one trial too, when grouped is asked for
    want.append(('vit_c_1gf', ['vit_c_1gf-adamw-s3-t004'], str(groups / 'vit_c_1gf-adamw-s3-g02')))
  assert grouped.calls == want
  assert grouped.asked == ([('vit_c_1gf', 2)] if execution == 'auto' else [])  # asked once
  assert [r['execution'] for r in rows[:4]] == ['grouped'] * 4
  assert [r['final_error'] for r in rows[:4]] == [10.0, 11.0, 12.0, 13.0]
  assert {k: rows[1][k] for k in trial_list[1]} == trial_list[1]


def test_auto_trains_alone_where_grouping_does_not_pay(tmp_path, monkeypatch):
  grouped, alone = _fake_grouped(monkeypatch, False), _fake_trainer(monkeypatch)
  base = _base()
  rows = runner.run(_trials(3, base, group_size=2), base, tmp_path, execution='auto')
  assert grouped.calls == [] and len(alone) == 3
  assert [r['execution'] for r in rows] == ['sequential'] * 3
  assert rows[0]['final_error'] == 75.0 and rows[0]['final_error_raw'] == 50.0  # EMA: recipe


def test_trials_added_to_a_finished_group_train_apart_from_its_checkpoints(tmp_path, monkeypatch):
  grouped = _fake_grouped(monkeypatch, True)
  base = _base()
  runner.run(_trials(1, base, group_size=4), base, tmp_path, execution='grouped')
  runner.run(_trials(3, base, group_size=4), base, tmp_path, execution='grouped')
  directory = tmp_path / 'groups' / 'vit_c_1gf-adamw-s3-g00'
  assert [(ids, w) for _, ids, w in grouped.calls] == [
    (['vit_c_1gf-adamw-s3-t000'], str(directory)),
    (['vit_c_1gf-adamw-s3-t001', 'vit_c_1gf-adamw-s3-t002'], str(directory / 'rest-t001')),
  ]
