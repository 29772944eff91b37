"""Image decoding with the crop fused in: Inception random resized crop for training, resize-and-centre-crop for eval.

Both return uint8 [size, size, 3]. JPEGs (ImageNet) are decoded with tf.image.decode_and_crop_jpeg, so
only the window that the output needs is decompressed; other encodings (PNG in mnist5k) are decoded
whole and sliced. Costs are CPU per ~500x375 quality-90 JPEG; entropy decoding dominates and grows with
the window's bottom row, so a window saves little of the decode itself.

The definitions are tf.image.resize (half-pixel centres) of the crop, rounded half to even to uint8;
the antialiased eval path reaches the same pixels by resampling only the centre crop (see
`decode_resize_center_crop`).
"""
import tensorflow as tf

# tf.raw_ops.ScaleAndTranslate kernel and its radius in output-scale pixels for each method: the op
# behind tf.image.resize(antialias=True) for these two methods (image_ops_impl.resize_images_v2).
_SCALE_AND_TRANSLATE_KERNELS = {'bilinear': ('triangle', 1.0), 'bicubic': ('keyscubic', 2.0)}
# Source pixels kept beyond the kernel support when a JPEG window is decoded: decode_and_crop_jpeg's
# outermost columns can differ from a full decode (libjpeg upsamples chroma without the neighbours
# outside the window; one column for 4:2:0 on generated JPEGs), and those must not be sampled.
_JPEG_WINDOW_MARGIN = 4


def _check_method(method: str):
  if method not in _SCALE_AND_TRANSLATE_KERNELS:
    raise ValueError(f"interpolation must be 'bilinear' or 'bicubic', got {method!r}.")


def resize(image: tf.Tensor, size, method: str, antialias: bool) -> tf.Tensor:
  """Float resize of a uint8 image; the result stays on the 0-255 scale (bicubic may overshoot).

  The uint8 input goes to the resize op directly: the ops convert each sample to float32 themselves,
  which gives the same values as a float32 input without a cast of the whole source.
  """
  _check_method(method)
  return tf.image.resize(image, size, method=method, antialias=antialias)


def to_uint8(image: tf.Tensor, method: str = 'bicubic') -> tf.Tensor:
  """Rounds a resized image half to even to uint8.

  Bilinear weights (with or without antialiasing) are non-negative and sum to one, so the result is a
  convex combination of uint8 samples that rounds into 0-255 and needs no clip; bicubic overshoots.
  """
  image = tf.round(image)
  if method != 'bilinear':
    image = tf.clip_by_value(image, 0.0, 255.0)
  return tf.cast(image, tf.uint8)


def image_shape(encoded: tf.Tensor) -> tf.Tensor:
  """(height, width) of an encoded image, reading only the header for JPEGs."""
  return tf.cond(
      tf.io.is_jpeg(encoded),
      lambda: tf.image.extract_jpeg_shape(encoded)[:2],
      lambda: tf.shape(tf.io.decode_image(encoded, channels=3, expand_animations=False))[:2])


def decode_window(encoded: tf.Tensor, window_fn):
  """Decodes the window [y, x, h, w] = window_fn(shape) of an image; returns (uint8 RGB window, window, shape).

  shape is the image's (height, width). For JPEGs it comes from the header and only the window is
  decompressed; other encodings are decoded once, whole, and sliced. window_fn must give the same
  window for the same shape (it runs in either branch).
  """
  def jpeg():
    shape = tf.image.extract_jpeg_shape(encoded)[:2]
    window = window_fn(shape)
    return tf.image.decode_and_crop_jpeg(encoded, window, channels=3), window, shape

  def generic():
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    shape = tf.shape(image)[:2]
    window = window_fn(shape)
    return image[window[0]:window[0] + window[2], window[1]:window[1] + window[3]], window, shape

  image, window, shape = tf.cond(tf.io.is_jpeg(encoded), jpeg, generic)
  return tf.ensure_shape(image, [None, None, 3]), window, shape


def decode_random_resized_crop(encoded, seed, *, size: int, area_range, aspect_range,
                               method: str, antialias: bool, random_crop: bool = True) -> tf.Tensor:
  """Inception-style crop (random area fraction and aspect ratio), resized to size x size uint8.

  The window comes from tf.image.stateless_sample_distorted_bounding_box with 10 attempts; when none
  fits, the whole image is used (the TF/Inception convention; pycls and timm fall back to a centre crop).
  With random_crop=False the whole image is resized (no crop).
  """
  _check_method(method)

  def window_fn(shape):
    if not random_crop:
      return tf.stack([0, 0, shape[0], shape[1]])
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape_with_channels(shape), bounding_boxes=tf.zeros([1, 0, 4]), seed=seed,
        min_object_covered=0.0, aspect_ratio_range=aspect_range, area_range=area_range,
        max_attempts=10, use_image_if_no_bounding_boxes=True)
    return tf.stack([begin[0], begin[1], crop_size[0], crop_size[1]])

  crop, _, _ = decode_window(encoded, window_fn)
  return tf.ensure_shape(to_uint8(resize(crop, [size, size], method, antialias), method), [size, size, 3])


