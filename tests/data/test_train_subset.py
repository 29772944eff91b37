"""config.data.train_fraction: the class-balanced subset (first floor(n_c * f) examples of each
class in TFDS index order), its size in DatasetInfo and the plan, its process shares and resume."""

import collections
import fractions

import numpy as np
import pytest
import tensorflow_datasets as tfds

from vit_jax_stems import data
from vit_jax_stems.data import datasets
from vit_jax_stems.train import config_checks, run_setup


def _index_of(tfds_id, shard_offsets):
  """Reference parse of b'<name>-train.tfrecord-00001-of-00003__17' -> offset of shard 1 + 17."""
  name, index = tfds_id.decode().rsplit('__', 1)
  shard = int(name.rsplit('-of-', 1)[0].rsplit('-', 1)[1])
  return shard_offsets[shard] + int(index)


def _expected_subset(config, fraction):
  """tfds_ids of the first floor(n_c * f) examples per class, f as an exact fraction (no float
  floor), walking the split in TFDS index order."""
  builder = tfds.builder(config.name, data_dir=config.data_dir)
  lengths = builder.info.splits['train'].shard_lengths
  offsets = [sum(lengths[:k]) for k in range(len(lengths))]
  ds = builder.as_dataset(
    split='train',
    decoders={'image': tfds.decode.SkipDecoding()},
    read_config=tfds.ReadConfig(add_tfds_id=True),
  )
  records = sorted(
    (_index_of(ex['tfds_id'], offsets), ex['tfds_id'], int(ex['label'])) for ex in tfds.as_numpy(ds)
  )
  assert [r[0] for r in records] == list(range(len(records)))  # the index is a permutation
  per_class = collections.Counter(label for _, _, label in records)
  exact = fractions.Fraction(str(fraction))
  quota = {c: int(n * exact) for c, n in per_class.items()}  # floor of an exact product
  taken, chosen = collections.Counter(), []
  for _, tfds_id, label in records:
    if taken[label] < quota[label]:
      taken[label] += 1
      chosen.append(tfds_id)
  return chosen, quota


def _one_epoch_ids(config, epoch_size, **kwargs):
  """tfds_ids of the first `epoch_size` examples of the training stream (its first epoch)."""
  ds = data.make_train_dataset(config, seed=0, **kwargs)
  ids = []
  for batch in tfds.as_numpy(ds):
    ids.extend(batch['tfds_id'])
    if len(ids) >= epoch_size:
      return ids[:epoch_size]


# 0.33 and 0.29: n_c * f is fractional for every class; 0.29 * 100 is 28.999999999999996 in floats.
@pytest.mark.parametrize('fraction', [0.05, 0.1, 0.29, 0.33])
def test_subset_is_the_first_examples_of_each_class(mnist_config, fraction):
  mnist_config.train_fraction = fraction
  expected, quota = _expected_subset(mnist_config, fraction)
  info = data.get_dataset_info(mnist_config)
  assert info.num_train_examples == len(expected) == sum(quota.values())
  ids = _one_epoch_ids(mnist_config, len(expected), global_batch_size=64)
  assert len(set(ids)) == len(ids) and set(ids) == set(expected)
  labels = datasets.split_labels(
    tfds.builder('mnist5k', data_dir=mnist_config.data_dir), mnist_config.data_dir, 'train', 'label'
  )
  _, chosen = datasets.train_subset(datasets.get_builder(mnist_config), mnist_config)
  assert collections.Counter(labels[chosen].tolist()) == quota  # every class, exactly its share


def _demo_config(dcfg):
  from configs import vitc

  config = vitc.get_config('demo')
  config.data = dcfg
  return config


def test_the_plan_counts_steps_over_the_subset(mnist_config):
  mnist_config.train_fraction = 0.1
  config = _demo_config(mnist_config)
  config.total_epochs = 2.0
  info = data.get_dataset_info(config.data)
  plan = run_setup.make_plan(config, info.num_train_examples)
  assert info.num_train_examples == 394  # of 4,000 (floor per class)
  assert plan.steps_per_epoch == 394 // 128 and plan.total_steps == 2 * (394 // 128)


