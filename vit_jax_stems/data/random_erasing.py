"""Random erasing (Zhong et al. 2017) as timm `RandomErasing(mode='pixel', max_count=1)`, used by DeiT/ConViT (P2)."""
import math

import tensorflow as tf

# timm RandomErasing defaults: min_area 0.02, max_area 1/3, min_aspect 0.3 (max 1/0.3), 10 attempts.
MIN_AREA, MAX_AREA, MIN_ASPECT, ATTEMPTS = 0.02, 1 / 3, 0.3, 10


def random_erasing(image: tf.Tensor, seed: tf.Tensor, prob: float) -> tf.Tensor:
  """With probability prob, replaces one random box of a *normalised* image by N(0, 1) noise per pixel.

  The box takes 2-33% of the area with log-uniform aspect ratio in [0.3, 1/0.3]; of 10 sampled boxes the
  first that fits is used, none if none fits (timm).
  """
  h, w = tf.shape(image)[0], tf.shape(image)[1]
  hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
  s_apply, s_area, s_aspect, s_top, s_left, s_noise = tf.unstack(
      tf.random.experimental.stateless_split(seed, 6))
  area = tf.random.stateless_uniform([ATTEMPTS], s_area, MIN_AREA, MAX_AREA) * hf * wf
  aspect = tf.exp(tf.random.stateless_uniform([ATTEMPTS], s_aspect, math.log(MIN_ASPECT), -math.log(MIN_ASPECT)))
  box_h = tf.cast(tf.round(tf.sqrt(area * aspect)), tf.int32)
  box_w = tf.cast(tf.round(tf.sqrt(area / aspect)), tf.int32)
  fits = (box_h < h) & (box_w < w)
  first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)
  box_h, box_w = box_h[first], box_w[first]
  # timm: top = randint(0, img_h - h), both ends included.
  top = tf.random.stateless_uniform([], s_top, 0, tf.maximum(h - box_h + 1, 1), dtype=tf.int32)
  left = tf.random.stateless_uniform([], s_left, 0, tf.maximum(w - box_w + 1, 1), dtype=tf.int32)

  def erase():
    rows = tf.range(h)[:, None, None]
    cols = tf.range(w)[None, :, None]
    inside = (rows >= top) & (rows < top + box_h) & (cols >= left) & (cols < left + box_w)
    return tf.where(inside, tf.random.stateless_normal(tf.shape(image), s_noise), image)

  return tf.cond(fits[first] & (tf.random.stateless_uniform([], s_apply) < prob), erase, lambda: image)
