"""The real trainer on the embedded mnist5k digits: each family end to end, --mode eval,
preemption + resume reproducing an uninterrupted run exactly, and the non-finite stop."""

import json
import math
import os
import signal

import numpy as np
import pytest
import tiny

from vit_jax_stems import data
from vit_jax_stems.train import evaluate, metrics, trainer

STEPS = 6


def _run(config, workdir):
  return trainer.train_and_evaluate(config, str(workdir))


def _rows(workdir, key):
  return {
    r['step']: r[key]
    for r in metrics.read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
    if key in r
  }


def _vitc_config():
  c = tiny.tiny_config('vitc', steps=STEPS)
  c.num_devices = 1
  c.log_every_steps = 1
  # pycls precise BN before each eval (step 4 and the end): the resume and --mode eval tests below
  # then also check that it keeps the stream and the saved state exact.
  c.precise_bn_samples = 32
  c.eval_every_steps = 4
  return c


@pytest.fixture(scope='module')
def vitc_run(tmp_path_factory):
  """One uninterrupted run, the reference of the resume and eval-mode tests."""
  workdir = tmp_path_factory.mktemp('vitc')
  return workdir, _run(_vitc_config(), workdir)


def test_vitc_end_to_end(vitc_run):
  workdir, out = vitc_run
  info = data.get_dataset_info(_vitc_config().data)
  losses = _rows(workdir, 'train/loss')
  assert sorted(losses) == list(range(1, STEPS + 1))
  # pycls zero-initialises the head: the first loss is exactly ln(10) whatever the soft targets.
  assert losses[1] == pytest.approx(math.log(10), abs=1e-5)
  assert all(np.isfinite(list(losses.values())))
  assert out['eval']['eval_count'] == info.num_eval_examples
  assert {'params_top1', 'params_top5', 'ema_top1', 'ema_top5'} <= set(out['eval'])
  assert out['eval']['params_top5'] >= out['eval']['params_top1']
  lr = _rows(workdir, 'train/lr')
  assert lr[1] == pytest.approx(0.1 * 2e-3)  # warmup starts at warmup_factor * lr
  assert (workdir / 'checkpoints' / str(STEPS)).exists()
  assert any(n.startswith('events') for n in os.listdir(workdir / 'tensorboard'))


@pytest.mark.parametrize('family', ['vitp', 'convit'])
def test_other_families_end_to_end(family, tmp_path):
  c = tiny.tiny_config(family, steps=3)
  c.num_devices = 1
  out = _run(c, tmp_path)
  loss = _rows(tmp_path, 'train/loss')
  assert np.isfinite(list(loss.values())).all()
  assert loss[2] == pytest.approx(math.log(10), abs=0.3)
  assert out['eval']['eval_count'] == data.get_dataset_info(c.data).num_eval_examples


def test_eval_mode_reproduces_the_final_evaluation(vitc_run, capsys):
  workdir, out = vitc_run
  result = evaluate.run(_vitc_config(), str(workdir))
  for key in ('params_top1', 'params_top5', 'ema_top1', 'eval_count'):
    assert result[key] == out['eval'][key]
  assert f'{result["eval_count"]} examples' in capsys.readouterr().out


def _iterator_hook(monkeypatch, at_batch, action):
  """Wraps data.make_train_iterator so that `action(batch)` runs on its `at_batch`-th batch."""
  real = data.make_train_iterator

  def make(*args, **kwargs):
    it = real(*args, **kwargs)

    def gen():
      for i, batch in enumerate(it):
        if i == at_batch:
          batch = action(batch)
        yield batch

    return gen()

  monkeypatch.setattr(data, 'make_train_iterator', make)


