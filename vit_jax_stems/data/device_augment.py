"""The arithmetic half of the training augmentation, run on the accelerators inside the jitted step.

The host half (tf.data, `pipeline.py` of this package) does what needs JPEG bytes or per-image control flow:
decode fused with the random crop, flip, AutoAugment / RandAugment, all on uint8, and ships uint8
images with integer labels: a quarter of the bytes of float32 and no float passes on the host CPU,
which is what limits input throughput. Everything that is plain arithmetic on whole batches runs
here, in JAX, as part of the train step (big_vision also mixes on device):

  uint8 -> [0, 1] -> PCA lighting -> normalise -> random erasing -> mixup / CutMix, and the
  label-smoothed one-hot targets.

Randomness is a pure function of (the step's key, the example's global index, the mixing group),
so the augmented batch does not depend on how the batch is sharded over devices or processes, and
a resumed run sees the same augmentation as an uninterrupted one (the key is folded with the step).

Mixing groups: pycls (P1) and timm (P2) draw one mixup/CutMix coefficient per GPU batch and pair
examples inside it. `mix_group_size` fixes that group in examples (the references' per-GPU batch),
independent of the hardware this runs on; the partner of example i of a group is example
size-1-i of the same group (timm flips the batch; pycls permutes it; both pair examples that the
sampler already shuffled). When the group divides the per-device batch no data crosses devices.

This module imports neither TensorFlow nor the input pipeline, so checking a config
(`vit_jax_stems/train/config_checks.py`) and building the train step import no TensorFlow.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp

# AlexNet PCA lighting: ImageNet RGB eigenvalues and eigenvectors (the columns). Source: pycls
# `pycls/datasets/imagenet.py` _EIG_VALS/_EIG_VECS (from fb.resnet.torch `datasets/imagenet.lua`).
EIGVALS = (0.2175, 0.0188, 0.0045)
EIGVECS = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))

# timm RandomErasing defaults (mode 'pixel', max_count 1): min_area 0.02, max_area 1/3,
# min_aspect 0.3 (max 1/0.3), 10 attempts (timm/data/random_erasing.py).
ERASE_MIN_AREA, ERASE_MAX_AREA, ERASE_MIN_ASPECT, ERASE_ATTEMPTS = 0.02, 1 / 3, 0.3, 10

# Tags folded into the step's key so that the streams never share random numbers.
_TAG_LIGHTING, _TAG_ERASING, _TAG_MIX = 1, 2, 3


@dataclasses.dataclass(frozen=True)
class DeviceAugment:
  """What the train step does to a host batch {'image': uint8 (B, H, W, 3), 'label': int (B,)}."""

  num_classes: int
  mean: tuple[float, float, float]
  std: tuple[float, float, float]
  pca_lighting_std: float = 0.0
  random_erasing_prob: float = 0.0
  mixup_alpha: float = 0.0
  cutmix_alpha: float = 0.0
  mix_switch_prob: float = 0.5
  mix_group_size: int = 64
  label_smoothing: float = 0.0

  @classmethod
  def from_config(cls, data_config, num_classes: int) -> 'DeviceAugment':
    aug = data_config.augment
    return cls(
      num_classes=num_classes,
      mean=tuple(data_config.mean),
      std=tuple(data_config.std),
      pca_lighting_std=aug.pca_lighting_std,
      random_erasing_prob=aug.random_erasing_prob,
      mixup_alpha=aug.mixup_alpha,
      cutmix_alpha=aug.cutmix_alpha,
      mix_switch_prob=aug.mix_switch_prob,
      mix_group_size=aug.mix_group_size,
      label_smoothing=aug.label_smoothing,
    )

  @property
  def mixes(self) -> bool:
    return self.mixup_alpha > 0 or self.cutmix_alpha > 0

  def check_batch_size(self, batch_size: int):
    """Raises before compile when mixing groups do not tile the per-step batch (also a config check)."""
    if self.mixes and (self.mix_group_size < 1 or batch_size % self.mix_group_size):
      raise ValueError(
        f'config.data.augment.mix_group_size: {self.mix_group_size} examples share one mixup/CutMix '
        f'draw, so it must divide the per-step batch {batch_size} (batch_size / accum_steps); '
        'change either.'
      )

  def __call__(self, images_uint8: jax.Array, labels: jax.Array, key: jax.Array):
    """(float32 normalised images (B, H, W, 3), soft targets (B, num_classes)) for one step."""
    images = images_uint8.astype(jnp.float32) / 255.0
    batch = images.shape[0]
    indices = jnp.arange(batch)
    if self.pca_lighting_std > 0:
      keys = _example_keys(jax.random.fold_in(key, _TAG_LIGHTING), indices)
      images = (
        images + jax.vmap(lambda k: pca_lighting_rgb(k, self.pca_lighting_std))(keys)[:, None, None]
      )
    images = normalize01(images, self.mean, self.std)
    if self.random_erasing_prob > 0:
      keys = _example_keys(jax.random.fold_in(key, _TAG_ERASING), indices)
      images = jax.vmap(lambda k, x: random_erasing(k, x, self.random_erasing_prob))(keys, images)
    targets = smooth_one_hot(labels, self.num_classes, self.label_smoothing)
    if self.mixes:
      self.check_batch_size(batch)
      images, targets = mix_groups(
        jax.random.fold_in(key, _TAG_MIX),
        images,
        targets,
        group_size=self.mix_group_size,
        mixup_alpha=self.mixup_alpha,
        cutmix_alpha=self.cutmix_alpha,
        switch_prob=self.mix_switch_prob,
      )
    return images, targets


def _example_keys(key: jax.Array, indices: jax.Array) -> jax.Array:
  return jax.vmap(jax.random.fold_in, (None, 0))(key, indices)


def normalize01(images01: jax.Array, mean, std) -> jax.Array:
  """(x - mean) / std per RGB channel, for images on the [0, 1] scale."""
  return (images01 - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def normalize_uint8(images_uint8: jax.Array, mean, std) -> jax.Array:
  """Eval input: uint8 0-255 -> normalised float32, as training sees it before augmentation."""
  return normalize01(images_uint8.astype(jnp.float32) / 255.0, mean, std)


def smooth_one_hot(labels: jax.Array, num_classes: int, smoothing: float) -> jax.Array:
  """One-hot targets with label smoothing: on = 1 - s + s/C, off = s/C (pycls, timm)."""
  off = smoothing / num_classes
  return jax.nn.one_hot(labels, num_classes, dtype=jnp.float32) * (1.0 - smoothing) + off


def pca_lighting_rgb(key: jax.Array, std: float) -> jax.Array:
  """The RGB offset EIGVECS @ (alpha * EIGVALS), alpha ~ N(0, std^2) per component (pycls lighting)."""
  alpha = std * jax.random.normal(key, (3,))
  return jnp.asarray(EIGVECS, jnp.float32) @ (alpha * jnp.asarray(EIGVALS, jnp.float32))


def erasing_box(key: jax.Array, height: int, width: int):
  """timm RandomErasing's box: of 10 draws (area 2-33%, log-uniform aspect 0.3-3.3) the first that fits.

  Returns (fits, top, left, box_h, box_w); `fits` is False when none of the draws fits.
  """
  k_area, k_aspect, k_top, k_left = jax.random.split(key, 4)
  area = jax.random.uniform(
    k_area, (ERASE_ATTEMPTS,), minval=ERASE_MIN_AREA, maxval=ERASE_MAX_AREA
  ) * (height * width)
  aspect = jnp.exp(
    jax.random.uniform(
      k_aspect,
      (ERASE_ATTEMPTS,),
      minval=math.log(ERASE_MIN_ASPECT),
      maxval=-math.log(ERASE_MIN_ASPECT),
    )
  )
  box_h = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
  box_w = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
  fit = (box_h < height) & (box_w < width)
  first = jnp.argmax(fit)
  box_h, box_w = box_h[first], box_w[first]
  # timm: top = randint(0, img_h - h), both ends included.
  top = jax.random.randint(k_top, (), 0, jnp.maximum(height - box_h + 1, 1))
  left = jax.random.randint(k_left, (), 0, jnp.maximum(width - box_w + 1, 1))
  return fit[first], top, left, box_h, box_w


def random_erasing(key: jax.Array, image: jax.Array, prob: float) -> jax.Array:
  """With probability prob, one box of a *normalised* (H, W, C) image becomes N(0, 1) noise per pixel."""
  height, width = image.shape[:2]
  k_apply, k_box, k_noise = jax.random.split(key, 3)
  fits, top, left, box_h, box_w = erasing_box(k_box, height, width)
  rows = jnp.arange(height)[:, None, None]
  cols = jnp.arange(width)[None, :, None]
  inside = (rows >= top) & (rows < top + box_h) & (cols >= left) & (cols < left + box_w)
  inside &= fits & (jax.random.uniform(k_apply) < prob)
  return jnp.where(inside, jax.random.normal(k_noise, image.shape, image.dtype), image)


def cutmix_box(key: jax.Array, height: int, width: int, lam: jax.Array):
  """timm/pycls rand_bbox: side ratio sqrt(1 - lam), centre uniform over the image, clipped.

  Returns (top, bottom, left, right) with bottom/right exclusive.
  """
  ratio = jnp.sqrt(1.0 - lam)
  cut_h = (height * ratio).astype(jnp.int32)
  cut_w = (width * ratio).astype(jnp.int32)
  k_y, k_x = jax.random.split(key)
  cy = jax.random.randint(k_y, (), 0, height)
  cx = jax.random.randint(k_x, (), 0, width)
  top, bottom = jnp.clip(cy - cut_h // 2, 0, height), jnp.clip(cy + cut_h // 2, 0, height)
  left, right = jnp.clip(cx - cut_w // 2, 0, width), jnp.clip(cx + cut_w // 2, 0, width)
  return top, bottom, left, right


def _mix_one_group(
  key, images, targets, partner_images, partner_targets, *, mixup_alpha, cutmix_alpha, switch_prob
):
  """One group's draw: mixup (lam ~ Beta(a, a)) or CutMix (box, lam = 1 - box area)."""
  k_switch, k_mixup, k_cutmix, k_box = jax.random.split(key, 4)
  height, width = images.shape[1:3]
  if mixup_alpha > 0 and cutmix_alpha > 0:
    use_cutmix = jax.random.uniform(k_switch) < switch_prob
  else:
    use_cutmix = jnp.asarray(cutmix_alpha > 0)
  lam_mixup = (
    jax.random.beta(k_mixup, mixup_alpha, mixup_alpha) if mixup_alpha > 0 else jnp.float32(1)
  )
  lam_cutmix = (
    jax.random.beta(k_cutmix, cutmix_alpha, cutmix_alpha) if cutmix_alpha > 0 else jnp.float32(1)
  )
  top, bottom, left, right = cutmix_box(k_box, height, width, lam_cutmix)
  rows = jnp.arange(height)[None, :, None, None]
  cols = jnp.arange(width)[None, None, :, None]
  inside = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right) & use_cutmix
  # CutMix's coefficient is corrected to the clipped box (timm correct_lam, pycls).
  lam_box = 1.0 - ((bottom - top) * (right - left)) / (height * width)
  lam = jnp.where(use_cutmix, lam_box, lam_mixup).astype(jnp.float32)
  blended = lam * images + (1.0 - lam) * partner_images
  images = jnp.where(inside, partner_images, jnp.where(use_cutmix, images, blended))
  return images, lam * targets + (1.0 - lam) * partner_targets


def mix_groups(
  key: jax.Array,
  images: jax.Array,
  targets: jax.Array,
  *,
  group_size: int,
  mixup_alpha: float,
  cutmix_alpha: float,
  switch_prob: float,
):
  """Mixup or CutMix (one draw per group of `group_size` consecutive examples) of (B, H, W, C) and (B, K)."""
  batch = images.shape[0]
  groups = batch // group_size
  grouped = images.reshape((groups, group_size) + images.shape[1:])
  grouped_targets = targets.reshape(groups, group_size, -1)
  keys = _example_keys(key, jnp.arange(groups))
  mixed, mixed_targets = jax.vmap(
    lambda k, x, t: _mix_one_group(
      k,
      x,
      t,
      x[::-1],
      t[::-1],
      mixup_alpha=mixup_alpha,
      cutmix_alpha=cutmix_alpha,
      switch_prob=switch_prob,
    )
  )(keys, grouped, grouped_targets)
  return mixed.reshape(images.shape), mixed_targets.reshape(targets.shape)
