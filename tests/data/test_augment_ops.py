"""TF augmentation ops against PIL (the library pycls and timm call), and the AutoAugment/RandAugment policies."""

import collections

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageEnhance, ImageOps

from vit_jax_stems.data import auto_augment, image_ops


@pytest.fixture(scope='module')
def photo():
  rng = np.random.RandomState(0)
  coarse = rng.randint(0, 256, (6, 8, 3)).astype(np.uint8)
  smooth = np.asarray(Image.fromarray(coarse).resize((40, 30), Image.BICUBIC), np.int32)
  return np.clip(smooth + rng.randint(-20, 21, smooth.shape), 0, 255).astype(np.uint8)


FILL = (128, 128, 128)
MEAN_FILL = (124, 116, 104)  # a per-channel fill, as RandAugment uses
# (our op, PIL reference, max abs difference allowed, allowed fraction of differing values). The pixel
# ops follow Pillow's integer and float32 arithmetic, so they must agree exactly.
PIXEL_CASES = {
  'auto_contrast': (image_ops.auto_contrast, ImageOps.autocontrast, 0, 0.0),
  'equalize': (image_ops.equalize, ImageOps.equalize, 0, 0.0),
  'invert': (image_ops.invert, ImageOps.invert, 0, 0.0),
  'posterize2': (lambda x: image_ops.posterize(x, 2), lambda im: ImageOps.posterize(im, 2), 0, 0.0),
  'posterize7': (lambda x: image_ops.posterize(x, 7), lambda im: ImageOps.posterize(im, 7), 0, 0.0),
  'solarize100': (
    lambda x: image_ops.solarize(x, 100),
    lambda im: ImageOps.solarize(im, 100),
    0,
    0.0,
  ),
  'solarize256': (
    lambda x: image_ops.solarize(x, 256),
    lambda im: ImageOps.solarize(im, 256),
    0,
    0.0,
  ),
  'solarize_add40': (
    lambda x: image_ops.solarize_add(x, 40),
    lambda im: im.point([min(255, i + 40) if i < 128 else i for i in range(256)] * 3),
    0,
    0.0,
  ),
  'color1.7': (
    lambda x: image_ops.color(x, 1.7),
    lambda im: ImageEnhance.Color(im).enhance(1.7),
    0,
    0.0,
  ),
  'color0.3': (
    lambda x: image_ops.color(x, 0.3),
    lambda im: ImageEnhance.Color(im).enhance(0.3),
    0,
    0.0,
  ),
  'contrast1.5': (
    lambda x: image_ops.contrast(x, 1.5),
    lambda im: ImageEnhance.Contrast(im).enhance(1.5),
    0,
    0.0,
  ),
  'contrast0.1': (
    lambda x: image_ops.contrast(x, 0.1),
    lambda im: ImageEnhance.Contrast(im).enhance(0.1),
    0,
    0.0,
  ),
  'brightness0.4': (
    lambda x: image_ops.brightness(x, 0.4),
    lambda im: ImageEnhance.Brightness(im).enhance(0.4),
    0,
    0.0,
  ),
  'brightness1.9': (
    lambda x: image_ops.brightness(x, 1.9),
    lambda im: ImageEnhance.Brightness(im).enhance(1.9),
    0,
    0.0,
  ),
  'sharpness1.9': (
    lambda x: image_ops.sharpness(x, 1.9),
    lambda im: ImageEnhance.Sharpness(im).enhance(1.9),
    0,
    0.0,
  ),
  'sharpness0.2': (
    lambda x: image_ops.sharpness(x, 0.2),
    lambda im: ImageEnhance.Sharpness(im).enhance(0.2),
    0,
    0.0,
  ),
}


@pytest.mark.parametrize('name', sorted(PIXEL_CASES))
def test_pixel_ops_match_pil(photo, name):
  ours, reference, max_diff, max_fraction = PIXEL_CASES[name]
  out = ours(tf.constant(photo)).numpy()
  expected = np.asarray(reference(Image.fromarray(photo)))
  assert out.dtype == np.uint8 and out.shape == photo.shape
  diff = np.abs(out.astype(int) - expected.astype(int))
  assert diff.max() <= max_diff and np.mean(diff > 0) <= max_fraction, (
    diff.max(),
    np.mean(diff > 0),
  )


def test_auto_contrast_rounds_like_pillow():
  """Level 33 of a channel spanning [5, 243] maps to int(29.999999999999996) = 29 in Pillow's double
  arithmetic; a fused multiply-add (what XLA emits for a * b + c unless kept apart) gives 30."""
  image = np.array(
    [[[5, 0, 200], [243, 255, 201], [33, 128, 202]], [[100, 7, 200], [200, 9, 201], [34, 8, 202]]],
    np.uint8,
  )
  expected = np.asarray(ImageOps.autocontrast(Image.fromarray(image)))
  assert expected[0, 2, 0] == 29
  np.testing.assert_array_equal(image_ops.auto_contrast(tf.constant(image)).numpy(), expected)


