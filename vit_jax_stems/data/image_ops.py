"""PIL-equivalent image operations in TensorFlow, the building blocks of AutoAugment and RandAugment.

Each op takes a uint8 (H, W, 3) tensor and returns one of the same shape and dtype, and follows the
PIL function that pycls (`pycls/datasets/augment.py`) and timm (`timm/data/auto_augment.py`) call, so
that the policies mean the same here. Written in core TF ops: tensorflow_addons is dead, geometric
ops use tf.raw_ops.ImageProjectiveTransformV3 (the kernel Keras uses).

Known differences from PIL: geometric ops interpolate bilinearly with pixel centres at integer
coordinates (PIL uses half-pixel centres; timm/DeiT also pick bicubic, which this kernel lacks), and
blends round to nearest where PIL truncates; both change pixel values by at most about one level.
"""
import math

import tensorflow as tf


def _to_uint8(image: tf.Tensor) -> tf.Tensor:
  return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def _blend(degenerate: tf.Tensor, image: tf.Tensor, factor) -> tf.Tensor:
  """PIL Image.blend(degenerate, image, factor): factor 0 gives degenerate, 1 the image, >1 extrapolates."""
  degenerate = tf.cast(degenerate, tf.float32)
  return _to_uint8(degenerate + tf.cast(factor, tf.float32) * (tf.cast(image, tf.float32) - degenerate))


def _grayscale(image: tf.Tensor) -> tf.Tensor:
  """PIL convert('L'): ITU-R 601-2 luma L = R*299/1000 + G*587/1000 + B*114/1000, as float."""
  weights = tf.constant([0.299, 0.587, 0.114], tf.float32)
  return tf.reduce_sum(tf.cast(image, tf.float32) * weights, axis=-1, keepdims=True)


def identity(image, *_):
  return image


def auto_contrast(image: tf.Tensor) -> tf.Tensor:
  """ImageOps.autocontrast: stretch each channel so its min maps to 0 and max to 255."""
  x = tf.cast(image, tf.float32)
  lo = tf.reduce_min(x, axis=[0, 1], keepdims=True)
  hi = tf.reduce_max(x, axis=[0, 1], keepdims=True)
  scale = tf.where(hi > lo, 255.0 / tf.maximum(hi - lo, 1.0), 1.0)
  offset = tf.where(hi > lo, -lo * scale, 0.0)
  return tf.cast(tf.clip_by_value(tf.floor(x * scale + offset), 0.0, 255.0), tf.uint8)


def _equalize_channel(channel: tf.Tensor) -> tf.Tensor:
  histogram = tf.histogram_fixed_width(tf.cast(channel, tf.int32), [0, 255], nbins=256)
  nonzero = tf.boolean_mask(histogram, histogram > 0)
  # PIL ImageOps.equalize: step = (count of all pixels but the last non-empty bin) // 255.
  step = (tf.reduce_sum(nonzero) - nonzero[-1]) // 255
  safe_step = tf.maximum(step, 1)
  lut = (tf.cumsum(histogram) + safe_step // 2) // safe_step
  lut = tf.clip_by_value(tf.concat([[0], lut[:-1]], axis=0), 0, 255)
  return tf.where(step > 0, tf.cast(tf.gather(lut, tf.cast(channel, tf.int32)), tf.uint8), channel)


def equalize(image: tf.Tensor) -> tf.Tensor:
  """ImageOps.equalize: per-channel histogram equalisation."""
  return tf.stack([_equalize_channel(image[..., c]) for c in range(3)], axis=-1)


def invert(image: tf.Tensor) -> tf.Tensor:
  return 255 - image


def posterize(image: tf.Tensor, bits) -> tf.Tensor:
  """ImageOps.posterize: keep the `bits` most significant bits (0 bits gives black)."""
  shift = tf.cast(8 - tf.clip_by_value(tf.cast(bits, tf.int32), 0, 8), tf.uint8)
  return tf.bitwise.left_shift(tf.bitwise.right_shift(image, shift), shift)


def solarize(image: tf.Tensor, threshold) -> tf.Tensor:
  """ImageOps.solarize: invert every value >= threshold (threshold 256 changes nothing)."""
  threshold = tf.cast(threshold, tf.int32)
  return tf.where(tf.cast(image, tf.int32) < threshold, image, 255 - image)


def solarize_add(image: tf.Tensor, addition, threshold=128) -> tf.Tensor:
  """timm solarize_add: add `addition` (saturating) to values below threshold."""
  x = tf.cast(image, tf.int32)
  added = tf.minimum(x + tf.cast(addition, tf.int32), 255)
  return tf.cast(tf.where(x < threshold, added, x), tf.uint8)


def color(image: tf.Tensor, factor) -> tf.Tensor:
  """ImageEnhance.Color: blend with the grayscale image."""
  return _blend(tf.tile(_grayscale(image), [1, 1, 3]), image, factor)


def contrast(image: tf.Tensor, factor) -> tf.Tensor:
  """ImageEnhance.Contrast: blend with a flat image at the rounded mean grayscale level."""
  mean = tf.floor(tf.reduce_mean(_grayscale(image)) + 0.5)
  return _blend(tf.fill(tf.shape(image), mean), image, factor)


def brightness(image: tf.Tensor, factor) -> tf.Tensor:
  """ImageEnhance.Brightness: blend with black."""
  return _blend(tf.zeros_like(image), image, factor)


def sharpness(image: tf.Tensor, factor) -> tf.Tensor:
  """ImageEnhance.Sharpness: blend with PIL's SMOOTH filter output; border pixels stay unblurred."""
  x = tf.cast(image, tf.float32)[None]
  kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32) / 13.0
  kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
  smooth = tf.round(tf.nn.depthwise_conv2d(x, kernel, strides=[1, 1, 1, 1], padding='VALID'))[0]
  degenerate = tf.pad(smooth, [[1, 1], [1, 1], [0, 0]])
  interior = tf.pad(tf.ones_like(smooth), [[1, 1], [1, 1], [0, 0]])
  degenerate = interior * degenerate + (1.0 - interior) * tf.cast(image, tf.float32)
  return _blend(degenerate, image, factor)


