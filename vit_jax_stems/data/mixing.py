"""Batch-level mixup / CutMix and label smoothing, producing the soft targets the loss consumes.

As timm `Mixup` (mode 'batch', used by DeiT/ConViT) and pycls `net.mixup`: one mixing coefficient per
(per-process) batch, each example mixed with a partner from the same batch, CutMix chosen with
probability `switch_prob` when both alphas are positive, and the CutMix coefficient corrected to the
clipped box area. The partner of example i is example B-1-i (timm flips the batch; pycls permutes).
"""
import tensorflow as tf


def smooth_one_hot(labels: tf.Tensor, num_classes: int, smoothing: float) -> tf.Tensor:
  """One-hot targets with label smoothing: on = 1 - s + s/C, off = s/C (pycls smooth_one_hot_labels, timm)."""
  off = smoothing / num_classes
  return tf.one_hot(labels, num_classes, on_value=1.0 - smoothing + off, off_value=off, dtype=tf.float32)


def _beta(seed, alpha: float) -> tf.Tensor:
  seed_a, seed_b = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  a = tf.random.stateless_gamma([], seed_a, alpha)
  b = tf.random.stateless_gamma([], seed_b, alpha)
  return a / (a + b)


def cutmix_box(seed, height, width, lam):
  """timm rand_bbox: a box of side ratio sqrt(1 - lam) centred uniformly, clipped to the image."""
  ratio = tf.sqrt(1.0 - lam)
  cut_h = tf.cast(tf.cast(height, tf.float32) * ratio, tf.int32)
  cut_w = tf.cast(tf.cast(width, tf.float32) * ratio, tf.int32)
  seed_y, seed_x = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  cy = tf.random.stateless_uniform([], seed_y, 0, height, dtype=tf.int32)
  cx = tf.random.stateless_uniform([], seed_x, 0, width, dtype=tf.int32)
  top, bottom = tf.clip_by_value(cy - cut_h // 2, 0, height), tf.clip_by_value(cy + cut_h // 2, 0, height)
  left, right = tf.clip_by_value(cx - cut_w // 2, 0, width), tf.clip_by_value(cx + cut_w // 2, 0, width)
  return top, bottom, left, right


def mix_batch(images: tf.Tensor, targets: tf.Tensor, seed: tf.Tensor, *, mixup_alpha: float,
              cutmix_alpha: float, switch_prob: float) -> tuple[tf.Tensor, tf.Tensor]:
  """Mixup or CutMix of a batch (B, H, W, C) with soft targets (B, K); no-op when both alphas are 0."""
  if mixup_alpha <= 0 and cutmix_alpha <= 0:
    return images, targets
  seed_switch, seed_mixup, seed_cutmix, seed_box = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
  if mixup_alpha > 0 and cutmix_alpha > 0:
    use_cutmix = tf.random.stateless_uniform([], seed_switch) < switch_prob
  else:
    use_cutmix = tf.constant(cutmix_alpha > 0)
  partner_images, partner_targets = images[::-1], targets[::-1]

  def mixup():
    lam = _beta(seed_mixup, mixup_alpha) if mixup_alpha > 0 else tf.constant(1.0)
    return lam * images + (1.0 - lam) * partner_images, lam

  def cutmix():
    lam = _beta(seed_cutmix, cutmix_alpha) if cutmix_alpha > 0 else tf.constant(1.0)
    h, w = tf.shape(images)[1], tf.shape(images)[2]
    top, bottom, left, right = cutmix_box(seed_box, h, w, lam)
    rows = tf.range(h)[None, :, None, None]
    cols = tf.range(w)[None, None, :, None]
    inside = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
    area = tf.cast((bottom - top) * (right - left), tf.float32)
    return tf.where(inside, partner_images, images), 1.0 - area / tf.cast(h * w, tf.float32)

  mixed, lam = tf.cond(use_cutmix, cutmix, mixup)
  return mixed, lam * targets + (1.0 - lam) * partner_targets
