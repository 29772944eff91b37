"""PIL-equivalent image operations in TensorFlow, the building blocks of AutoAugment and RandAugment.

Each op takes a uint8 (H, W, 3) tensor and returns one of the same shape and dtype, and follows the
PIL function that pycls (`pycls/datasets/augment.py`) and timm (`timm/data/auto_augment.py`) call, so
that the policies mean the same here. Arithmetic follows Pillow's C code (libImaging Blend.c,
Convert.c, Filter.c, Geometry.c, and ImageOps/ImageEnhance), so most ops give PIL's exact pixels.

Speed (these run per training image on the host, inside tf.data; CPU ms for 224x224x3 below). A
graph of whole-image TF ops is slow here: each op is a pass over memory and some kernels are slow per
element (tf.where ~1.1, tf.gather ~0.7, ImageProjectiveTransformV3 ~1.7). So each op's per-pixel
work is one XLA-compiled kernel (`tf.function(jit_compile=True)`, TF's own CPU JIT, compiled once
per image shape and process) that fuses it into a vectorised pass. What XLA's CPU code does badly
stays in TF and enters a kernel as a small input: histograms (a scatter in XLA), LUTs that need
double arithmetic without fused multiply-adds (XLA contracts a * b + c into an FMA, which rounds
differently from Pillow), and per-row/column sample coordinates (XLA re-evaluates such small
producers for every pixel of a gather). `apply` picks the op with one tf.switch_case whose branches
are kernel calls: TF lowers it to Switch/Merge and walks every untaken node, so branches are kept
small (~0.06 ms for the switch; one XLA conditional over all ops was dearer, XLA's CPU runtime
pays ~0.02 ms per untaken branch).

Differences from PIL: the pixel ops are bit-exact; geometric ops sample at PIL's points (double) but
interpolate in float32, which moves a value by one level where PIL's double result is within ~1e-5
of an integer (a few % of values for "round" shears or translations, ~1 in 5,000 for rotations).
timm/DeiT RandAugment also picks bicubic for geometric ops; these are bilinear, as in pycls.
"""

import math

from vit_jax_stems.data.tf_host import tf

# Ops of `apply`, by index. 'identity' is 0 so that a not-applied op can be expressed as op 0.
OPS = (
  'identity',
  'auto_contrast',
  'equalize',
  'invert',
  'posterize',
  'solarize',
  'solarize_add',
  'color',
  'contrast',
  'brightness',
  'sharpness',
  'rotate',
  'shear_x',
  'shear_y',
  'translate_x',
  'translate_y',
)
_OP = {name: i for i, name in enumerate(OPS)}
_GEOMETRIC = ('rotate', 'shear_x', 'shear_y', 'translate_x', 'translate_y')

# Branches of `apply`: all geometric ops share one.
_BRANCHES = OPS[: OPS.index('rotate')] + ('warp',)
_BRANCH_OF_OP = tf.constant(
  [_BRANCHES.index('warp' if n in _GEOMETRIC else n) for n in OPS], tf.int32
)


