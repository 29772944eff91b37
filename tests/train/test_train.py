"""The real trainer on the embedded mnist5k digits: each family end to end, --mode eval,
preemption + resume reproducing an uninterrupted run exactly, and the non-finite stop."""

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