GEOMETRY_CASES = {
  'rotate20': (
    lambda x: image_ops.rotate(x, 20.0, FILL),
    lambda im: im.rotate(20, resample=Image.BILINEAR, fillcolor=FILL),
  ),
  'rotate-25': (
    lambda x: image_ops.rotate(x, -25.0, FILL),
    lambda im: im.rotate(-25, resample=Image.BILINEAR, fillcolor=FILL),
  ),
  'rotate13_mean_fill': (
    lambda x: image_ops.rotate(x, 13.0, MEAN_FILL),
    lambda im: im.rotate(13, resample=Image.BILINEAR, fillcolor=MEAN_FILL),
  ),
  'shear_x0.3': (
    lambda x: image_ops.shear_x(x, 0.3, FILL),
    lambda im: im.transform(
      im.size, Image.AFFINE, (1, 0.3, 0, 0, 1, 0), Image.BILINEAR, fillcolor=FILL
    ),
  ),
  'shear_y-0.2': (
    lambda x: image_ops.shear_y(x, -0.2, FILL),
    lambda im: im.transform(
      im.size, Image.AFFINE, (1, 0, 0, -0.2, 1, 0), Image.BILINEAR, fillcolor=FILL
    ),
  ),
  'trans_x0.25': (
    lambda x: image_ops.translate_x(x, 0.25, FILL),
    lambda im: im.transform(
      im.size, Image.AFFINE, (1, 0, 10, 0, 1, 0), Image.BILINEAR, fillcolor=FILL
    ),
  ),
  'trans_x-0.13_mean_fill': (
    lambda x: image_ops.translate_x(x, -0.13, MEAN_FILL),
    lambda im: im.transform(
      im.size, Image.AFFINE, (1, 0, -0.13 * 40, 0, 1, 0), Image.BILINEAR, fillcolor=MEAN_FILL
    ),
  ),
  'trans_y-0.2': (
    lambda x: image_ops.translate_y(x, -0.2, FILL),
    lambda im: im.transform(
      im.size, Image.AFFINE, (1, 0, 0, 0, 1, -6), Image.BILINEAR, fillcolor=FILL
    ),
  ),
}


@pytest.mark.parametrize('name', sorted(GEOMETRY_CASES))
def test_geometric_ops_match_pil(photo, name):
  """Same sample points, fill and edge rules as PIL's bilinear transform (in double); the interpolation
  is float32 (PIL: double), which moves a value by one level where PIL's result is within ~1e-5 of
  an integer, frequent only with 'round' parameters (a constant fraction such as 0.8 of a pixel)."""
  ours, reference = GEOMETRY_CASES[name]
  out = ours(tf.constant(photo)).numpy().astype(int)
  expected = np.asarray(reference(Image.fromarray(photo))).astype(int)
  diff = np.abs(out - expected)
  assert diff.max() <= 1 and np.mean(diff > 0) < 0.05, (diff.max(), np.mean(diff > 0))
  # A wrong direction or centre would be far off: compare with the opposite transform as a negative control.
  assert np.mean(diff) < 0.1 * np.mean(np.abs(out - photo.astype(int)))


def test_policies_are_deterministic_and_vary(photo):
  image = tf.constant(photo)
  spec = auto_augment.parse_randaugment('rand-m9-mstd0.5-inc1')
  for policy in (
    lambda s: auto_augment.auto_augment(image, s),
    lambda s: auto_augment.rand_augment(image, s, spec),
  ):
    outs = [policy(tf.constant([s, 0], tf.int64)).numpy() for s in range(12)]
    np.testing.assert_array_equal(outs[0], policy(tf.constant([0, 0], tf.int64)).numpy())
    assert all(o.shape == photo.shape and o.dtype == np.uint8 for o in outs)
    assert len({o.tobytes() for o in outs}) >= 6  # different seeds, different augmentations


def test_policies_in_a_dataset_match_eager(photo):
  """In tf.data (graph mode, where the kernels are compiled inside the map) the result is the eager one."""
  spec = auto_augment.parse_randaugment('rand-n3-m7-mstd0.5')
  seeds = tf.constant([[s, 5] for s in range(6)], tf.int64)
  for policy in (
    auto_augment.auto_augment,
    lambda x, s: auto_augment.rand_augment(x, s, spec, MEAN_FILL),
  ):
    ds = tf.data.Dataset.from_tensor_slices(seeds).map(
      lambda s, policy=policy: policy(tf.constant(photo), s)
    )
    for seed, out in zip(seeds, ds):
      np.testing.assert_array_equal(out.numpy(), policy(tf.constant(photo), seed).numpy())


