"""config.evals: several evaluators in one run, ImageNet's variants scored as their papers define
it, on small generated data prepared by each variant's own TFDS builder."""

import jax.numpy as jnp
import numpy as np
import pytest
import tiny

from tests.main_cli import run_main
from vit_jax_stems import data
from vit_jax_stems.data import fake_imagenet
from vit_jax_stems.train import config_checks, evaluate, metrics, run_setup, steps, trainer

# ReaL label sets of the 5 generated validation images, in file-name order (real.json's format).
REAL_LABELS = [[1, 5], [], [3], [0, 1, 2], [999]]
# ImageNet-1k classes of the generated images of each variant (2 images per class).
VARIANT_CLASSES = {
  'imagenet_v2': [1, 999],
  'imagenet_a': [1, 10, 500],
  'imagenet_r': [7, 500],
  'imagenet_sketch': [3, 10, 999],
}
EVALS = (
  ('imagenet_v2', 'test', 'v2'),
  ('imagenet2012_real', 'validation', 'real'),
  ('imagenet_a', 'test', 'a'),
  ('imagenet_r', 'test', 'r'),
  ('imagenet_sketch', 'test', 'sketch'),
)


@pytest.fixture(scope='module')
def variants(tmp_path_factory):
  """imagenet2012 (5 validation images) and its variants, each prepared by its TFDS builder."""
  root = tmp_path_factory.mktemp('variants')
  manual_dir, data_dir = str(root / 'manual'), str(root / 'tfds')
  fake_imagenet.write_manual_dir(
    manual_dir, num_classes=5, train_per_class=4, num_val=5, size=(40, 30)
  )
  fake_imagenet.prepare_imagenet(data_dir, manual_dir)
  fake_imagenet.prepare_imagenet2012_real(data_dir, manual_dir, REAL_LABELS)
  for name, classes in VARIANT_CLASSES.items():
    fake_imagenet.prepare_variant(name, data_dir, str(root / name), classes)
  return {'data_dir': data_dir, 'manual_dir': manual_dir}


def _imagenet_config(variants, family='vitc', steps=2):
  """A tiny run on the generated imagenet2012 (1000 classes, as its variants)."""
  c = tiny.tiny_config(family, steps=steps)
  c.num_devices = 1
  c.data.name, c.data.eval_split = 'imagenet2012', 'validation'
  c.data.data_dir, c.data.manual_dir = variants['data_dir'], variants['manual_dir']
  c.data.image_size = 16
  c.eval_batch_size = 4
  return c


class ConstantLogits:
  """A stand-in model: the logits `variables['logits']` for every image."""

  def apply(self, variables, images, train):
    del train
    return jnp.broadcast_to(variables['logits'], (images.shape[0], 1000)), {}


def _logits(**values):
  out = np.zeros(1000, np.float32)
  for index, value in values.items():
    out[int(index[1:])] = value
  return jnp.asarray(out)


def _step_result(logits, labels, mask, classes=None):
  class Fixed:
    def apply(self, variables, images, train):
      return jnp.asarray(logits, jnp.float32), {}

  step = steps.make_eval_step(Fixed(), (0.0,) * 3, (1.0,) * 3, classes)
  batch = {
    'image': np.zeros((len(mask), 2, 2, 3), np.uint8),
    'label': np.asarray(labels),
    'mask': np.asarray(mask),
  }
  return {k: float(v) for k, v in step({}, batch).items()}


def test_real_top1_is_an_argmax_in_the_set_and_empty_sets_are_not_counted():
  # 5 classes; argmax per row: 2, 0, 4, 1, 3. Sets: {2, 3} hit, {} skipped, {1} miss, {1} hit,
  # {3} padding (mask False). Top-5 of 5 classes always hits a non-empty set.
  logits = [[0, 1, 5, 2, 0], [9, 0, 0, 0, 0], [0, 0, 0, 1, 7], [0, 3, 2, 0, 0], [0, 0, 0, 9, 0]]
  sets = [[0, 0, 1, 1, 0], [0, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 1, 0]]
  got = _step_result(logits, np.asarray(sets, bool), [True, True, True, True, False])
  assert got == {'top1': 2.0, 'top5': 3.0, 'count': 3.0}


