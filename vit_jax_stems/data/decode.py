"""Image decoding with the crop fused in: Inception random resized crop for training, resize-and-centre-crop for eval.

Both return uint8 [size, size, 3]: tf.image.resize (half-pixel centres) of the crop, rounded half to
even. JPEGs (ImageNet) are decoded with tf.image.decode_and_crop_jpeg, so only the window that the
output needs is decompressed; other encodings (PNG in mnist5k) are decoded whole and sliced. On
~500x375 quality-90 JPEGs entropy decoding is most of the decode and runs down to the window's
bottom row, so the window saves little of it; the savings here are in resampling (antialiased
resizes in two row passes, antialiased eval computing only the centre crop's pixels).
"""

from vit_jax_stems.data.tf_host import tf

# tf.raw_ops.ScaleAndTranslate kernel and its radius in output-scale pixels for each method: the op
# behind tf.image.resize(antialias=True) for these two methods (image_ops_impl.resize_images_v2).
_SCALE_AND_TRANSLATE_KERNELS = {'bilinear': ('triangle', 1.0), 'bicubic': ('keyscubic', 2.0)}
# Source pixels kept beyond the kernel support when a JPEG window is decoded: decode_and_crop_jpeg's
# outermost columns can differ from a full decode (libjpeg upsamples chroma without the neighbours
# outside the window; one column for 4:2:0 on generated JPEGs), and those must not be sampled.
_JPEG_WINDOW_MARGIN = 4


def _check_method(method: str):
  if method not in _SCALE_AND_TRANSLATE_KERNELS:
    raise ValueError(f"config.data.interpolation must be 'bilinear' or 'bicubic', got {method!r}.")


def resize(image: tf.Tensor, size, method: str, antialias: bool) -> tf.Tensor:
  """tf.image.resize of a uint8 [h, w, 3] image to float, bit for bit; 0-255 scale (bicubic may overshoot).

  The uint8 input goes to the resize ops directly: they convert each sample to float32 themselves,
  which gives the values of a float32 input without a cast of the whole source. Antialiased resizes
  run as two row passes (`scale_and_translate`): the same arithmetic, about a third less CPU.
  """
  _check_method(method)
  if not antialias:
    return tf.image.resize(image, size, method=method, antialias=False)
  size = tf.convert_to_tensor(size, tf.int32)
  scale = tf.cast(size, tf.float32) / tf.cast(tf.shape(image)[:2], tf.float32)  # as tf.image.resize
  return scale_and_translate(image, size, scale, tf.zeros([2]), method)


def scale_and_translate(image: tf.Tensor, size, scale, translation, method: str) -> tf.Tensor:
  """tf.raw_ops.ScaleAndTranslate(antialias=True) of one [h, w, c] image, bit for bit, with less CPU.

  The op (behind tf.image.resize(antialias=True)) resamples rows first with whole-row vector arithmetic,
  then columns one output pixel and one channel at a time: that second pass is most of its cost on
  ImageNet crops. Here both axes go through the row pass, on a one-column view of the image (rows,
  1, cols * c) whose column pass is a copy (span 1, weight 1): rows, then rows of the transposed
  result, summing the same products in the same order (on 224 x 224 bicubic crops of ImageNet-like
  JPEGs: 1.0 instead of 1.5 ms CPU, the two transposes included). Output pixel x samples the source at
  (x + 0.5 - translation) / scale (pixel centres at +0.5), with the kernel widened by 1 / scale when
  downscaling and its weights renormalised over the source pixels that exist.
  """
  kernel = _SCALE_AND_TRANSLATE_KERNELS[method][0]

  def resample_rows(x, rows, row_scale, row_translation):
    in_rows, cols = tf.shape(x)[0], tf.shape(x)[1]
    x = tf.raw_ops.ScaleAndTranslate(
      images=tf.reshape(x, [1, in_rows, 1, -1]),
      size=tf.stack([rows, 1]),
      scale=tf.stack([row_scale, 1.0]),
      translation=tf.stack([row_translation, 0.0]),
      kernel_type=kernel,
      antialias=True,
    )
    return tf.reshape(x, [rows, cols, -1])

  x = resample_rows(image, size[0], scale[0], translation[0])
  x = resample_rows(tf.transpose(x, [1, 0, 2]), size[1], scale[1], translation[1])
  return tf.transpose(x, [1, 0, 2])


def to_uint8(image: tf.Tensor, method: str = 'bicubic') -> tf.Tensor:
  """Rounds a resized image half to even to uint8.

  Bilinear weights (with or without antialiasing) are non-negative and sum to one, so the result is a
  convex combination of uint8 samples that rounds into 0-255 and needs no clip; bicubic overshoots.
  """
  image = tf.round(image)
  if method != 'bilinear':
    image = tf.clip_by_value(image, 0.0, 255.0)
  return tf.cast(image, tf.uint8)


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
    return (
      image[window[0] : window[0] + window[2], window[1] : window[1] + window[3]],
      window,
      shape,
    )

  image, window, shape = tf.cond(tf.io.is_jpeg(encoded), jpeg, generic)
  return tf.ensure_shape(image, [None, None, 3]), window, shape