def test_sigterm_saves_and_resume_matches_uninterrupted_run(vitc_run, tmp_path, monkeypatch):
  ref_dir, ref = vitc_run

  def sigterm(batch):
    os.kill(os.getpid(), signal.SIGTERM)
    return batch

  _iterator_hook(monkeypatch, 2, sigterm)
  first = _run(_vitc_config(), tmp_path)
  assert first['stopped'] == 'preempted at step 3'
  assert tiny.checkpoint_state(tmp_path)['step'] == 3
  monkeypatch.undo()
  second = _run(_vitc_config(), tmp_path)
  assert second['stopped'] is None
  got, want = _rows(tmp_path, 'train/loss'), _rows(ref_dir, 'train/loss')
  assert got == want  # exactly, every step before and after the restart
  assert second['eval'] == ref['eval']
  a, b = tiny.checkpoint_state(tmp_path), tiny.checkpoint_state(ref_dir)
  for x, y in zip(jax_leaves(a), jax_leaves(b)):
    np.testing.assert_array_equal(x, y)


def jax_leaves(tree):
  import jax

  return jax.tree_util.tree_leaves(tree)


def test_non_finite_loss_stops_naming_the_step_and_keeps_last_good_checkpoint(
  tmp_path, monkeypatch
):
  def poison(batch):  # NaN pixels (float: uint8 has no NaN; the step is traced again for the dtype)
    return dict(batch, image=np.full(batch['image'].shape, np.nan, np.float32))

  _iterator_hook(monkeypatch, 3, poison)  # the 4th batch: step 4
  c = _vitc_config()
  with pytest.raises(
    trainer.NonFiniteLossError, match=r'at step 4.*last good checkpoint is step 2'
  ):
    _run(c, tmp_path)
  state = tiny.checkpoint_state(tmp_path)
  assert state['step'] == 2
  assert all(np.isfinite(x).all() for x in jax_leaves(state['params']))


