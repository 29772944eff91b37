"""PIL-equivalent image operations in TensorFlow, the building blocks of AutoAugment and RandAugment.

Each op takes a uint8 (H, W, 3) tensor and returns one of the same shape and dtype, and follows the
PIL function that pycls (`pycls/datasets/augment.py`) and timm (`timm/data/auto_augment.py`) call, so
that the policies mean the same here. Arithmetic follows Pillow's C code (libImaging Blend.c,
Convert.c, Filter.c, Geometry.c and ImageOps/ImageEnhance), so most ops give PIL's exact pixels.

Speed (these run per training image on the host, inside tf.data): a TF graph of whole-image ops pays
a pass over memory per op, and some TF kernels are slow per element (tf.where ~1.1 ms, tf.gather
~0.7 ms, ImageProjectiveTransformV3 ~1.7 ms for 224x224x3). So every op except the cheapest bitwise
ones is one XLA-compiled kernel (`tf.function(jit_compile=True)`, the CPU JIT that ships with TF,
compiled once per image shape and process), which fuses the per-pixel arithmetic into a single
vectorised pass. What XLA's CPU code does badly is kept out of the kernels: histograms (scatter) are
TF ops, and per-row/column coordinate vectors of the geometric ops are computed by TF and passed in.

Known difference from PIL: geometric ops compute sample coordinates in 16.16 fixed point instead of
double, which can move a value by one level where a coordinate falls within 2**-16 of a pixel
boundary; timm/DeiT RandAugment also picks bicubic for geometric ops, these are bilinear (pycls).
"""
import math

import tensorflow as tf

_xla = tf.function(jit_compile=True, autograph=False, reduce_retracing=True)


def _floor_to_uint8(x: tf.Tensor) -> tf.Tensor:
  """C's (UINT8) cast of a float clipped to [0, 255], as Pillow does after blending."""
  return tf.cast(tf.clip_by_value(tf.floor(x), 0.0, 255.0), tf.uint8)


