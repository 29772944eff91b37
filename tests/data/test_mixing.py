"""Mixup / CutMix and label smoothing: target mass, smoothing values, and targets that match the pixels."""
import numpy as np
import pytest
import tensorflow as tf

from vit_jax_stems.data import mixing


def test_label_smoothing_values():
  targets = mixing.smooth_one_hot(tf.constant([2, 0]), 5, 0.1).numpy()
  np.testing.assert_allclose(targets[0], [0.02, 0.02, 0.92, 0.02, 0.02], rtol=1e-6)  # 1 - 0.1 + 0.1/5, 0.1/5
  np.testing.assert_allclose(targets.sum(-1), 1.0, rtol=1e-6)
  np.testing.assert_array_equal(mixing.smooth_one_hot(tf.constant([1]), 3, 0.0).numpy(), [[0, 1, 0]])


def _batch(b=8, h=16, w=12, classes=10):
  # Image i is the constant i + 1, so every pixel says which example it came from.
  images = tf.constant(np.arange(1, b + 1, dtype=np.float32)[:, None, None, None] * np.ones((1, h, w, 3), np.float32))
  labels = tf.constant(np.arange(b) % classes)
  return images, mixing.smooth_one_hot(labels, classes, 0.1), labels


@pytest.mark.parametrize('mixup,cutmix', [(0.8, 0.0), (0.0, 1.0), (0.8, 1.0)])
def test_targets_sum_to_one_and_match_pixel_shares(mixup, cutmix):
  images, targets, labels = _batch()
  kinds = set()
  for s in range(40):
    mixed, mixed_targets = mixing.mix_batch(images, targets, tf.constant([s, 1], tf.int64),
                                            mixup_alpha=mixup, cutmix_alpha=cutmix, switch_prob=0.5)
    mixed, mixed_targets = mixed.numpy(), mixed_targets.numpy()
    np.testing.assert_allclose(mixed_targets.sum(-1), 1.0, atol=1e-5)
    for i in range(8):
      own, partner = i + 1.0, 8 - i + 0.0  # partner of i is 7 - i
      values = mixed[i, ..., 0]
      # The weight of example i's class in its target (labels are distinct, smoothing 0.1 over 10).
      lam = (mixed_targets[i, labels[i]] - 0.01) / 0.9
      if np.all(np.isin(values, [own, partner])) and i != 7 - i:  # CutMix: a box from the partner
        kinds.add('cutmix')
        np.testing.assert_allclose(lam, np.mean(values == own), atol=1e-5)
      else:  # mixup: every pixel lam * own + (1 - lam) * partner
        kinds.add('mixup')
        np.testing.assert_allclose(values, lam * own + (1 - lam) * partner, atol=1e-4)
  expected = {'mixup'} if cutmix == 0 else {'cutmix'} if mixup == 0 else {'mixup', 'cutmix'}
  assert kinds == expected


def test_no_mixing_is_identity():
  images, targets, _ = _batch()
  out_images, out_targets = mixing.mix_batch(images, targets, tf.constant([0, 0], tf.int64),
                                             mixup_alpha=0.0, cutmix_alpha=0.0, switch_prob=0.5)
  np.testing.assert_array_equal(out_images, images)
  np.testing.assert_array_equal(out_targets, targets)