def test_saved_bn_statistics_are_precise_bn_over_the_next_training_batches(vitc_run):
  """The final checkpoint holds pycls precise BN statistics: the average batch statistics of the
  raw and EMA weights over the next precise_bn_samples of the training stream."""
  import jax

  from vit_jax_stems.data import device_augment
  from vit_jax_stems.train import precise_bn, train_state

  workdir, _ = vitc_run
  c = _vitc_config()
  info = data.get_dataset_info(c.data)
  model = train_state.model_from_config(c, info.num_classes)
  spec = model.spec
  state = tiny.checkpoint_state(workdir)
  stream = data.make_train_iterator(
    c.data, global_batch_size=c.batch_size, seed=c.seed, start_step=STEPS
  )
  batches = [
    next(stream) for _ in range(precise_bn.num_batches(c.precise_bn_samples, c.batch_size))
  ]
  stats_fn = jax.jit(
    precise_bn.make_batch_stats_fn(
      model,
      device_augment.DeviceAugment.from_config(c.data, info.num_classes),
      spec.batch_norm_momentum,
    )
  )
  key = precise_bn.precise_bn_key(state['rng'], STEPS)
  for saved, params in (
    (state['batch_stats'], state['params']),
    (state['ema']['batch_stats'], state['ema']['params']),
  ):
    want = precise_bn.precise_batch_stats(
      stats_fn, {'params': params, 'batch_stats': saved}, batches, key
    )
    for a, b in zip(jax.tree_util.tree_leaves(saved), jax.tree_util.tree_leaves(want)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # Negative control: the same computation over other batches of the stream gives other statistics.
  other = [next(data.make_train_iterator(c.data, global_batch_size=c.batch_size, seed=c.seed))]
  elsewhere = precise_bn.precise_batch_stats(
    stats_fn, {'params': state['params'], 'batch_stats': state['batch_stats']}, other, key
  )
  assert any(
    not np.allclose(a, b, rtol=1e-3)
    for a, b in zip(
      jax.tree_util.tree_leaves(state['batch_stats']), jax.tree_util.tree_leaves(elsewhere)
    )
  )


# ---------------------------------------------------------------- workdir edges
def _copy_run(vitc_run, tmp_path):
  """A copy of the reference run's workdir (checkpoints 4 and 6, config.json, metrics.jsonl)."""
  import shutil

  workdir = tmp_path / 'run'
  shutil.copytree(vitc_run[0], workdir)
  return workdir


def _damage(step_dir, how):
  """A checkpoint cut short while saving: its tensor files halved, or no tree metadata."""
  if how == 'truncated tensor file':
    for data in (step_dir / 'default' / 'ocdbt.process_0' / 'd').iterdir():
      with open(data, 'r+b') as f:
        f.truncate(data.stat().st_size // 2)
  else:
    (step_dir / 'default' / '_METADATA').unlink()


@pytest.mark.parametrize('how', ['truncated tensor file', 'missing metadata'])
def test_a_damaged_newest_checkpoint_gives_way_to_the_previous_one(vitc_run, tmp_path, how, caplog):
  ref_dir, ref = vitc_run
  workdir = _copy_run(vitc_run, tmp_path)
  _damage(workdir / 'checkpoints' / str(STEPS), how)
  out = _run(_vitc_config(), workdir)
  warnings = [r.getMessage() for r in caplog.records if r.levelname == 'WARNING']
  assert any(
    f'checkpoints/{STEPS} does not restore' in w and 'resumed from step 4' in w for w in warnings
  )
  assert (workdir / 'checkpoints' / f'{STEPS}.corrupt').is_dir()  # set aside, not deleted
  assert out['eval'] == ref['eval']
  for x, y in zip(
    jax_leaves(tiny.checkpoint_state(workdir)), jax_leaves(tiny.checkpoint_state(ref_dir))
  ):
    np.testing.assert_array_equal(x, y)


def test_eval_mode_of_a_damaged_newest_checkpoint_evaluates_the_one_before(
  vitc_run, tmp_path, caplog, capsys
):
  workdir = _copy_run(vitc_run, tmp_path)
  _damage(workdir / 'checkpoints' / str(STEPS), 'truncated tensor file')
  evaluate.run(_vitc_config(), str(workdir))
  assert f'Evaluated checkpoint step 4 in {workdir}' in capsys.readouterr().out
  assert any(
    f'checkpoints/{STEPS} does not restore' in r.getMessage() and 'using step 4' in r.getMessage()
    for r in caplog.records
  )
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['4', str(STEPS)]  # eval changes nothing


def test_no_intact_checkpoint_stops_naming_them_and_the_command_that_removes_them(
  vitc_run, tmp_path
):
  from vit_jax_stems.train import checkpointing

  workdir = _copy_run(vitc_run, tmp_path)
  for step in (4, STEPS):
    _damage(workdir / 'checkpoints' / str(step), 'truncated tensor file')
  config_json = (workdir / 'config.json').read_bytes()
  c = _vitc_config()
  c.seed = 1  # what a config.json rewrite would show
  with pytest.raises(checkpointing.CheckpointError) as e:
    _run(c, workdir)
  message = str(e.value)
  ckpts = workdir / 'checkpoints'
  assert f'rm -r {ckpts / str(STEPS)} {ckpts / "4"}' in message and 'start over' in message
  assert len(message) < 800 and '\n' not in message
  assert sorted(os.listdir(ckpts)) == ['4', str(STEPS)]
  assert (workdir / 'config.json').read_bytes() == config_json


@pytest.mark.parametrize(
  'change,expected',
  [
    ('model', r"config\.model_name: 'vit_c_1gf' there, 'vit_p_1gf' in --config"),
    ('optimizer', r'another model or config \(opt_state differs'),
  ],
)
def test_a_workdir_of_another_config_stops_before_anything_is_written(
  vitc_run, tmp_path, change, expected
):
  from vit_jax_stems.train import checkpointing

  workdir = _copy_run(vitc_run, tmp_path)
  before = {p: p.read_bytes() for p in workdir.rglob('*') if p.is_file()}
  if change == 'model':
    c = tiny.tiny_config('vitp', steps=STEPS)
    c.num_devices = 1
  else:
    c = _vitc_config()
    c.optimizer.name, c.optimizer.lr = 'sgd', 0.1
  with pytest.raises(checkpointing.CheckpointError, match=expected):
    _run(c, workdir)
  after = {p: p.read_bytes() for p in workdir.rglob('*') if p.is_file()}
  assert after == before  # config.json, metrics.jsonl, checkpoints, TensorBoard: all as they were


def test_eval_mode_with_another_model_stops_naming_both(vitc_run):
  from vit_jax_stems.train import checkpointing

  c = _vitc_config()
  c.model.depth = 2
  with pytest.raises(checkpointing.CheckpointError, match=r'config\.model\.depth: 1 there, 2 in'):
    evaluate.run(c, str(vitc_run[0]))


def test_non_finite_loss_before_the_first_checkpoint_says_there_is_none_and_what_to_change(
  tmp_path, monkeypatch
):
  def poison(batch):
    return dict(batch, image=np.full(batch['image'].shape, np.nan, np.float32))

  _iterator_hook(monkeypatch, 0, poison)
  with pytest.raises(trainer.NonFiniteLossError) as e:
    _run(_vitc_config(), tmp_path)
  assert 'at step 1' in str(e.value) and 'there is no checkpoint yet' in str(e.value)
  assert 'step None' not in str(e.value)
  assert 'lower config.optimizer.lr' in str(e.value)


def test_a_resumed_crashed_run_writes_each_step_once_and_says_what_its_first_row_averages(
  vitc_run, tmp_path, monkeypatch
):
  """Checkpoint 3, train rows 2 and 4, then a crash (the input dies in batch 5): the resumed run
  writes rows 4 (over step 4 only), 4 (eval) and 6, and the file holds each step once."""
  _, ref = vitc_run
  c = _vitc_config()
  c.log_every_steps, c.checkpoint_every_steps, c.async_checkpoints = 2, 3, False

  def crash(batch):
    raise RuntimeError('host died')

  _iterator_hook(monkeypatch, 4, crash)  # the 5th batch: step 5
  with pytest.raises(RuntimeError, match='host died'):
    _run(c, tmp_path)
  monkeypatch.undo()
  out = _run(c, tmp_path)
  with open(tmp_path / 'metrics.jsonl') as f:
    lines = [json.loads(line) for line in f]
  train = [(r['step'], r['train/steps_averaged']) for r in lines if 'train/loss' in r]
  assert train == [(2, 2), (4, 1), (6, 2)]
  assert [r['step'] for r in lines if 'eval/eval_count' in r] == [4, STEPS]
  assert out['eval'] == ref['eval']


def test_read_jsonl_keeps_the_last_value_of_each_metric_per_step(tmp_path):
  path = tmp_path / 'metrics.jsonl'
  rows = [
    {'step': 2, 'train/loss': 2.0},
    {'step': 4, 'train/loss': 1.5},  # a crashed run's step 4 ...
    {'step': 4, 'train/loss': 1.4},  # ... written again after the resume
    {'step': 4, 'eval/params_top1': 0.5},
    {'step': 3, 'train/loss': 1.8},
  ]
  path.write_text(''.join(json.dumps(r) + '\n' for r in rows))
  assert metrics.read_jsonl(path) == [
    {'step': 2, 'train/loss': 2.0},
    {'step': 3, 'train/loss': 1.8},
    {'step': 4, 'train/loss': 1.4, 'eval/params_top1': 0.5},
  ]


def test_the_first_progress_line_has_an_eta(monkeypatch, capsys):
  clock = iter([100.0, 104.0])  # step 1 done at 100 s (compiled), step 5 printed at 104 s
  monkeypatch.setattr(metrics.time, 'monotonic', lambda: next(clock))
  progress = metrics.ProgressPrinter(total_steps=21, start_step=0)
  progress.step_finished(1)
  progress(5, {'loss': 2.0})
  assert capsys.readouterr().out.strip().endswith('ETA 0h00m16s')  # 1 step/s, 16 steps left
