"""The device half of the augmentation: normalisation, PCA lighting, random erasing, mixup/CutMix and
label smoothing, against their definitions (pycls, timm) and independent of how the batch is sharded."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vit_jax_stems.data import device_augment

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _augment(**kw):
  return device_augment.DeviceAugment(num_classes=10, mean=MEAN, std=STD, **kw)


def test_plain_is_normalisation_and_smoothed_one_hot():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
  labels = np.array([2, 0, 9, 2], np.int32)
  out, targets = _augment(label_smoothing=0.1)(images, labels, jax.random.key(0))
  want = (images / 255.0 - np.array(MEAN)) / np.array(STD)
  np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
    targets[0], [0.01, 0.01, 0.91] + [0.01] * 7, rtol=1e-6
  )  # 1 - s + s/C, s/C
  np.testing.assert_allclose(np.sum(targets, -1), 1.0, rtol=1e-6)
  _, hard = _augment()(images, labels, jax.random.key(0))
  np.testing.assert_array_equal(hard, np.eye(10)[labels])


def test_pca_lighting_offsets_have_the_alexnet_covariance():
  """pycls lighting adds V (alpha * lambda), alpha ~ N(0, s^2): offsets have covariance V diag(s^2 lambda^2) V^T."""
  std, n = 0.1, 4096
  images = np.full((n, 1, 1, 3), 100, np.uint8)
  out, _ = _augment(pca_lighting_std=std)(images, np.zeros(n, np.int32), jax.random.key(1))
  offsets = np.asarray(out)[:, 0, 0] * np.array(STD) + np.array(MEAN) - 100 / 255.0
  vecs, vals = np.array(device_augment.EIGVECS), np.array(device_augment.EIGVALS)
  want = vecs @ np.diag((std * vals) ** 2) @ vecs.T
  np.testing.assert_allclose(np.cov(offsets.T), want, atol=0.06 * want.max())
  assert abs(offsets.mean(0)).max() < 4 * std * vals.max() / math.sqrt(n)


def test_random_erasing_boxes_follow_timm():
  """Erased boxes: about `prob` of the examples, one axis-aligned box of 2-33% of the area, N(0, 1) inside."""
  n, size = 2000, 32
  images = np.full((n, size, size, 3), 128, np.uint8)
  out, _ = _augment(random_erasing_prob=0.25)(images, np.zeros(n, np.int32), jax.random.key(2))
  plain = (128 / 255.0 - np.array(MEAN)) / np.array(STD)
  changed = np.any(np.abs(np.asarray(out) - plain) > 1e-6, axis=-1)  # (n, H, W)
  erased = changed.any(axis=(1, 2))
  assert abs(erased.mean() - 0.25) < 0.04
  noise = []
  for mask, image in zip(changed[erased], np.asarray(out)[erased]):
    rows, cols = np.where(mask.any(1))[0], np.where(mask.any(0))[0]
    box = np.zeros_like(mask)
    box[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = True
    assert (mask == box).mean() > 0.99  # one rectangle (noise may equal the plain value at a pixel)
    area = box.mean()
    assert 0.02 * 0.8 <= area <= 1 / 3 * 1.2  # timm's 2-33% of the area, after rounding the sides
    noise.append(image[box].ravel())
  noise = np.concatenate(noise)
  assert abs(noise.mean()) < 0.02 and abs(noise.std() - 1) < 0.02


def _indexed_batch(b=16, h=16, w=12):
  """Image i is the constant 8 * (i + 1) (uint8), so every pixel says which example it came from."""
  values = 8 * (np.arange(b) + 1)
  return np.broadcast_to(values[:, None, None, None], (b, h, w, 3)).astype(np.uint8), np.arange(
    b
  ) % 10


@pytest.mark.parametrize('mixup,cutmix', [(0.8, 0.0), (0.0, 1.0), (0.8, 1.0)])
def test_mixing_targets_match_pixel_shares_within_groups(mixup, cutmix):
  images, labels = _indexed_batch()
  group = 8
  augment = _augment(
    mixup_alpha=mixup, cutmix_alpha=cutmix, mix_group_size=group, label_smoothing=0.1
  )
  plain = (images[:, 0, 0, 0] / 255.0 - MEAN[0]) / STD[
    0
  ]  # the normalised red value of each example
  kinds, lams_seen = set(), []
  for s in range(30):
    out, targets = jax.jit(augment)(images, labels, jax.random.key(s))
    out, targets = np.asarray(out)[..., 0], np.asarray(targets)
    np.testing.assert_allclose(targets.sum(-1), 1.0, atol=1e-5)
    lams = []
    for i in range(16):
      partner = (i // group) * group + group - 1 - (i % group)  # flipped within its group
      own_v, partner_v = plain[i], plain[partner]
      lam = (targets[i, labels[i]] - 0.01) / 0.9  # labels of a group are distinct
      lams.append(lam)
      if np.all(np.isclose(out[i], own_v) | np.isclose(out[i], partner_v)) and not np.allclose(
        out[i], own_v
      ):
        kinds.add('cutmix')
        np.testing.assert_allclose(lam, np.mean(np.isclose(out[i], own_v)), atol=1e-5)
      elif not np.allclose(lam, 1.0):
        kinds.add('mixup')
        np.testing.assert_allclose(out[i], lam * own_v + (1 - lam) * partner_v, atol=1e-4)
    lams = np.array(lams).reshape(2, group)
    for g in range(
      2
    ):  # one draw per group: every example of a group keeps the same share of itself
      np.testing.assert_allclose(lams[g], lams[g][0], atol=1e-5)
    lams_seen.append(lams[:, 0])
  expected = {'mixup'} if cutmix == 0 else {'cutmix'} if mixup == 0 else {'mixup', 'cutmix'}
  assert kinds == expected
  lams_seen = np.array(lams_seen)
  assert np.mean(lams_seen[:, 0] != lams_seen[:, 1]) > 0.8  # groups draw independently


def test_batch_must_be_a_multiple_of_the_mixing_group():
  with pytest.raises(ValueError, match='mix_group_size'):
    _augment(mixup_alpha=0.8, mix_group_size=6)(*_indexed_batch(), jax.random.key(0))


def test_result_does_not_depend_on_the_sharding():
  """Keys come from the global example index and the group index: 1 device and 8 devices agree exactly."""
  images, labels = _indexed_batch(b=32, h=8, w=8)
  images = images + np.arange(8, dtype=np.uint8)[None, :, None, None]
  augment = _augment(
    pca_lighting_std=0.1,
    random_erasing_prob=0.5,
    mixup_alpha=0.8,
    cutmix_alpha=1.0,
    mix_group_size=8,
    label_smoothing=0.1,
  )
  key = jax.random.key(3)
  one = jax.jit(augment)(images, labels, key)
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:8]), ('data',))
  sharded = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  eight = jax.jit(augment, in_shardings=(sharded, sharded, None))(images, labels, key)
  for a, b in zip(
    one, eight
  ):  # same random draws; only XLA's fusion of the float math may differ in the last bit
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)


def test_eval_normalisation_matches_training_without_augmentation():
  images = np.random.default_rng(4).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
  train, _ = _augment()(images, np.zeros(2, np.int32), jax.random.key(0))
  np.testing.assert_allclose(
    device_augment.normalize_uint8(jnp.asarray(images), MEAN, STD), train, rtol=1e-6, atol=1e-6
  )
