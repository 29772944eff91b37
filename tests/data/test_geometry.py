"""Eval geometry (resize shorter side to size / crop_pct, centre crop) and the fused JPEG decode+crop."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from vit_jax_stems.data import decode


def test_eval_geometry_known_answers():
  # 500x375 landscape (w x h) at 224 / 0.875: shorter side 375 -> 256, 500 -> int(500 * 256 / 375) = 341,
  # crop offsets ceil((256 - 224) / 2) = 16 and ceil((341 - 224) / 2) = 59 (pycls scale_and_center_crop).
  assert decode.eval_geometry(375, 500, 224, 0.875) == ((256, 341), (16, 59))
  assert decode.eval_geometry(500, 375, 224, 0.875) == ((341, 256), (59, 16))
  assert decode.eval_geometry(28, 28, 32, 0.875) == ((36, 36), (2, 2))
  (h, w), (top, left) = decode.eval_geometry(tf.constant(375), tf.constant(500), 224, 0.875)
  assert (int(h), int(w), int(top), int(left)) == (256, 341, 16, 59)


@pytest.mark.parametrize('height,width', [(60, 90), (90, 60)])
def test_eval_preprocessing_matches_pil_resize_and_crop(height, width):
  rng = np.random.RandomState(0)
  image = np.asarray(
    Image.fromarray(rng.randint(0, 256, (6, 9, 3)).astype(np.uint8)).resize(
      (width, height), Image.BILINEAR
    )
  )
  png = io.BytesIO()
  Image.fromarray(image).save(png, format='PNG')
  out = decode.decode_resize_center_crop(
    tf.constant(png.getvalue()), size=64, crop_pct=0.8, method='bilinear', antialias=False
  ).numpy()
  assert out.shape == (64, 64, 3)
  (new_h, new_w), (top, left) = decode.eval_geometry(height, width, 64, 0.8)
  reference = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR), np.float32)
  reference = reference[top : top + 64, left : left + 64]
  assert np.abs(out - reference).mean() < 2.0
  # Negative control: a crop shifted by 4 pixels is clearly worse.
  shifted = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR), np.float32)[
    top + 4 : top + 68, left : left + 64
  ]
  assert np.abs(out - shifted).mean() > 2 * np.abs(out - reference).mean()


def test_fused_jpeg_crop_equals_decode_then_crop():
  rng = np.random.RandomState(1)
  image = np.asarray(
    Image.fromarray(rng.randint(0, 256, (8, 10, 3)).astype(np.uint8)).resize(
      (100, 80), Image.BICUBIC
    )
  )
  jpeg = io.BytesIO()
  Image.fromarray(image).save(jpeg, format='JPEG', quality=90)
  encoded = tf.constant(jpeg.getvalue())
  window = tf.constant([10, 20, 40, 50])
  fused, used, shape = decode.decode_window(encoded, lambda shape: window)
  fused = fused.numpy()
  assert used.numpy().tolist() == [10, 20, 40, 50] and shape.numpy().tolist() == [80, 100]
  full = tf.io.decode_jpeg(encoded, channels=3).numpy()[10:50, 20:70]
  assert fused.shape == (40, 50, 3)
  diff = np.abs(fused.astype(int) - full.astype(int))
  # Identical inside; libjpeg's chroma upsampling at the window's edge may differ by a few levels.
  assert diff[2:-2, 2:-2].max() <= 1 and diff.mean() < 0.5


def test_random_resized_crop_covers_requested_area():
  png = io.BytesIO()
  Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(png, format='PNG')
  areas = []
  for s in range(20):
    _begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      [40, 40, 3],
      tf.zeros([1, 0, 4]),
      seed=[s, 0],
      area_range=(0.25, 0.5),
      aspect_ratio_range=(0.75, 1.33),
      min_object_covered=0.0,
      use_image_if_no_bounding_boxes=True,
    )
    areas.append(int(size[0]) * int(size[1]) / 1600)
  assert min(areas) >= 0.2 and max(areas) <= 0.55
  out = decode.decode_random_resized_crop(
    tf.constant(png.getvalue()),
    tf.constant([0, 0], tf.int64),
    size=24,
    area_range=(0.25, 0.5),
    aspect_range=(0.75, 1.33),
    method='bicubic',
    antialias=True,
  )
  assert out.shape == (24, 24, 3) and out.dtype == tf.uint8