def test_a_class_subset_takes_the_argmax_over_its_classes_only():
  # The full argmax (class 0) is outside the subset {2, 3}; within it, class 3 wins, then 2.
  logits = [[9, 1, 2, 3], [9, 1, 3, 2]]
  labels, mask = [3, 3], [True, True]
  assert _step_result(logits, labels, mask)['top1'] == 0.0
  got = _step_result(logits, labels, mask, classes=(2, 3))
  assert got == {'top1': 1.0, 'top5': 2.0, 'count': 2.0}  # top-5 of 2 classes: both


def test_each_variant_is_read_from_its_tfds_layout_and_scored_by_its_rule(variants):
  c = _imagenet_config(variants)
  c.evals = EVALS
  evaluators = evaluate.Evaluators(c, ConstantLogits(), run_setup.make_mesh(c))
  assert {n: e.data_cfg.label_key for n, e in evaluators.extra.items()}['real'] == 'real_label'
  # ImageNet-A and -R: the classes of their split (from the records' labels), all of the others.
  assert {n: e.classes for n, e in evaluators.extra.items()} == {
    'v2': None,
    'real': None,
    'a': (1, 10, 500),
    'r': (7, 500),
    'sketch': None,
  }
  params = _logits(c999=5, c10=4, c1=3, c7=2, c8=1)  # top-5: 999, 10, 1, 7, 8
  ema = _logits(c1=5, c2=4, c4=3, c6=2, c9=1, c500=0.5)  # top-5: 1, 2, 4, 6, 9
  got = evaluators({'params': {'logits': params}, 'ema': {'logits': ema}})
  expected = {
    # 2 images of each class. top1, top5 (raw weights); ema_top1, ema_top5; count.
    'v2': (2 / 4, 4 / 4, 2 / 4, 2 / 4, 4),
    # Sets [1, 5], [], [3], [0, 1, 2], [999]: the empty one is not counted.
    'real': (1 / 4, 3 / 4, 2 / 4, 2 / 4, 4),
    # Among 1, 10, 500: 10 (raw; the full argmax 999 is not one of them), 1 (EMA).
    'a': (2 / 6, 6 / 6, 2 / 6, 6 / 6, 6),
    # Among 7, 500: 7 (raw), 500 (EMA).
    'r': (2 / 4, 4 / 4, 2 / 4, 4 / 4, 4),
    'sketch': (2 / 6, 4 / 6, 0, 0, 6),
  }
  for name, values in expected.items():
    keys = [f'{name}/{k}' for k in ('top1', 'top5', 'ema_top1', 'ema_top5', 'count')]
    assert [got[k] for k in keys] == pytest.approx(values), name
  assert {'params_top1', 'params_top5', 'ema_top1', 'ema_top5', 'eval_count'} <= set(got)


def test_a_run_with_two_evaluators_reports_each_at_every_eval_and_in_eval_mode(
  variants, tmp_path, capsys
):
  c = _imagenet_config(variants, steps=2)
  c.eval_every_steps = 1
  c.evals = (('imagenet2012_real', 'validation', 'real'), ('imagenet_a', 'test', 'a'))
  out = trainer.train_and_evaluate(c, str(tmp_path))
  rows = {r['step']: r for r in metrics.read_jsonl(tmp_path / 'metrics.jsonl') if 'step' in r}
  for step in (1, 2):
    row = rows[step]
    assert {'eval/params_top1', 'eval/ema_top1', 'eval/eval_count'} <= set(row)
    for name, count in (('real', 4), ('a', 6)):
      for k in ('top1', 'top5', 'ema_top1', 'ema_top5'):
        assert 0 <= row[f'eval/{name}/{k}'] <= 1
      assert row[f'eval/{name}/count'] == count
  assert 'eval real/top1' in capsys.readouterr().out  # the progress line
  result = evaluate.run(c, str(tmp_path))
  printed = capsys.readouterr().out
  assert "real (imagenet2012_real 'validation'): 4 examples" in printed
  assert "a (imagenet_a 'test'): 6 examples" in printed
  for key in ('real/top1', 'real/ema_top1', 'a/top1', 'a/ema_top5'):
    assert result[key] == pytest.approx(out['eval'][key], abs=1e-6) == rows[2][f'eval/{key}']


