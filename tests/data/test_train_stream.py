"""Training stream: shapes, determinism, exact resume across epoch boundaries, disjoint process shares, repeats."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from vit_jax_stems import data


def _take(config, n, **kwargs):
  it = data.make_train_iterator(config, **kwargs)
  return [next(it) for _ in range(n)]


@pytest.fixture
def small_config(mnist_config):
  """300 training examples so that epochs end every few batches; RandAugment + erasing + mixing on."""
  mnist_config.train_split = 'train[:300]'
  aug = mnist_config.augment
  aug.randaugment, aug.random_erasing_prob, aug.pca_lighting_std = 'rand-m9-mstd0.5-inc1', 0.25, 0.1
  aug.mixup_alpha, aug.cutmix_alpha = 0.8, 1.0
  mnist_config.shuffle_buffer = 100
  return mnist_config


def test_batches_are_uint8_images_and_integer_labels(small_config):
  """The host half ships uint8 and class ids; lighting, erasing and mixing happen in the train step."""
  [batch] = _take(small_config, 1, global_batch_size=64, seed=0, process_index=1, process_count=2)
  assert set(batch) == {'image', 'label'}
  assert batch['image'].shape == (32, 32, 32, 3) and batch['image'].dtype == np.uint8
  assert batch['label'].shape == (32,) and batch['label'].dtype == np.int32
  assert ((0 <= batch['label']) & (batch['label'] < 10)).all()
  assert batch['image'].std() > 10  # digits, not a blank


def test_same_seed_same_stream_other_seed_other_stream(small_config):
  a = _take(small_config, 3, global_batch_size=64, seed=7)
  b = _take(small_config, 3, global_batch_size=64, seed=7)
  c = _take(small_config, 1, global_batch_size=64, seed=8)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x['image'], y['image'])
    np.testing.assert_array_equal(x['label'], y['label'])
  assert not np.array_equal(a[0]['image'], c[0]['image'])
  assert not np.array_equal(a[0]['image'], a[1]['image'])


def test_resume_continues_the_uninterrupted_stream(small_config):
  # 300 examples, 64 per batch: epoch boundaries inside steps 4 and 9.
  full = _take(small_config, 11, global_batch_size=64, seed=3)
  for start in (4, 9):
    resumed = _take(small_config, 2, global_batch_size=64, seed=3, start_step=start)
    for offset, batch in enumerate(resumed):
      np.testing.assert_array_equal(batch['image'], full[start + offset]['image'])
      np.testing.assert_array_equal(batch['label'], full[start + offset]['label'])


def _ids(config, steps, **kwargs):
  ds = data.make_train_dataset(config, **kwargs)
  return [list(b['tfds_id']) for b in tfds.as_numpy(ds.take(steps))]


@pytest.mark.parametrize('process_count', [1, 2, 8])
def test_processes_read_disjoint_shares_covering_the_split(mnist_config, process_count):
  mnist_config.train_split = 'train[:256]'
  local = 32
  shares = []
  for p in range(process_count):
    steps = 256 // process_count // local if 256 // process_count >= local else 1
    ids = [
      i
      for b in _ids(
        mnist_config,
        max(steps, 1),
        global_batch_size=local * process_count,
        seed=0,
        process_index=p,
        process_count=process_count,
      )
      for i in b
    ]
    epoch = ids[: 256 // process_count]
    assert len(set(epoch)) == len(epoch)  # one epoch: each example of the share once
    shares.append(set(epoch))
  assert sum(len(s) for s in shares) == len(set().union(*shares)) == 256


def test_epochs_are_reshuffled(mnist_config):
  mnist_config.train_split = 'train[:128]'
  ids = [i for b in _ids(mnist_config, 8, global_batch_size=32, seed=0) for i in b]
  first, second = ids[:128], ids[128:]
  assert sorted(first) == sorted(second) and first != second


def test_repeated_augmentation_keeps_epoch_length(mnist_config):
  mnist_config.train_split = 'train[:96]'
  mnist_config.augment.repeated_augmentation = 3
  ids = [i for b in _ids(mnist_config, 3, global_batch_size=32, seed=0) for i in b]
  assert len(ids) == 96 and len(set(ids)) == 32
  assert all(ids[3 * k] == ids[3 * k + 1] == ids[3 * k + 2] for k in range(32))
  [batch] = _take(mnist_config, 1, global_batch_size=32, seed=0)
  assert not np.array_equal(batch['image'][0], batch['image'][1])  # same digit, other augmentation
