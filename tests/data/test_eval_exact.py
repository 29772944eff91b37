"""Exact evaluation: every example counted once for any batch size and process count; global arrays on 1/2/8 devices."""

import hashlib
import math

import jax
import numpy as np
import pytest

from vit_jax_stems import data
from vit_jax_stems.train import sharding


def _eval_examples(config, global_batch, process_count):
  """Per process: (number of batches, [hash of each masked-in example with its label])."""
  out = []
  for p in range(process_count):
    it = data.make_eval_iterator(
      config, global_batch_size=global_batch, process_index=p, process_count=process_count
    )
    batches = list(it)
    assert len(batches) == len(it)
    keys = []
    for b in batches:
      assert (
        b['image'].shape == (global_batch // process_count, 32, 32, 3)
        and b['image'].dtype == np.uint8
      )
      assert b['label'].dtype == np.int32 and b['mask'].dtype == bool
      assert not b['image'][~b['mask']].any()  # padding is zeros
      keys += [
        hashlib.md5(img.tobytes()).hexdigest() + str(lab)
        for img, lab in zip(b['image'][b['mask']], b['label'][b['mask']])
      ]
    out.append((len(batches), keys))
  return out


def _reference_keys(mnist_dir, split):
  """The split read directly with TFDS and preprocessed one example at a time, no batching or sharding."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  from vit_jax_stems.data import decode  # pylint: disable=g-import-not-at-top

  config = data.default_config()
  keys = []
  ds = tfds.builder('mnist5k', data_dir=mnist_dir).as_dataset(
    split=split, decoders={'image': tfds.decode.SkipDecoding()}
  )
  for ex in ds:
    img = decode.decode_resize_center_crop(
      ex['image'], size=32, crop_pct=config.crop_pct, method='bilinear', antialias=True
    )
    img = np.asarray(img.numpy(), np.uint8) if img.dtype.is_floating else img.numpy()
    keys.append(hashlib.md5(img.tobytes()).hexdigest() + str(int(ex['label'])))
  return sorted(keys)


_CASES = [
  pytest.param('test[:203]', 1, 64),
  pytest.param('test[:203]', 2, 7 * 2),
  pytest.param('test[:203]', 8, 8 * 13),
  pytest.param('test', 1, 1024, marks=pytest.mark.slow),
  pytest.param('test', 2, 250, marks=pytest.mark.slow),
  pytest.param('test', 8, 8 * 125, marks=pytest.mark.slow),
]


@pytest.mark.parametrize('split,process_count,global_batch', _CASES)
def test_every_example_counted_once(mnist_config, split, process_count, global_batch):
  mnist_config.eval_split = split
  size = data.get_dataset_info(mnist_config).num_eval_examples
  per_process = _eval_examples(mnist_config, global_batch, process_count)
  num_batches = {n for n, _ in per_process}
  assert len(num_batches) == 1  # every process yields the same number of batches
  all_keys = sorted(k for _, keys in per_process for k in keys)
  assert len(all_keys) == size
  assert all_keys == _reference_keys(mnist_config.data_dir, split)
  local = global_batch // process_count
  largest_share = math.ceil(size / process_count)
  assert num_batches.pop() == math.ceil(largest_share / local)


@pytest.mark.parametrize('num_devices', [1, 2, 8])
def test_global_arrays_over_fake_devices(mnist_config, num_devices):
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:num_devices]), ('data',))
  global_batch = 8 * 24
  total, labels = 0, 0
  for batch in data.make_eval_iterator(
    mnist_config,
    split='test[:300]',
    global_batch_size=global_batch,
    process_index=0,
    process_count=1,
  ):
    arrays = sharding.global_batch(batch, sharding.batch_sharding(mesh))
    assert arrays['image'].shape == (global_batch, 32, 32, 3)
    assert len(arrays['image'].sharding.device_set) == num_devices
    assert arrays['image'].addressable_shards[0].data.shape[0] == global_batch // num_devices
    total += int(jax.jit(lambda m: m.sum())(arrays['mask']))
    labels += int((batch['label'] * batch['mask']).sum())
  assert total == 300
