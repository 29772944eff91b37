"""The fast decode paths against their straightforward definitions (decode whole, tf.image.resize, round, crop)."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from vit_jax_stems.data import decode, fake_imagenet

# (width, height): ImageNet landscape and portrait, an exact 2x downscale (many exact .5 values to round),
# a short side already 256 (no scaling of it), odd sizes, an upscale, a panorama, a square.
_SIZES = [
  (500, 375),
  (375, 500),
  (512, 384),
  (341, 256),
  (257, 301),
  (40, 30),
  (640, 180),
  (224, 224),
]
_SIZE, _CROP_PCT = 224, 0.875


def _photo(width, height, seed=0):
  return fake_imagenet.synthetic_photo(np.random.RandomState(seed), width, height, class_index=3)


def _encode(image, fmt='JPEG'):
  out = io.BytesIO()
  Image.fromarray(image).save(out, format=fmt, **({'quality': 90} if fmt == 'JPEG' else {}))
  return tf.constant(out.getvalue())


def _reference_eval(encoded, method, antialias, shift=0):
  """The definition: resize the whole decoded image (float32), round half to even, clip, centre crop."""
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  height, width = image.shape[:2]
  (new_h, new_w), (top, left) = decode.eval_geometry(height, width, _SIZE, _CROP_PCT)
  resized = tf.image.resize(
    tf.cast(image, tf.float32), [new_h, new_w], method=method, antialias=antialias
  )
  resized = np.clip(np.round(resized.numpy()), 0, 255)  # np.round rounds half to even, as tf.round
  return resized[top + shift : top + shift + _SIZE, left : left + _SIZE]


def _assert_close(out, reference):
  diff = np.abs(out.astype(np.float32) - reference)
  # Without antialiasing the fast path is the definition; with it, float rounding of the translated
  # sample positions may flip a rounding (measured: at most 1.3e-4 of the values, by 1 level).
  assert diff.max() <= 1 and np.mean(diff > 0) < 1e-3, (diff.max(), np.mean(diff > 0))
  return diff


@pytest.mark.parametrize('width,height', _SIZES)
@pytest.mark.parametrize(
  'method,antialias',
  [('bilinear', False), ('bicubic', True), ('bilinear', True), ('bicubic', False)],
)
def test_eval_matches_resize_then_crop(width, height, method, antialias):
  encoded = _encode(_photo(width, height))
  out = decode.decode_resize_center_crop(
    encoded, size=_SIZE, crop_pct=_CROP_PCT, method=method, antialias=antialias
  )
  assert out.dtype == tf.uint8 and out.shape == (_SIZE, _SIZE, 3)
  out = out.numpy()
  diff = _assert_close(out, _reference_eval(encoded, method, antialias))
  if not antialias:
    assert diff.max() == 0
  # Negative control: the crop one row lower is clearly different.
  if height > 30:
    shifted = _reference_eval(encoded, method, antialias, shift=1)
    assert np.mean(np.abs(out.astype(np.float32) - shifted) > 1) > 0.1


@pytest.mark.parametrize('method', ['bilinear', 'bicubic'])
def test_eval_png_takes_the_same_path(method):
  encoded = _encode(_photo(90, 60, seed=1), fmt='PNG')
  out = decode.decode_resize_center_crop(
    encoded, size=_SIZE, crop_pct=_CROP_PCT, method=method, antialias=True
  )
  _assert_close(out.numpy(), _reference_eval(encoded, method, True))


@pytest.mark.parametrize('fmt', ['JPEG', 'PNG'])
@pytest.mark.parametrize('method,antialias', [('bilinear', False), ('bicubic', True)])
def test_random_resized_crop_is_resize_of_the_sampled_window(fmt, method, antialias):
  encoded = _encode(_photo(500, 375, seed=2), fmt=fmt)
  kwargs = dict(
    size=_SIZE,
    area_range=(0.08, 1.0),
    aspect_range=(3 / 4, 4 / 3),
    method=method,
    antialias=antialias,
  )
  for s in range(3):
    seed = tf.constant([s, 5], tf.int64)
    out = decode.decode_random_resized_crop(encoded, seed, **kwargs)
    assert out.dtype == tf.uint8 and out.shape == (_SIZE, _SIZE, 3)
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
      [375, 500, 3],
      bounding_boxes=tf.zeros([1, 0, 4]),
      seed=seed,
      min_object_covered=0.0,
      aspect_ratio_range=(3 / 4, 4 / 3),
      area_range=(0.08, 1.0),
      max_attempts=10,
      use_image_if_no_bounding_boxes=True,
    )
    window = [int(begin[0]), int(begin[1]), int(crop_size[0]), int(crop_size[1])]
    if fmt == 'JPEG':  # the definition decodes the window fused, as the Inception pipelines do
      crop = tf.image.decode_and_crop_jpeg(encoded, window, channels=3)
    else:
      crop = tf.io.decode_png(encoded, channels=3)[
        window[0] : window[0] + window[2], window[1] : window[1] + window[3]
      ]
    reference = tf.image.resize(
      tf.cast(crop, tf.float32), [_SIZE, _SIZE], method=method, antialias=antialias
    )
    reference = np.clip(np.round(reference.numpy()), 0, 255)
    np.testing.assert_array_equal(out.numpy(), reference)


def test_unknown_method_fails_early():
  with pytest.raises(ValueError, match='interpolation'):
    decode.decode_resize_center_crop(
      tf.constant(b''), size=8, crop_pct=0.875, method='area', antialias=True
    )


@pytest.mark.parametrize('method', ['bilinear', 'bicubic'])
@pytest.mark.parametrize(
  'in_hw,out_hw,translation',
  [
    ((37, 50), (16, 24), (0.0, 0.0)),
    ((50, 37), (23, 17), (-3.7, 1.25)),
    ((9, 13), (20, 16), (0.5, -2.0)),
  ],
)
def test_scale_and_translate_in_row_passes_is_the_op_bit_for_bit(
  method, in_hw, out_hw, translation
):
  image = tf.constant(np.random.RandomState(3).randint(0, 256, in_hw + (3,)), tf.uint8)
  scale = tf.constant([out_hw[0] / in_hw[0] * 0.9, out_hw[1] / in_hw[1] * 1.1], tf.float32)
  kernel = {'bilinear': 'triangle', 'bicubic': 'keyscubic'}[method]
  reference = tf.raw_ops.ScaleAndTranslate(
    images=image[None],
    size=out_hw,
    scale=scale,
    translation=translation,
    kernel_type=kernel,
    antialias=True,
  )[0]
  out = decode.scale_and_translate(image, out_hw, scale, tf.constant(translation), method)
  np.testing.assert_array_equal(out.numpy(), reference.numpy())
