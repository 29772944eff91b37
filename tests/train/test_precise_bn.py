"""Precise BN statistics against numpy on a BatchNorm-only model, and the peekable stream."""

import flax.linen as nn
import jax
import numpy as np

from vit_jax_stems.data import device_augment
from vit_jax_stems.train import precise_bn

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class _BNOnly(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(x)


def test_statistics_are_the_average_of_per_batch_mean_and_variance():
  rng = np.random.default_rng(0)
  batches = [
    {
      'image': rng.integers(0, 256, (8, 4, 4, 3), dtype=np.uint8) // (i + 1),
      'label': np.zeros(8, np.int32),
    }
    for i in range(3)
  ]
  model = _BNOnly()
  variables = model.init(jax.random.key(0), np.zeros((1, 4, 4, 3), np.float32))
  # Mixing on: precise BN must see the images without mixup/CutMix, as pycls's loader gives them.
  augment = device_augment.DeviceAugment(
    num_classes=2, mean=MEAN, std=STD, mixup_alpha=0.8, cutmix_alpha=1.0, mix_group_size=8
  )
  stats_fn = jax.jit(precise_bn.make_batch_stats_fn(model, augment, momentum=0.9))
  got = precise_bn.precise_batch_stats(stats_fn, variables, batches, jax.random.key(1))[
    'BatchNorm_0'
  ]
  normalised = [(b['image'] / 255.0 - np.array(MEAN)) / np.array(STD) for b in batches]
  want_mean = np.mean([x.mean(axis=(0, 1, 2)) for x in normalised], axis=0)
  want_var = np.mean(
    [x.var(axis=(0, 1, 2)) for x in normalised], axis=0
  )  # biased, as Flax keeps it
  np.testing.assert_allclose(got['mean'], want_mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got['var'], want_var, rtol=1e-5, atol=1e-6)


def test_num_batches_covers_the_samples():
  assert precise_bn.num_batches(8192, 2048) == 4
  assert precise_bn.num_batches(8192, 3000) == 3
  assert precise_bn.num_batches(10, 2048) == 1


def test_peeked_items_are_still_yielded_in_order():
  it = precise_bn.PeekableIterator(iter(range(10)))
  assert next(it) == 0
  assert it.peek(3) == [1, 2, 3]
  assert it.peek(2) == [1, 2]
  assert [next(it) for _ in range(5)] == [1, 2, 3, 4, 5]
  assert it.peek(1) == [6] and list(it) == [6, 7, 8, 9]