def decode_random_resized_crop(
  encoded,
  seed,
  *,
  size: int,
  area_range,
  aspect_range,
  method: str,
  antialias: bool,
  random_crop: bool = True,
) -> tf.Tensor:
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
      tf.concat([shape, [3]], axis=0),
      bounding_boxes=tf.zeros([1, 0, 4]),
      seed=seed,
      min_object_covered=0.0,
      aspect_ratio_range=aspect_range,
      area_range=area_range,
      max_attempts=10,
      use_image_if_no_bounding_boxes=True,
    )
    return tf.stack([begin[0], begin[1], crop_size[0], crop_size[1]])

  crop, _, _ = decode_window(encoded, window_fn)
  return tf.ensure_shape(
    to_uint8(resize(crop, [size, size], method, antialias), method), [size, size, 3]
  )


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


def decode_resize_center_crop(
  encoded, *, size: int, crop_pct: float, method: str, antialias: bool
) -> tf.Tensor:
  """Eval preprocessing: resize the shorter side to size / crop_pct, centre crop size x size, uint8.

  Defined as tf.image.resize of the whole image, rounded to uint8 levels as a PIL/cv2 uint8 pipeline
  would (so eval sees the values training saw), then the centre crop. Without antialiasing this is
  what runs (ResizeBilinear/ResizeBicubic on the decoded uint8 image, rounding only the crop): those
  ops take no translation, and resampling just the crop's window some other way (crop_and_resize,
  ScaleAndTranslate) measured slower than resizing the whole image. With antialiasing (the
  ConViT/timm recipe) tf.image.resize is ScaleAndTranslate, which takes a translation: only the source window under the crop (plus the kernel's support) is decoded and only
  the size x size output pixels are computed, with the sample positions of resize-then-crop. Pixels
  equal the definition up to float rounding of the sample positions (a rare 1-level difference).
  """
  _check_method(method)
  if antialias:
    return _antialiased_center_crop(encoded, size, crop_pct, method)
  image = tf.ensure_shape(
    tf.io.decode_image(encoded, channels=3, expand_animations=False), [None, None, 3]
  )
  (new_h, new_w), (top, left) = eval_geometry(
    tf.shape(image)[0], tf.shape(image)[1], size, crop_pct
  )
  resized = resize(image, tf.stack([new_h, new_w]), method, antialias=False)
  return tf.ensure_shape(
    to_uint8(resized[top : top + size, left : left + size], method), [size, size, 3]
  )


def _antialiased_center_crop(encoded, size: int, crop_pct: float, method: str) -> tf.Tensor:
  """Antialiased resize-then-centre-crop computed on the crop's source window only (see caller).

  ScaleAndTranslate samples output pixel x at source position (x + 0.5 - translation) / scale (see
  `scale_and_translate`). Output x of the crop is pixel x + offset of the full resize, i.e. source
  (x + offset + 0.5) / scale, which in a window starting at `start` is reached with
  translation = start * scale - offset. The window extends past the kernel's support (so no weight is
  renormalised at a window edge that is not an image edge) by _JPEG_WINDOW_MARGIN.
  """
  radius = _SCALE_AND_TRANSLATE_KERNELS[method][1]

  def scale_and_offset(shape):
    (new_h, new_w), (top, left) = eval_geometry(shape[0], shape[1], size, crop_pct)
    scale = tf.cast(tf.stack([new_h, new_w]), tf.float32) / tf.cast(
      shape, tf.float32
    )  # as tf.image.resize
    return scale, tf.cast(tf.stack([top, left]), tf.float32)

  def window_fn(shape):
    scale, offset = scale_and_offset(shape)
    support = radius * tf.maximum(1.0 / scale, 1.0)
    first = (offset + 0.5) / scale - support - 0.5  # lowest source index the kernel may touch
    last = (offset + size - 0.5) / scale + support - 0.5
    start = tf.maximum(tf.cast(tf.floor(first), tf.int32) - _JPEG_WINDOW_MARGIN, 0)
    stop = tf.minimum(tf.cast(tf.math.ceil(last), tf.int32) + 1 + _JPEG_WINDOW_MARGIN, shape)
    return tf.concat([start, stop - start], axis=0)

  image, window, shape = decode_window(encoded, window_fn)
  scale, offset = scale_and_offset(shape)
  translation = tf.cast(window[:2], tf.float32) * scale - offset
  return tf.ensure_shape(
    to_uint8(scale_and_translate(image, [size, size], scale, translation, method), method),
    [size, size, 3],
  )
