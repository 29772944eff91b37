"""The trial list: ids, groups and samples as a pure function of the sweep's arguments (adding
trials extends it), the configs of a trial and of its group, and DIR/sweep.json's guard."""

import json

import pytest

from configs import vitc
from vit_jax_stems.sweep import cli, space, submit, trials


def _bases():
  return {name: vitc.get_config(f'demo,optimizer={name}') for name in ('adamw', 'sgd')}


def _trials(n, bases=None, **kwargs):
  bases = bases or _bases()
  args = dict(models=['vit_c_1gf', 'vit_p_1gf'], epochs=[5.0, 15.0], sweep_seed=3, group_size=2)
  args.update(kwargs)
  spaces = {name: space.default_space(c) for name, c in bases.items()}
  return trials.make_trials(base_configs=bases, n_trials=n, spaces=spaces, **args)


def test_every_model_optimizer_and_epochs_gets_n_trials_with_stable_ids_and_groups():
  got = _trials(5)
  assert len(got) == 2 * 2 * 2 * 5
  assert len({t['trial_id'] for t in got}) == len(got)
  t = next(t for t in got if t['trial_id'] == 'vit_p_1gf-sgd-e15-t004')
  assert (t['model'], t['optimizer'], t['epochs'], t['index']) == ('vit_p_1gf', 'sgd', 15.0, 4)
  assert t['group'] == 'vit_p_1gf-sgd-e15-g02'  # index 4 // group_size 2
  assert set(t['overrides']) == {'optimizer.lr', 'optimizer.weight_decay'}
  groups = trials.by_group(got)
  assert all(len(members) <= 2 for members in groups.values())
  assert len(groups) == 2 * 2 * 2 * 3
  for members in groups.values():  # a group shares what one vmapped program needs
    assert len({(m['model'], m['optimizer'], m['epochs']) for m in members}) == 1


def test_trial_k_samples_the_same_relative_point_of_every_models_space():
  got = {t['trial_id']: t for t in _trials(4)}
  for k in range(4):
    c, p = got[f'vit_c_1gf-sgd-e5-t00{k}'], got[f'vit_p_1gf-sgd-e15-t00{k}']
    assert c['overrides'] == p['overrides']
  adamw, sgd = got['vit_c_1gf-adamw-e5-t001'], got['vit_c_1gf-sgd-e5-t001']
  # the same uniform numbers, each mapped into its optimizer's own range around its base point
  assert adamw['overrides']['optimizer.lr'] / 2e-3 == pytest.approx(
    sgd['overrides']['optimizer.lr'] / 0.12
  )


def test_adding_trials_extends_the_list_and_never_reshuffles_it():
  three, five = _trials(3), _trials(5)
  by_id = {t['trial_id']: t for t in five}
  assert all(by_id[t['trial_id']] == t for t in three)  # samples and groups unchanged
  assert len(five) - len(three) == 8 * 2


def test_the_default_duration_label_is_the_configs_own():
  bases = {'adamw': vitc.get_config('demo')}
  bases['adamw'].total_epochs, bases['adamw'].total_steps = None, 40
  got = _trials(1, bases, models=None, epochs=None)
  assert [t['trial_id'] for t in got] == ['vit_c_1gf-adamw-s40-t000']
  assert got[0]['epochs'] is None and got[0]['group'] == 'vit_c_1gf-adamw-s40-g00'


def test_a_trial_config_sets_the_model_the_epochs_and_the_samples_its_group_config_does_not():
  base = vitc.get_config('demo')
  base.total_epochs, base.total_steps = None, 40
  trial = _trials(1, {'adamw': base}, models=['vit_p_1gf'], epochs=[2.5])[0]
  group, alone = trials.group_config(base, trial), trials.trial_config(base, trial)
  for c in (group, alone):
    assert (c.model_name, c.total_epochs, c.total_steps) == ('vit_p_1gf', 2.5, None)
    assert c.model.to_dict() == base.model.to_dict()  # the demo's model sizes stay
  assert group.optimizer.lr == base.optimizer.lr == 2e-3
  assert alone.optimizer.lr == trial['overrides']['optimizer.lr'] != 2e-3
  assert alone.optimizer.weight_decay == trial['overrides']['optimizer.weight_decay']
  assert base.model_name == 'vit_c_1gf' and base.total_steps == 40  # the base is not changed


def test_a_dir_of_another_sweep_or_of_a_training_run_is_refused_and_more_trials_are_not(tmp_path):
  definition = {'config': 'configs/vitc.py:demo', 'sweep_seed': 0, 'trials': 2}
  got = _trials(2)
  assert trials.check_workdir(tmp_path, definition, got)
  trials.write_sweep_json(tmp_path, definition, got)
  assert not trials.check_workdir(tmp_path, definition, got)  # nothing to rewrite
  assert trials.check_workdir(tmp_path, dict(definition, trials=3), _trials(3))
  with pytest.raises(trials.SweepError, match=r'holds another sweep .* differs in sweep_seed'):
    trials.check_workdir(tmp_path, dict(definition, sweep_seed=1), got)
  recorded = json.loads((tmp_path / 'sweep.json').read_text())
  recorded['trials'][0]['overrides']['optimizer.lr'] = 1.0
  (tmp_path / 'sweep.json').write_text(json.dumps(recorded))
  with pytest.raises(trials.SweepError, match='recorded with other values'):
    trials.check_workdir(tmp_path, definition, got)
  (tmp_path / 'run' / 'checkpoints').mkdir(parents=True)
  with pytest.raises(trials.SweepError, match=r'holds a training run \(checkpoints/\)'):
    trials.check_workdir(tmp_path / 'run', definition, got)


def test_with_option_adds_or_replaces_one_config_option():
  assert cli.with_option('configs/vitc.py', 'optimizer', 'sgd') == 'configs/vitc.py:optimizer=sgd'
  assert cli.with_option('configs/vitc.py:demo', 'optimizer', 'sgd') == (
    'configs/vitc.py:demo,optimizer=sgd'
  )
  assert cli.with_option('c.py:size=4gf,optimizer=adamw,tuned', 'optimizer', 'sgd') == (
    'c.py:size=4gf,tuned,optimizer=sgd'
  )


def test_jobs_get_the_sweeps_arguments_without_how_and_where_this_run_goes():
  argv = [
    '--mode',
    'sweep',
    '--config=configs/vitc.py:demo',
    '--config.total_steps',
    '7',
    '--trials=4',
    '--submit',
    'slurm',
    '--dry_run',
    '--groups=a,b',
    '--nodry_run',
    '--workdir',
    'gs://b/sweep',
  ]
  assert submit.job_argv(['--mode', 'sweep', '--submit_option=spot', *argv]) == [
    '--config=configs/vitc.py:demo',
    '--config.total_steps',
    '7',
    '--trials=4',
    '--workdir',
    'gs://b/sweep',
  ]