def affine(image: tf.Tensor, matrix, fill) -> tf.Tensor:
  """PIL Image.transform(AFFINE, matrix): output pixel (x, y) samples input (a x + b y + c, d x + e y + f).

  Pixels from outside the image take the RGB colour `fill`. Bilinear interpolation.
  """
  fill = tf.reshape(tf.cast(fill, tf.float32), [1, 1, 3])
  shifted = (tf.cast(image, tf.float32) - fill)[None]  # fill with 0 then shift back: a per-channel fill
  matrix = tf.cast(tf.concat([tf.reshape(matrix, [6]), [0.0, 0.0]], axis=0), tf.float32)[None]
  out = tf.raw_ops.ImageProjectiveTransformV3(
      images=shifted, transforms=matrix, output_shape=tf.shape(image)[:2], fill_value=0.0,
      interpolation='BILINEAR', fill_mode='CONSTANT')
  return _to_uint8(out[0] + fill)


def rotate(image: tf.Tensor, degrees, fill) -> tf.Tensor:
  """Image.rotate(degrees): counter-clockwise about the image centre, same size."""
  h = tf.cast(tf.shape(image)[0], tf.float32)
  w = tf.cast(tf.shape(image)[1], tf.float32)
  angle = -tf.cast(degrees, tf.float32) * (math.pi / 180.0)
  cos, sin = tf.cos(angle), tf.sin(angle)
  cx, cy = (w - 1) / 2, (h - 1) / 2
  matrix = tf.stack([cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy])
  return affine(image, matrix, fill)


def shear_x(image, factor, fill):
  return affine(image, tf.stack([1.0, tf.cast(factor, tf.float32), 0.0, 0.0, 1.0, 0.0]), fill)


def shear_y(image, factor, fill):
  return affine(image, tf.stack([1.0, 0.0, 0.0, tf.cast(factor, tf.float32), 1.0, 0.0]), fill)


def translate_x(image, fraction, fill):
  """Moves content left by fraction * width (right for negative fraction)."""
  pixels = tf.cast(fraction, tf.float32) * tf.cast(tf.shape(image)[1], tf.float32)
  return affine(image, tf.stack([1.0, 0.0, pixels, 0.0, 1.0, 0.0]), fill)


def translate_y(image, fraction, fill):
  pixels = tf.cast(fraction, tf.float32) * tf.cast(tf.shape(image)[0], tf.float32)
  return affine(image, tf.stack([1.0, 0.0, 0.0, 0.0, 1.0, pixels]), fill)