def _record_calls(monkeypatch, policy, seeds):
  """(op name, argument) of every op a policy applies (identity left out), per seed."""
  calls, current = [], []
  monkeypatch.setattr(
    auto_augment.image_ops,
    'apply',
    lambda image, op, arg, fill=None: (
      current.append((image_ops.OPS[int(op)], float(arg))) if int(op) else None,
      image,
    )[1],
  )
  for s in seeds:
    current = []
    policy(tf.constant([s, 9], tf.int64))
    calls.append(current)
  return calls


def test_randaugment_draws_follow_timm(monkeypatch, photo):
  """timm RandAugment 'rand-m9-mstd0.5-inc1': 2 ops, uniform over the 15 'increasing' ops, each
  applied with p 0.5; magnitude ~ N(9, 0.5) on 0-10; signed ops negated half of the time."""
  spec = auto_augment.parse_randaugment('rand-m9-mstd0.5-inc1')
  image = tf.constant(photo)
  calls = _record_calls(
    monkeypatch, lambda s: auto_augment.rand_augment(image, s, spec), range(600)
  )
  applied = [c for per_image in calls for c in per_image]
  assert 0.43 < len(applied) / 1200 < 0.57  # 2 slots x p 0.5; binomial sd 0.014
  counts = collections.Counter(name for name, _ in applied)
  assert len(counts) == 15 and min(counts.values()) > 15, counts  # ~40 each

  rotations = np.array([arg for name, arg in applied if name == 'rotate'])
  assert 0.2 < np.mean(rotations > 0) < 0.8
  assert np.all(np.abs(np.abs(rotations) / 30 - 0.9) < 0.2)  # level 0.9, sd 0.05
  colors = np.array(
    [arg for name, arg in applied if name == 'color']
  )  # color_inc: 1 +- level * 0.9
  assert (
    np.all((np.abs(colors - 1) > 0.6) & (np.abs(colors - 1) < 0.9 + 1e-5))
    and 0.2 < np.mean(colors > 1) < 0.8
  )


def test_autoaugment_draws_follow_policy_v0(monkeypatch, photo):
  """One of the 25 sub-policies per image, uniformly; each op applied with its probability."""
  image = tf.constant(photo)
  calls = _record_calls(monkeypatch, lambda s: auto_augment.auto_augment(image, s), range(600))
  expected = collections.Counter()
  for sub in auto_augment.AUTOAUGMENT_V0:
    for name, prob, level in sub:
      if not (
        name in ('rotate', 'shear_x', 'shear_y', 'trans_x', 'trans_y') and level == 0
      ):  # skipped identities
        expected[auto_augment._OPS[name].image_op] += prob * 600 / 25
  counts = collections.Counter(name for per_image in calls for name, _ in per_image)
  for name, mean in expected.items():
    assert abs(counts[name] - mean) < 6 * np.sqrt(mean) + 2, (name, counts[name], mean)
  assert set(counts) == set(expected)


def test_parse_randaugment():
  spec = auto_augment.parse_randaugment('rand-m9-mstd0.5-inc1')
  assert (spec.num_layers, spec.magnitude, spec.magnitude_std, spec.prob, spec.increasing) == (
    2,
    9.0,
    0.5,
    0.5,
    True,
  )
  assert auto_augment.parse_randaugment('rand-n3-m7-mstd101').magnitude_std == float('inf')
  with pytest.raises(ValueError, match="start with 'rand-'"):
    auto_augment.parse_randaugment('auto-m9')
  with pytest.raises(ValueError, match='Unknown RandAugment section'):
    auto_augment.parse_randaugment('rand-m9-x3')


def test_op_levels_follow_pycls_ranges(photo):
  """Level 1 of 'posterize' keeps 4 bits, of 'solarize_inc' inverts everything, 'color_inc' level 0 is identity."""
  image = tf.constant(photo)
  np.testing.assert_array_equal(
    auto_augment.apply_op(image, 'posterize', 1.0, 1.0, FILL), photo & 0xF0
  )
  np.testing.assert_array_equal(
    auto_augment.apply_op(image, 'solarize_inc', 1.0, 1.0, FILL), 255 - photo
  )
  np.testing.assert_array_equal(auto_augment.apply_op(image, 'color_inc', 0.0, 1.0, FILL), photo)
  # pycls keeps >= 1 bit in AutoAugment posterize: level 0 would otherwise give a black image.
  assert (
    auto_augment.apply_op(image, 'posterize', 0.0, 1.0, FILL, posterize_min=1).numpy().max() == 128
  )
  # Geometric ops at level 0 are the identity (as PIL's transform with the identity matrix).
  for name in ('rotate', 'shear_x', 'shear_y', 'trans_x', 'trans_y'):
    np.testing.assert_array_equal(auto_augment.apply_op(image, name, 0.0, -1.0, FILL), photo)