def apply(image: tf.Tensor, op, arg, fill=(128, 128, 128)) -> tf.Tensor:
  """Applies OPS[op] with argument `arg` to a uint8 (H, W, 3) image; op and arg may be tensors.

  arg is: posterize bits; solarize threshold; solarize_add addition (threshold 128); the blend
  factor of color, contrast, brightness, sharpness; degrees for rotate; the shear factor; the
  translation as a fraction of the width or height. It is unused by identity, auto_contrast,
  equalize and invert. fill: RGB of pixels that geometric ops bring in from outside the image.
  """
  op = tf.convert_to_tensor(op, tf.int32)
  # Double, as the Python floats pycls and timm hand to PIL (tf.cast would first make a Python
  # float a float32 tensor).
  arg = tf.cast(arg, tf.float64) if tf.is_tensor(arg) else tf.constant(arg, tf.float64)
  # Each branch is one or two nodes: TF walks every node of the untaken branches on every call.
  branches = {
    'identity': lambda: image,
    'auto_contrast': lambda: _auto_contrast_kernel(
      image, tf.reduce_min(image, axis=[0, 1]), tf.reduce_max(image, axis=[0, 1])
    ),
    'equalize': lambda: _lut_kernel(image, _equalize_lut_kernel(_histograms(image))),
    'invert': lambda: tf.bitwise.invert(image),
    'posterize': lambda: _posterize(image, arg),  # two bitwise TF ops beat an XLA launch
    'solarize': lambda: _solarize_kernel(image, arg),
    'solarize_add': lambda: _solarize_add_kernel(image, arg),
    'color': lambda: _color_kernel(image, arg),
    'contrast': lambda: _contrast_kernel(image, arg),
    'brightness': lambda: _brightness_kernel(image, arg),
    'sharpness': lambda: _sharpness_kernel(image, arg),
    'warp': lambda: _warp_kernel(
      image, *_sample_vectors_kernel(image, op, arg), tf.cast(tf.reshape(fill, [3]), tf.float32)
    ),
  }
  return tf.switch_case(tf.gather(_BRANCH_OF_OP, op), [branches[name] for name in _BRANCHES])


# --- per-pixel parts (inside the kernels) --------------------------------------------------------


def _floor_to_uint8(x):
  """C's (UINT8) cast of a float clipped to [0, 255], as Pillow does after blending."""
  return tf.cast(tf.clip_by_value(tf.floor(x), 0.0, 255.0), tf.uint8)


def _blend(degenerate, image, factor):
  """Image.blend(degenerate, image, factor) (Blend.c): float32 d + factor * (x - d), truncated, clipped.

  factor 0 gives degenerate, 1 the image, > 1 extrapolates. degenerate holds integer levels.
  """
  d = tf.cast(degenerate, tf.float32)
  factor = tf.cast(factor, tf.float32)  # ImagingBlend(..., float alpha)
  return _floor_to_uint8(d + _unfused(factor * (tf.cast(image, tf.float32) - d)))


def _unfused(product):
  """`product`, kept from being fused with a following addition into one FMA.

  C (and Pillow) round a * b, then the sum; XLA's CPU compiler contracts a * b + c into a fused
  multiply-add with one rounding, which lands on the other side of an integer now and then (level
  33 autocontrasted from [5, 243]: Python's 29.999999999999996 -> 29, FMA 30). A select between
  the two operations stops the contraction, at the cost of a compare per value.
  """
  return tf.where(tf.math.is_nan(product), tf.zeros_like(product), product)


def _luma(x):
  """convert('L') of int32 RGB: ITU-R 601-2 in 16.16 fixed point, rounded (Convert.c L24)."""
  return tf.bitwise.right_shift(
    x[..., 0] * 19595 + x[..., 1] * 38470 + x[..., 2] * 7471 + 0x8000, 16
  )


def _xla(fn):
  return tf.function(fn, jit_compile=True, autograph=False, reduce_retracing=True)


def _apply_lut(image, lut):
  """image[..., c] -> lut[c, image[..., c]]; inside XLA a gather from a 768-entry table is cheap."""
  return tf.gather(tf.reshape(lut, [-1]), tf.cast(image, tf.int32) + tf.constant([0, 256, 512]))


def _posterize(image, bits):
  """ImageOps.posterize: keep the `bits` most significant bits (0 bits gives black)."""
  shift = 8 - tf.clip_by_value(tf.cast(bits, tf.int32), 0, 8)
  mask = tf.bitwise.bitwise_and(tf.bitwise.left_shift(255, shift), 255)
  return tf.bitwise.bitwise_and(image, tf.cast(mask, tf.uint8))


def _auto_contrast(image, lo, hi):
  """ImageOps.autocontrast (cutoff 0) per channel: int(x * scale + offset) in double, clipped to
  [0, 255], with scale = 255 / (hi - lo), offset = -lo * scale; hi <= lo leaves the channel as is."""
  lo, hi = tf.cast(lo, tf.float64), tf.cast(hi, tf.float64)
  scale = 255.0 / tf.maximum(hi - lo, 1.0)
  x = tf.cast(image, tf.float64)
  stretched = tf.clip_by_value(tf.floor(_unfused(x * scale) + (-lo * scale)), 0.0, 255.0)
  return tf.cast(tf.where(hi > lo, stretched, x), tf.uint8)