def shape_with_channels(shape_hw: tf.Tensor) -> tf.Tensor:
  return tf.concat([shape_hw, [3]], axis=0)


def eval_geometry(height, width, size: int, crop_pct: float):
  """Resized (height, width) and centre-crop offsets (top, left) for eval.

  The shorter side becomes floor(size / crop_pct) (256 for 224 at 0.875), the longer one keeps the
  aspect ratio rounded down (pycls scale_and_center_crop: int(h / w * scale)); the crop starts at
  ceil((side - size) / 2) (pycls). Works on Python ints and on tensors.
  """
  scale_size = int(size / crop_pct + 1e-6)
  if isinstance(height, int) and isinstance(width, int):
    if height <= width:
      new_h, new_w = scale_size, int(width * scale_size / height)
    else:
      new_h, new_w = int(height * scale_size / width), scale_size
    return (new_h, new_w), ((new_h - size + 1) // 2, (new_w - size + 1) // 2)
  h = tf.cast(height, tf.float64)
  w = tf.cast(width, tf.float64)
  scale = tf.constant(scale_size, tf.float64)
  new_h = tf.where(h <= w, scale, tf.floor(h * scale / w))
  new_w = tf.where(h <= w, tf.floor(w * scale / h), scale)
  new_h, new_w = tf.cast(new_h, tf.int32), tf.cast(new_w, tf.int32)
  return (new_h, new_w), ((new_h - size + 1) // 2, (new_w - size + 1) // 2)


def decode_resize_center_crop(encoded, *, size: int, crop_pct: float, method: str, antialias: bool) -> tf.Tensor:
  """Eval preprocessing: resize the shorter side to size / crop_pct, centre crop size x size, uint8.

  Defined as tf.image.resize of the whole image, rounded to uint8 levels as a PIL/cv2 uint8 pipeline
  would (so eval sees the values training saw), then the centre crop. Without antialiasing this is
  what runs (ResizeBilinear/ResizeBicubic on the decoded uint8 image, rounding only the crop).
  With antialiasing (the ConViT/timm recipe) tf.image.resize is ScaleAndTranslate, which takes a
  translation: only the source window under the crop (plus the kernel's support) is decoded and only
  the size x size output pixels are computed, with the sample positions of resize-then-crop. Pixels
  equal the definition up to float rounding of the sample positions (a rare 1-level difference).
  """
  _check_method(method)
  if antialias:
    return _antialiased_center_crop(encoded, size, crop_pct, method)
  image = tf.ensure_shape(tf.io.decode_image(encoded, channels=3, expand_animations=False), [None, None, 3])
  (new_h, new_w), (top, left) = eval_geometry(tf.shape(image)[0], tf.shape(image)[1], size, crop_pct)
  resized = resize(image, tf.stack([new_h, new_w]), method, antialias=False)
  return tf.ensure_shape(to_uint8(resized[top:top + size, left:left + size], method), [size, size, 3])


def _antialiased_center_crop(encoded, size: int, crop_pct: float, method: str) -> tf.Tensor:
  """Antialiased resize-then-centre-crop computed on the crop's source window only (see caller).

  ScaleAndTranslate samples output pixel x at source position (x + 0.5) / scale - translation / scale
  (pixel centres at +0.5) with a kernel widened by max(1 / scale, 1), weights renormalised over the
  source pixels that exist. Output x of the crop is pixel x + offset of the full resize, i.e. source
  (x + offset + 0.5) / scale, which in a window starting at `start` is reached with
  translation = start * scale - offset. The window extends past the kernel's support (so no weight is
  renormalised at a window edge that is not an image edge) by _JPEG_WINDOW_MARGIN.
  """
  kernel, radius = _SCALE_AND_TRANSLATE_KERNELS[method]

  def scale_and_offset(shape):
    (new_h, new_w), (top, left) = eval_geometry(shape[0], shape[1], size, crop_pct)
    scale = tf.cast(tf.stack([new_h, new_w]), tf.float32) / tf.cast(shape, tf.float32)  # as tf.image.resize
    return scale, tf.cast(tf.stack([top, left]), tf.float32)

  def window_fn(shape):
    scale, offset = scale_and_offset(shape)
    support = radius * tf.maximum(1.0 / scale, 1.0)
    first = (offset + 0.5) / scale - support - 0.5   # lowest source index the kernel may touch
    last = (offset + size - 0.5) / scale + support - 0.5
    start = tf.maximum(tf.cast(tf.floor(first), tf.int32) - _JPEG_WINDOW_MARGIN, 0)
    stop = tf.minimum(tf.cast(tf.math.ceil(last), tf.int32) + 1 + _JPEG_WINDOW_MARGIN, shape)
    return tf.concat([start, stop - start], axis=0)

  image, window, shape = decode_window(encoded, window_fn)
  scale, offset = scale_and_offset(shape)
  translation = tf.cast(window[:2], tf.float32) * scale - offset
  out = tf.raw_ops.ScaleAndTranslate(images=image[None], size=[size, size], scale=scale, translation=translation,
                                     kernel_type=kernel, antialias=True)[0]
  return tf.ensure_shape(to_uint8(out, method), [size, size, 3])