def _blend(degenerate: tf.Tensor, image: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
  """Image.blend(degenerate, image, factor) (Blend.c): float32 d + factor * (x - d), truncated and clipped.

  factor 0 gives degenerate, 1 the image, > 1 extrapolates. degenerate holds integer levels.
  """
  d = tf.cast(degenerate, tf.float32)
  return _floor_to_uint8(d + factor * (tf.cast(image, tf.float32) - d))


def _luma(x: tf.Tensor) -> tf.Tensor:
  """convert('L') of int32 RGB: ITU-R 601-2 in 16.16 fixed point, rounded (Convert.c L24)."""
  return tf.bitwise.right_shift(x[..., 0] * 19595 + x[..., 1] * 38470 + x[..., 2] * 7471 + 0x8000, 16)


def identity(image, *_):
  return image


def auto_contrast(image: tf.Tensor) -> tf.Tensor:
  """ImageOps.autocontrast (cutoff 0): per channel, stretch [min, max] to [0, 255] through a LUT."""
  lo = tf.cast(tf.reduce_min(image, axis=[0, 1]), tf.float64)[:, None]
  hi = tf.cast(tf.reduce_max(image, axis=[0, 1]), tf.float64)[:, None]
  levels = tf.range(256, dtype=tf.float64)[None, :]
  # ImageOps.autocontrast: scale = 255 / (hi - lo), offset = -lo * scale, int(level * scale + offset)
  # in double. TF ops, not XLA: XLA's CPU compiler fuses the multiply-add into an FMA, which rounds
  # differently (level 33 of [5, 243] gives 30 there, Python's 29.999999999999996 gives 29).
  scale = 255.0 / tf.maximum(hi - lo, 1.0)
  stretched = tf.clip_by_value(tf.floor(levels * scale + (-lo * scale)), 0.0, 255.0)
  lut = tf.cast(tf.where(hi > lo, stretched, levels), tf.uint8)  # (3, 256); hi <= lo: identity
  return _lookup(image, lut)


def _apply_lut(image, lut):
  """image[..., c] -> lut[c, image[..., c]]; inside XLA a gather from a 768-entry table is cheap."""
  index = tf.cast(image, tf.int32) + tf.constant([0, 256, 512])
  return tf.gather(tf.reshape(lut, [-1]), index)


_lookup = _xla(_apply_lut)


@_xla
def _equalize(image, histogram):
  # ImageOps.equalize, per channel: step = (pixels outside the last non-empty bin) // 255; with
  # step 0 the channel is unchanged, else lut[v] = (n + step // 2) // step with n = pixels below v.
  levels = tf.range(256)[None, :]
  last = tf.reduce_max(tf.where(histogram > 0, levels, -1), axis=1, keepdims=True)
  last_count = tf.reduce_sum(tf.where(levels == last, histogram, 0), axis=1, keepdims=True)
  step = (tf.reduce_sum(histogram, axis=1, keepdims=True) - last_count) // 255
  safe_step = tf.maximum(step, 1)
  below = tf.cumsum(histogram, axis=1, exclusive=True)
  lut = tf.where(step > 0, tf.minimum((below + safe_step // 2) // safe_step, 255), levels)
  return _apply_lut(image, tf.cast(lut, tf.uint8))


def _histograms(image: tf.Tensor) -> tf.Tensor:
  """(3, 256) int32 per-channel histograms; TF's kernel, XLA's CPU scatter is slower."""
  return tf.stack([tf.histogram_fixed_width(tf.cast(image[..., c], tf.float32), [0.0, 256.0], nbins=256)
                   for c in range(3)])


def equalize(image: tf.Tensor) -> tf.Tensor:
  """ImageOps.equalize: per-channel histogram equalisation."""
  return _equalize(image, _histograms(image))


def invert(image: tf.Tensor) -> tf.Tensor:
  """ImageOps.invert: 255 - x, which for uint8 is the bitwise complement."""
  return tf.bitwise.invert(image)


def posterize(image: tf.Tensor, bits) -> tf.Tensor:
  """ImageOps.posterize: keep the `bits` most significant bits (0 bits gives black)."""
  shift = 8 - tf.clip_by_value(tf.cast(bits, tf.int32), 0, 8)
  mask = tf.cast(tf.bitwise.bitwise_and(tf.bitwise.left_shift(255, shift), 255), tf.uint8)
  return tf.bitwise.bitwise_and(image, mask)


@_xla
def _solarize(image, threshold):
  x = tf.cast(image, tf.int32)
  return tf.cast(tf.where(x < threshold, x, 255 - x), tf.uint8)


def solarize(image: tf.Tensor, threshold) -> tf.Tensor:
  """ImageOps.solarize: invert every value >= threshold (threshold 256 changes nothing)."""
  return _solarize(image, tf.cast(threshold, tf.int32))


@_xla
def _solarize_add(image, addition, threshold):
  x = tf.cast(image, tf.int32)
  return tf.cast(tf.where(x < threshold, tf.minimum(x + addition, 255), x), tf.uint8)


def solarize_add(image: tf.Tensor, addition, threshold=128) -> tf.Tensor:
  """timm solarize_add: add `addition` (saturating) to values below threshold."""
  return _solarize_add(image, tf.cast(addition, tf.int32), tf.cast(threshold, tf.int32))


@_xla
def _color(image, factor):
  gray = _luma(tf.cast(image, tf.int32))[..., None]
  return _blend(gray, image, factor)


def color(image: tf.Tensor, factor) -> tf.Tensor:
  """ImageEnhance.Color: blend with the image converted to L and back to RGB."""
  return _color(image, tf.cast(factor, tf.float32))


@_xla
def _contrast(image, factor):
  gray = _luma(tf.cast(image, tf.int32))
  count = tf.cast(tf.size(gray), tf.float64)
  mean = tf.floor(tf.cast(tf.reduce_sum(gray), tf.float64) / count + 0.5)  # int(mean + 0.5)
  return _blend(tf.cast(mean, tf.float32), image, factor)


def contrast(image: tf.Tensor, factor) -> tf.Tensor:
  """ImageEnhance.Contrast: blend with a flat image at the rounded mean of the L image."""
  return _contrast(image, tf.cast(factor, tf.float32))


@_xla
def _brightness(image, factor):
  return _floor_to_uint8(factor * tf.cast(image, tf.float32))


def brightness(image: tf.Tensor, factor) -> tf.Tensor:
  """ImageEnhance.Brightness: blend with black."""
  return _brightness(image, tf.cast(factor, tf.float32))


@_xla
def _sharpness(image, factor):
  x = tf.cast(image, tf.int32)
  h, w = tf.shape(x)[0], tf.shape(x)[1]
  # ImageFilter.SMOOTH: 3x3 kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13, rounded; Filter.c copies
  # the outermost rows and columns unfiltered.
  total = 4 * x[1:-1, 1:-1]
  for dy in range(3):
    for dx in range(3):
      total += x[dy:h - 2 + dy, dx:w - 2 + dx]
  smooth = tf.pad((total + 6) // 13, [[1, 1], [1, 1], [0, 0]])
  rows = tf.range(h)[:, None, None]
  cols = tf.range(w)[None, :, None]
  interior = (rows > 0) & (rows < h - 1) & (cols > 0) & (cols < w - 1)
  return _blend(tf.where(interior, smooth, x), image, factor)


def sharpness(image: tf.Tensor, factor) -> tf.Tensor:
  """ImageEnhance.Sharpness: blend with PIL's SMOOTH filter output."""
  return _sharpness(image, tf.cast(factor, tf.float32))


_FIXED = 65536  # 16.16 fixed point for sample coordinates


@_xla
def _warp(image, ux, vx, uy, vy, fill):
  """Bilinear sampling at fixed-point coordinates (ux[x] + vx[y], uy[x] + vy[y]) (Geometry.c rules)."""
  h, w = tf.shape(image)[0], tf.shape(image)[1]
  sx = ux[None, :] + vx[:, None]  # (sample x - 0.5) * 2**16
  sy = uy[None, :] + vy[:, None]
  half = _FIXED // 2
  # Geometry.c bilinear_filter32RGB: a sample point outside [0, w) x [0, h) is `fill`; otherwise
  # taps at floor(p - 0.5) and one more, each clamped to the image (edge pixels repeat).
  inside = (sx >= -half) & (sx < w * _FIXED - half) & (sy >= -half) & (sy < h * _FIXED - half)
  x0 = tf.bitwise.right_shift(sx, 16)
  y0 = tf.bitwise.right_shift(sy, 16)
  dx = (tf.cast(tf.bitwise.bitwise_and(sx, _FIXED - 1), tf.float32) * (1.0 / _FIXED))[..., None]
  dy = (tf.cast(tf.bitwise.bitwise_and(sy, _FIXED - 1), tf.float32) * (1.0 / _FIXED))[..., None]
  left, right = tf.clip_by_value(x0, 0, w - 1), tf.clip_by_value(x0 + 1, 0, w - 1)
  top, bottom = tf.clip_by_value(y0, 0, h - 1) * w, tf.clip_by_value(y0 + 1, 0, h - 1) * w
  table = tf.reshape(tf.cast(image, tf.float32), [-1])
  channels = tf.range(3)

  def tap(pixel):
    return tf.gather(table, pixel[..., None] * 3 + channels)

  top_left, top_right, bottom_left, bottom_right = (
      tap(top + left), tap(top + right), tap(bottom + left), tap(bottom + right))
  upper = top_left + (top_right - top_left) * dx
  lower = bottom_left + (bottom_right - bottom_left) * dx
  value = tf.floor(upper + (lower - upper) * dy)  # Geometry.c casts the double to UINT8
  return tf.cast(tf.where(inside[..., None], value, fill), tf.uint8)


def affine(image: tf.Tensor, matrix, fill) -> tf.Tensor:
  """PIL Image.transform(size, AFFINE, matrix, BILINEAR, fillcolor=fill).

  Output pixel (x, y) takes the input at (a x' + b y' + c, d x' + e y' + f) with x' = x + 0.5,
  y' = y + 0.5 (PIL's pixel-centre convention), bilinearly; samples outside the image take the RGB
  colour `fill`.
  """
  a, b, c, d, e, f = tf.unstack(tf.cast(tf.reshape(matrix, [6]), tf.float64))
  # Separable coordinates computed here (256-element vectors, TF): inside the XLA kernel such
  # small producers get re-evaluated for every pixel.
  xs = tf.range(tf.shape(image)[1], dtype=tf.float64) + 0.5
  ys = tf.range(tf.shape(image)[0], dtype=tf.float64) + 0.5

  def fixed(v):
    return tf.cast(tf.round(v * _FIXED), tf.int32)

  return _warp(image, fixed(a * xs), fixed(b * ys + c - 0.5), fixed(d * xs), fixed(e * ys + f - 0.5),
               tf.cast(tf.reshape(fill, [3]), tf.float32))


def rotate(image: tf.Tensor, degrees, fill) -> tf.Tensor:
  """Image.rotate(degrees): counter-clockwise about the image centre, same size (Image.py matrix)."""
  h = tf.cast(tf.shape(image)[0], tf.float64)
  w = tf.cast(tf.shape(image)[1], tf.float64)
  angle = -tf.cast(degrees, tf.float64) * (math.pi / 180.0)
  cos, sin = tf.cos(angle), tf.sin(angle)
  cx, cy = w / 2, h / 2
  matrix = tf.stack([cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy])
  return affine(image, matrix, fill)


def _f64(value):
  return tf.cast(value, tf.float64)


def shear_x(image, factor, fill):
  return affine(image, tf.stack([_f64(1.0), _f64(factor), _f64(0.0), _f64(0.0), _f64(1.0), _f64(0.0)]), fill)


def shear_y(image, factor, fill):
  return affine(image, tf.stack([_f64(1.0), _f64(0.0), _f64(0.0), _f64(factor), _f64(1.0), _f64(0.0)]), fill)


def translate_x(image, fraction, fill):
  """Moves content left by fraction * width (right for negative fraction)."""
  pixels = _f64(fraction) * tf.cast(tf.shape(image)[1], tf.float64)
  return affine(image, tf.stack([_f64(1.0), _f64(0.0), pixels, _f64(0.0), _f64(1.0), _f64(0.0)]), fill)


def translate_y(image, fraction, fill):
  pixels = _f64(fraction) * tf.cast(tf.shape(image)[0], tf.float64)
  return affine(image, tf.stack([_f64(1.0), _f64(0.0), _f64(0.0), _f64(0.0), _f64(1.0), pixels]), fill)