def _solarize(image, threshold):
  """ImageOps.solarize: invert every value >= threshold (threshold 256 changes nothing)."""
  x = tf.cast(image, tf.int32)
  return tf.cast(tf.where(x < tf.cast(threshold, tf.int32), x, 255 - x), tf.uint8)


def _solarize_add(image, addition, threshold=128):
  """timm solarize_add: add `addition` (saturating) to values below threshold."""
  x = tf.cast(image, tf.int32)
  added = tf.minimum(x + tf.cast(addition, tf.int32), 255)
  return tf.cast(tf.where(x < threshold, added, x), tf.uint8)


def _color(image, factor):
  """ImageEnhance.Color: blend with the image converted to L and back to RGB."""
  return _blend(_luma(tf.cast(image, tf.int32))[..., None], image, factor)


def _contrast(image, factor):
  """ImageEnhance.Contrast: blend with a flat image at int(mean of the L image + 0.5)."""
  gray = _luma(tf.cast(image, tf.int32))
  count = tf.size(gray)
  # Integer form of int(sum / count + 0.5): XLA turns a division by a constant into a multiplication
  # by its reciprocal, which can miss a mean of exactly k + 0.5.
  level = (2 * tf.reduce_sum(gray) + count) // (2 * count)
  return _blend(tf.cast(level, tf.float32), image, factor)


