"""TF augmentation ops against PIL (the library pycls and timm call), and the AutoAugment/RandAugment policies."""
import numpy as np
from PIL import Image, ImageEnhance, ImageOps
import pytest
import tensorflow as tf

from vit_jax_stems.data import auto_augment
from vit_jax_stems.data import image_ops


@pytest.fixture(scope='module')
def photo():
  rng = np.random.RandomState(0)
  coarse = rng.randint(0, 256, (6, 8, 3)).astype(np.uint8)
  smooth = np.asarray(Image.fromarray(coarse).resize((40, 30), Image.BICUBIC), np.int32)
  return np.clip(smooth + rng.randint(-20, 21, smooth.shape), 0, 255).astype(np.uint8)


FILL = (128, 128, 128)
# (our op, PIL reference, max abs difference allowed, allowed fraction of differing pixels)
PIXEL_CASES = {
    'auto_contrast': (image_ops.auto_contrast, ImageOps.autocontrast, 1, 1.0),
    'equalize': (image_ops.equalize, ImageOps.equalize, 0, 0.0),
    'invert': (image_ops.invert, ImageOps.invert, 0, 0.0),
    'posterize2': (lambda x: image_ops.posterize(x, 2), lambda im: ImageOps.posterize(im, 2), 0, 0.0),
    'solarize100': (lambda x: image_ops.solarize(x, 100), lambda im: ImageOps.solarize(im, 100), 0, 0.0),
    'solarize_add40': (lambda x: image_ops.solarize_add(x, 40),
                       lambda im: im.point([min(255, i + 40) if i < 128 else i for i in range(256)] * 3), 0, 0.0),
    'color1.7': (lambda x: image_ops.color(x, 1.7), lambda im: ImageEnhance.Color(im).enhance(1.7), 2, 1.0),
    'color0.3': (lambda x: image_ops.color(x, 0.3), lambda im: ImageEnhance.Color(im).enhance(0.3), 2, 1.0),
    'contrast1.5': (lambda x: image_ops.contrast(x, 1.5), lambda im: ImageEnhance.Contrast(im).enhance(1.5), 2, 1.0),
    'brightness0.4': (lambda x: image_ops.brightness(x, 0.4), lambda im: ImageEnhance.Brightness(im).enhance(0.4), 1, 1.0),
    'sharpness1.9': (lambda x: image_ops.sharpness(x, 1.9), lambda im: ImageEnhance.Sharpness(im).enhance(1.9), 2, 1.0),
}


@pytest.mark.parametrize('name', sorted(PIXEL_CASES))
def test_pixel_ops_match_pil(photo, name):
  ours, reference, max_diff, _ = PIXEL_CASES[name]
  out = ours(tf.constant(photo)).numpy()
  expected = np.asarray(reference(Image.fromarray(photo)))
  assert out.dtype == np.uint8 and out.shape == photo.shape
  assert np.abs(out.astype(int) - expected.astype(int)).max() <= max_diff


GEOMETRY_CASES = {
    'rotate20': (lambda x: image_ops.rotate(x, 20.0, FILL), lambda im: im.rotate(20, resample=Image.BILINEAR, fillcolor=FILL)),
    'rotate-25': (lambda x: image_ops.rotate(x, -25.0, FILL), lambda im: im.rotate(-25, resample=Image.BILINEAR, fillcolor=FILL)),
    'shear_x0.3': (lambda x: image_ops.shear_x(x, 0.3, FILL),
                   lambda im: im.transform(im.size, Image.AFFINE, (1, 0.3, 0, 0, 1, 0), Image.BILINEAR, fillcolor=FILL)),
    'shear_y-0.2': (lambda x: image_ops.shear_y(x, -0.2, FILL),
                    lambda im: im.transform(im.size, Image.AFFINE, (1, 0, 0, -0.2, 1, 0), Image.BILINEAR, fillcolor=FILL)),
    'trans_x0.25': (lambda x: image_ops.translate_x(x, 0.25, FILL),
                    lambda im: im.transform(im.size, Image.AFFINE, (1, 0, 10, 0, 1, 0), Image.BILINEAR, fillcolor=FILL)),
    'trans_y-0.2': (lambda x: image_ops.translate_y(x, -0.2, FILL),
                    lambda im: im.transform(im.size, Image.AFFINE, (1, 0, 0, 0, 1, -6), Image.BILINEAR, fillcolor=FILL)),
}


@pytest.mark.parametrize('name', sorted(GEOMETRY_CASES))
def test_geometric_ops_match_pil(photo, name):
  """Same geometry as PIL: direction, centre and fill agree; only sub-pixel interpolation differs."""
  ours, reference = GEOMETRY_CASES[name]
  out = ours(tf.constant(photo)).numpy().astype(int)
  expected = np.asarray(reference(Image.fromarray(photo))).astype(int)
  diff = np.abs(out - expected)
  assert np.median(diff) <= 3 and np.mean(diff > 40) < 0.03, (np.median(diff), np.mean(diff > 40))
  # A wrong direction or centre would be far off: compare with the opposite transform as a negative control.
  assert np.mean(diff) < 0.5 * np.mean(np.abs(out - photo.astype(int)))


def test_policies_are_deterministic_and_vary(photo):
  image = tf.constant(photo)
  spec = auto_augment.parse_randaugment('rand-m9-mstd0.5-inc1')
  for policy in (lambda s: auto_augment.auto_augment(image, s), lambda s: auto_augment.rand_augment(image, s, spec)):
    outs = [policy(tf.constant([s, 0], tf.int64)).numpy() for s in range(12)]
    np.testing.assert_array_equal(outs[0], policy(tf.constant([0, 0], tf.int64)).numpy())
    assert all(o.shape == photo.shape and o.dtype == np.uint8 for o in outs)
    assert len({o.tobytes() for o in outs}) >= 6  # different seeds, different augmentations


def test_parse_randaugment():
  spec = auto_augment.parse_randaugment('rand-m9-mstd0.5-inc1')
  assert (spec.num_layers, spec.magnitude, spec.magnitude_std, spec.prob, spec.increasing) == (2, 9.0, 0.5, 0.5, True)
  assert auto_augment.parse_randaugment('rand-n3-m7-mstd101').magnitude_std == float('inf')
  with pytest.raises(ValueError, match="start with 'rand-'"):
    auto_augment.parse_randaugment('auto-m9')
  with pytest.raises(ValueError, match='Unknown RandAugment section'):
    auto_augment.parse_randaugment('rand-m9-x3')


def test_op_levels_follow_pycls_ranges(photo):
  """Level 1 of 'posterize' keeps 4 bits, of 'solarize_inc' inverts everything, 'color_inc' level 0 is identity."""
  image = tf.constant(photo)
  np.testing.assert_array_equal(auto_augment.apply_op(image, 'posterize', 1.0, 1.0, FILL), photo & 0xF0)
  np.testing.assert_array_equal(auto_augment.apply_op(image, 'solarize_inc', 1.0, 1.0, FILL), 255 - photo)
  np.testing.assert_array_equal(auto_augment.apply_op(image, 'color_inc', 0.0, 1.0, FILL), photo)
  # pycls keeps >= 1 bit in AutoAugment posterize: level 0 would otherwise give a black image.
  assert auto_augment.apply_op(image, 'posterize', 0.0, 1.0, FILL, posterize_min=1).numpy().max() == 128
