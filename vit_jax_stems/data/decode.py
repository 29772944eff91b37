"""Image decoding with the crop fused in: Inception random resized crop for training, resize-and-centre-crop for eval.

JPEGs (ImageNet) are decoded with tf.image.decode_and_crop_jpeg, so only the crop window is
decompressed; other encodings (PNG in mnist5k) are decoded whole and cropped.
"""
import tensorflow as tf


def resize(image: tf.Tensor, size, method: str, antialias: bool) -> tf.Tensor:
  """Float resize of a uint8 image; the result stays on the 0-255 scale (bicubic may overshoot)."""
  if method not in ('bilinear', 'bicubic'):
    raise ValueError(f"interpolation must be 'bilinear' or 'bicubic', got {method!r}.")
  return tf.image.resize(tf.cast(image, tf.float32), size, method=method, antialias=antialias)


def to_uint8(image: tf.Tensor) -> tf.Tensor:
  return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def image_shape(encoded: tf.Tensor) -> tf.Tensor:
  """(height, width) of an encoded image, reading only the header for JPEGs."""
  return tf.cond(
      tf.io.is_jpeg(encoded),
      lambda: tf.image.extract_jpeg_shape(encoded)[:2],
      lambda: tf.shape(tf.io.decode_image(encoded, channels=3, expand_animations=False))[:2])


def decode_window(encoded: tf.Tensor, window: tf.Tensor) -> tf.Tensor:
  """Decodes the window [y, x, h, w] of an encoded image as uint8 RGB; fused for JPEG."""
  def generic():
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    return tf.image.crop_to_bounding_box(image, window[0], window[1], window[2], window[3])
  image = tf.cond(tf.io.is_jpeg(encoded),
                  lambda: tf.image.decode_and_crop_jpeg(encoded, window, channels=3), generic)
  return tf.ensure_shape(image, [None, None, 3])


def decode_random_resized_crop(encoded, seed, *, size: int, area_range, aspect_range,
                               method: str, antialias: bool, random_crop: bool = True) -> tf.Tensor:
  """Inception-style crop (random area fraction and aspect ratio), resized to size x size uint8.

  The window comes from tf.image.stateless_sample_distorted_bounding_box with 10 attempts; when none
  fits, the whole image is used (the TF/Inception convention; pycls and timm fall back to a centre crop).
  With random_crop=False the whole image is resized (no crop).
  """
  shape = image_shape(encoded)
  if random_crop:
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape_with_channels(shape), bounding_boxes=tf.zeros([1, 0, 4]), seed=seed,
        min_object_covered=0.0, aspect_ratio_range=aspect_range, area_range=area_range,
        max_attempts=10, use_image_if_no_bounding_boxes=True)
    window = tf.stack([begin[0], begin[1], crop_size[0], crop_size[1]])
  else:
    window = tf.stack([0, 0, shape[0], shape[1]])
  crop = decode_window(encoded, window)
  return to_uint8(resize(crop, [size, size], method, antialias))


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


def decode_resize_center_crop(encoded, *, size: int, crop_pct: float, method: str, antialias: bool):
  """Eval preprocessing: resize the shorter side to size / crop_pct, centre crop size x size (float 0-255)."""
  image = tf.ensure_shape(tf.io.decode_image(encoded, channels=3, expand_animations=False), [None, None, 3])
  (new_h, new_w), (top, left) = eval_geometry(tf.shape(image)[0], tf.shape(image)[1], size, crop_pct)
  resized = resize(image, tf.stack([new_h, new_w]), method, antialias)
  # Round to uint8 levels as a PIL/cv2 uint8 pipeline would, so eval sees the values training saw.
  resized = tf.clip_by_value(tf.round(resized), 0.0, 255.0)
  return tf.ensure_shape(resized[top:top + size, left:left + size], [size, size, 3])