def _sharpness(image, factor):
  """ImageEnhance.Sharpness: blend with ImageFilter.SMOOTH, 3x3 [[1, 1, 1], [1, 5, 1], [1, 1, 1]]
  / 13 rounded; Filter.c leaves the outermost rows and columns unfiltered."""
  x = tf.cast(image, tf.int32)
  h, w = tf.shape(x)[0], tf.shape(x)[1]
  rows = x[:-2] + x[1:-1] + x[2:]  # 3x3 box sum, separably
  total = rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:] + 4 * x[1:-1, 1:-1]
  smooth = tf.pad((total + 6) // 13, [[1, 1], [1, 1], [0, 0]])
  r = tf.range(h)[:, None, None]
  c = tf.range(w)[None, :, None]
  interior = (r > 0) & (r < h - 1) & (c > 0) & (c < w - 1)
  return _blend(tf.where(interior, smooth, x), image, factor)


def _warp(image, xvec, yvec, offset, fill):
  """Geometry.c's affine transform with bilinear_filter32RGB.

  Output pixel (x, y) samples the input at (X, Y) = (xvec[0, x] + yvec[0, y] + offset[0],
  xvec[1, x] + yvec[1, y] + offset[1]); outside [0, w) x [0, h) it gets `fill`; else the taps are
  at floor(X - 0.5) and the next pixel, each clamped to the image (edge pixels repeat). Sample
  points are in double as in Geometry.c, so the fill border and taps are PIL's; the interpolation
  is in float32 (Geometry.c: double), ~15% cheaper here, which moves a value by one level where
  PIL's result is within ~1e-5 of an integer (~1 value in 5,000 for rotations).
  """
  h, w = tf.shape(image)[0], tf.shape(image)[1]
  sx = (xvec[0][None, :] + yvec[0][:, None]) + offset[0]
  sy = (xvec[1][None, :] + yvec[1][:, None]) + offset[1]
  inside = (sx >= 0.0) & (sx < tf.cast(w, tf.float64)) & (sy >= 0.0) & (sy < tf.cast(h, tf.float64))
  sx, sy = sx - 0.5, sy - 0.5
  fx, fy = tf.floor(sx), tf.floor(sy)
  dx, dy = tf.cast(sx - fx, tf.float32)[..., None], tf.cast(sy - fy, tf.float32)[..., None]
  x0, y0 = tf.cast(fx, tf.int32), tf.cast(fy, tf.int32)
  left, right = tf.clip_by_value(x0, 0, w - 1), tf.clip_by_value(x0 + 1, 0, w - 1)
  top, bottom = tf.clip_by_value(y0, 0, h - 1) * w, tf.clip_by_value(y0 + 1, 0, h - 1) * w
  table = tf.reshape(image, [-1])
  channels = tf.range(3)

  def tap(pixel):
    return tf.cast(tf.gather(table, pixel[..., None] * 3 + channels), tf.float32)

  def lerp(a, b, t):  # Geometry.c BILINEAR(v, a, b, d): a + (b - a) * d
    return a + _unfused((b - a) * t)

  upper = lerp(tap(top + left), tap(top + right), dx)
  lower = lerp(tap(bottom + left), tap(bottom + right), dx)
  return tf.cast(
    tf.where(inside[..., None], tf.floor(lerp(upper, lower, dy)), fill), tf.uint8
  )  # (UINT8)


# --- small inputs of the kernels ----------------------------------------------------------------


def _histograms(image):
  """(3, 256) int32 per-channel histograms with TF's kernel (XLA's CPU scatter is slower)."""
  return tf.stack(
    [
      tf.histogram_fixed_width(tf.cast(c, tf.int32), [0, 256], nbins=256)
      for c in tf.unstack(image, axis=-1)
    ]
  )


def _equalize_lut(histogram):
  """ImageOps.equalize LUT per channel: step = (pixels outside the last non-empty bin) // 255; step 0
  leaves the channel unchanged, else lut[v] = (n + step // 2) // step with n the pixels below v."""
  levels = tf.range(256)[None, :]
  last = tf.reduce_max(tf.where(histogram > 0, levels, -1), axis=1, keepdims=True)
  last_count = tf.reduce_sum(tf.where(levels == last, histogram, 0), axis=1, keepdims=True)
  step = (tf.reduce_sum(histogram, axis=1, keepdims=True) - last_count) // 255
  safe_step = tf.maximum(step, 1)
  below = tf.cumsum(histogram, axis=1, exclusive=True)
  lut = tf.where(step > 0, tf.minimum((below + safe_step // 2) // safe_step, 255), levels)
  return tf.cast(lut, tf.uint8)


def _sample_vectors(image, op, arg):
  """PIL's AFFINE sample points of geometric op `op`, separably: (2, width) x-parts, (2, height)
  y-parts and (2,) offsets, the point for output pixel (x, y) being x-part + y-part + offset.

  Image.transform(AFFINE, (a, b, c, d, e, f)) maps output pixel centre (x', y') = (x + 0.5, y + 0.5)
  to (a x' + b y' + c, d x' + e y' + f) (Geometry.c affine_transform, in double). Only one term
  is active per op, so one formula covers all five: Image.rotate's matrix (Image.py: angle % 360,
  cos and sin rounded to 15 decimals, centre (w/2, h/2)), shear factors, and translations by arg
  times the width or height.
  """
  h = tf.cast(tf.shape(image)[0], tf.float64)
  w = tf.cast(tf.shape(image)[1], tf.float64)
  arg = tf.cast(arg, tf.float64)

  def only(name, value):
    return tf.where(tf.equal(op, _OP[name]), value, tf.zeros([], tf.float64))

  angle = -(tf.math.floormod(only('rotate', arg), 360.0) * (math.pi / 180.0))
  # round(v, 15) as Image.py does (cos 90 degrees becomes exactly 0). The divisor is made a runtime
  # value: XLA replaces a division by a constant with a multiplication by its rounded reciprocal.
  decimals = 1e15 + 0.0 * arg
  cos = tf.round(tf.cos(angle) * decimals) / decimals
  sin = tf.round(tf.sin(angle) * decimals) / decimals
  cx, cy = w / 2, h / 2
  a, b = cos, sin + only('shear_x', arg)
  d, e = -sin + only('shear_y', arg), cos
  c = (_unfused(cos * -cx) + _unfused(sin * -cy)) + cx + only('translate_x', arg) * w
  f = (_unfused(-sin * -cx) + _unfused(cos * -cy)) + cy + only('translate_y', arg) * h
  xs = tf.range(tf.shape(image)[1], dtype=tf.float64) + 0.5
  ys = tf.range(tf.shape(image)[0], dtype=tf.float64) + 0.5
  return tf.stack([a * xs, d * xs]), tf.stack([b * ys, e * ys]), tf.stack([c, f])


# --- one function per op, for direct use and tests ------------------------------------------------


def identity(image, *_):
  return image


def auto_contrast(image):
  """ImageOps.autocontrast (cutoff 0): per channel, stretch [min, max] to [0, 255]."""
  return apply(image, _OP['auto_contrast'], 0.0)


def equalize(image):
  """ImageOps.equalize: per-channel histogram equalisation."""
  return apply(image, _OP['equalize'], 0.0)


def invert(image):
  """ImageOps.invert: 255 - x, the bitwise complement of uint8 (no kernel needed)."""
  return tf.bitwise.invert(image)


def posterize(image, bits):
  """ImageOps.posterize: keep the `bits` most significant bits (0 bits gives black)."""
  return apply(image, _OP['posterize'], bits)


def solarize(image, threshold):
  """ImageOps.solarize: invert every value >= threshold (threshold 256 changes nothing)."""
  return apply(image, _OP['solarize'], threshold)


def solarize_add(image, addition):
  """timm solarize_add: add `addition` (saturating) to values below 128."""
  return apply(image, _OP['solarize_add'], addition)


def color(image, factor):
  """ImageEnhance.Color(image).enhance(factor)."""
  return apply(image, _OP['color'], factor)


def contrast(image, factor):
  """ImageEnhance.Contrast(image).enhance(factor)."""
  return apply(image, _OP['contrast'], factor)


def brightness(image, factor):
  """ImageEnhance.Brightness(image).enhance(factor): blend with black."""
  return apply(image, _OP['brightness'], factor)


def sharpness(image, factor):
  """ImageEnhance.Sharpness(image).enhance(factor)."""
  return apply(image, _OP['sharpness'], factor)


def rotate(image, degrees, fill):
  """Image.rotate(degrees, BILINEAR, fillcolor=fill): counter-clockwise about the centre, same size."""
  return apply(image, _OP['rotate'], degrees, fill)


def shear_x(image, factor, fill):
  """Image.transform(size, AFFINE, (1, factor, 0, 0, 1, 0), BILINEAR, fillcolor=fill)."""
  return apply(image, _OP['shear_x'], factor, fill)


def shear_y(image, factor, fill):
  """Image.transform(size, AFFINE, (1, 0, 0, factor, 1, 0), BILINEAR, fillcolor=fill)."""
  return apply(image, _OP['shear_y'], factor, fill)


def translate_x(image, fraction, fill):
  """Moves content left by fraction * width (right for negative fraction), as timm TranslateXRel."""
  return apply(image, _OP['translate_x'], fraction, fill)


def translate_y(image, fraction, fill):
  """Moves content up by fraction * height (down for negative fraction), as timm TranslateYRel."""
  return apply(image, _OP['translate_y'], fraction, fill)


# Each kernel is compiled on first use for each image shape. Small producers (the LUT, the sample
# vectors) are kernels of their own: inside the per-pixel kernel XLA would recompute them per pixel.
_auto_contrast_kernel = _xla(_auto_contrast)
_equalize_lut_kernel = _xla(_equalize_lut)
_lut_kernel = _xla(_apply_lut)
_solarize_kernel = _xla(_solarize)
_solarize_add_kernel = _xla(_solarize_add)
_color_kernel = _xla(_color)
_contrast_kernel = _xla(_contrast)
_brightness_kernel = _xla(lambda image, factor: _blend(tf.zeros([], tf.uint8), image, factor))
_sharpness_kernel = _xla(_sharpness)
_sample_vectors_kernel = _xla(_sample_vectors)
_warp_kernel = _xla(_warp)