@pytest.fixture(scope='session')
def sharded_mnist_dir(tmp_path_factory):
  """mnist5k written as 3 shard files: readers interleave them, so arrival order != TFDS index."""
  data_dir = str(tmp_path_factory.mktemp('tfds_mnist_3_shards'))
  datasets.prepare('mnist5k', data_dir, tfds.download.DownloadConfig(num_shards=3))
  return data_dir


def test_process_shares_split_the_subset_of_a_sharded_split(sharded_mnist_dir):
  config = data.default_config()
  config.data_dir, config.train_fraction = sharded_mnist_dir, 0.2
  builder = tfds.builder('mnist5k', data_dir=sharded_mnist_dir)
  assert len(builder.info.splits['train'].shard_lengths) == 3
  expected, _ = _expected_subset(config, 0.2)
  shares = []
  for p in range(3):
    share = datasets.train_subset_share(builder, config, p, 3)
    shares.append(
      _one_epoch_ids(
        config, share.num_examples, global_batch_size=96, process_index=p, process_count=3
      )
    )
  assert max(map(len, shares)) - min(map(len, shares)) <= 1
  assert sorted(i for s in shares for i in s) == sorted(expected)  # disjoint, covering


def test_resume_continues_the_subset_stream(mnist_config):
  mnist_config.train_fraction = 0.05  # ~200 examples, 64 per batch: epochs end inside steps
  full = _batches(mnist_config, 8, global_batch_size=64, seed=1)
  resumed = _batches(mnist_config, 3, global_batch_size=64, seed=1, start_step=5)
  for k, batch in enumerate(resumed):
    np.testing.assert_array_equal(batch['image'], full[5 + k]['image'])
    np.testing.assert_array_equal(batch['label'], full[5 + k]['label'])


def _batches(config, n, **kwargs):
  it = data.make_train_iterator(config, **kwargs)
  return [next(it) for _ in range(n)]


def test_labels_are_read_once_then_from_the_cache(mnist_config, monkeypatch):
  builder = datasets.get_builder(mnist_config)
  first = datasets.split_labels(builder, mnist_config.data_dir, 'train', 'label')
  datasets._LABELS.clear()  # a new process: only the file in data_dir is left
  monkeypatch.setattr(builder, 'as_dataset', lambda **kw: pytest.fail('read the records again'))
  np.testing.assert_array_equal(
    datasets.split_labels(builder, mnist_config.data_dir, 'train', 'label'), first
  )


@pytest.mark.parametrize('fraction', [0.0, -0.5, 1.5])
def test_a_fraction_outside_0_1_is_refused_naming_the_field(mnist_config, fraction):
  mnist_config.train_fraction = fraction
  with pytest.raises(data.DatasetNotReadyError, match=r'config\.data\.train_fraction'):
    data.get_dataset_info(mnist_config)
  config = _demo_config(mnist_config)
  with pytest.raises(config_checks.ConfigError, match=r'config\.data\.train_fraction must be in'):
    config_checks.check(config, num_devices=1, num_processes=1)


def test_subset_errors_name_the_fields(mnist_config):
  mnist_config.train_fraction = 0.001  # under 1 / n_c for every class
  with pytest.raises(data.DatasetNotReadyError, match=r'keeps no example.*raise it'):
    data.get_dataset_info(mnist_config)
  mnist_config.train_fraction = 0.5
  mnist_config.train_split = 'train[:100]+train[200:300]'
  with pytest.raises(data.DatasetNotReadyError, match=r'config\.data\.train_split to be one range'):
    data.get_dataset_info(mnist_config)
  mnist_config.train_split = 'train[1000:2000]'  # a sub-range: the first per class inside it
  info = data.get_dataset_info(mnist_config)
  builder = datasets.get_builder(mnist_config)
  labels = datasets.split_labels(builder, mnist_config.data_dir, 'train', 'label')[1000:2000]
  assert info.num_train_examples == sum(n // 2 for n in np.bincount(labels))