@pytest.mark.parametrize(
  'entry,expected',
  [
    (
      ('imagenet_sketch', 'test', 'sketch', 'EMPTY'),
      r"config\.evals\[0\] \('sketch': dataset 'imagenet_sketch', split 'test'\): Dataset "
      r"'imagenet_sketch' is not prepared in data_dir='.*'.*\n.*"
      r'python -m vit_jax_stems\.data\.prepare --name=imagenet_sketch --data_dir=',
    ),
    (
      ('imagenet2012_real', 'validation', 'real', 'EMPTY'),
      r"Dataset 'imagenet2012_real' is not prepared(.|\n)*ILSVRC2012_img_val\.tar(.|\n)*"
      r'--name=imagenet2012_real --data_dir=.* --manual_dir=',
    ),
    (
      ('imagenet_a', 'validation', 'a'),
      r"config\.evals\[0\] .*split 'validation' of dataset 'imagenet_a' .* is missing or empty; "
      r"its splits: \['test'\]",
    ),
    (
      ('imagenet_vv2', 'test', 'v2'),
      r"No dataset named 'imagenet_vv2'.*Did you mean 'imagenet_v2'",
    ),
  ],
)
def test_a_missing_evaluation_set_stops_before_anything_is_written(
  variants, tmp_path, entry, expected
):
  c = _imagenet_config(variants)
  c.evals = (tuple(str(tmp_path / 'empty') if v == 'EMPTY' else v for v in entry),)
  workdir = tmp_path / 'run'
  with pytest.raises(data.DatasetNotReadyError, match=expected):
    trainer.train_and_evaluate(c, str(workdir))
  assert not workdir.exists()


def test_an_evaluation_set_of_other_classes_is_refused_naming_both(variants, tmp_path):
  c = tiny.tiny_config('vitc')  # mnist5k: 10 classes
  c.evals = (('imagenet_a', 'test', 'a', variants['data_dir']),)
  with pytest.raises(config_checks.ConfigError, match=r"labels are 1000 classes.*10 of 'mnist5k'"):
    trainer.train_and_evaluate(c, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


@pytest.mark.parametrize(
  'evals,expected',
  [
    (('imagenet_v2', 'test', 'v2'), r"is one entry.*\(\('imagenet_v2', 'test', 'v2'\),\)"),
    ((('imagenet_v2', 'test'),), r'config\.evals\[0\]=.*use \(dataset, split, name\)'),
    ((('imagenet_v2', 'test', 'v 2'),), r"the name 'v 2' goes into metric names"),
    ((('imagenet_v2', 'test', 'v2'), ('imagenet_a', 'test', 'v2')), r"'v2' is taken"),
  ],
)
def test_a_malformed_evals_entry_is_named(evals, expected):
  c = tiny.tiny_config('vitc')
  c.evals = evals
  with pytest.raises(config_checks.ConfigError, match=expected):
    config_checks.check(c)


def test_the_command_line_sets_evals_and_a_missing_set_is_one_line_without_traceback(tmp_path):
  workdir, data_dir = tmp_path / 'run', tmp_path / 'tfds'
  evals = "(('imagenet_v2', 'test', 'v2'),)"
  proc = run_main(
    '--config=configs/vitc.py:demo',
    f'--config.data.data_dir={data_dir}',
    f'--config.evals={evals}',
    f'--workdir={workdir}',
  )
  assert proc.returncode == 1
  assert 'Traceback' not in proc.stderr, proc.stderr
  assert (
    "ERROR: config.evals[0] ('v2': dataset 'imagenet_v2', split 'test'): Dataset 'imagenet_v2' "
    'is not prepared' in proc.stderr
  ), proc.stderr
  assert f'--name=imagenet_v2 --data_dir={data_dir}' in proc.stderr
  assert not workdir.exists()


def test_sweeps_refuse_evals_when_grouped_and_a_grid_run_stays_the_same_run_with_them(tmp_path):
  from vit_jax_stems.sweep import grouped, sample_efficiency

  c = tiny.tiny_config('vitc')
  c.num_devices = 1
  before = sample_efficiency.config_digest(c)
  c.evals = (('mnist5k', 'train[:40]', 'train40'),)  # any TFDS dataset of the run's classes
  assert sample_efficiency.config_digest(c) == before
  trial = {'trial_id': 't0', 'overrides': {'optimizer.lr': 1e-3}, 'group': 'g'}
  with pytest.raises(config_checks.ConfigError, match=r'unset config\.evals'):
    grouped.train_group(c, [trial], str(tmp_path / 'group'))
  assert not (tmp_path / 'group').exists()
