"""AutoAugment (pycls "policy v0") and RandAugment (timm strings such as 'rand-m9-mstd0.5-inc1') in TF.

Randomness is stateless: every draw comes from the per-example seed, so a stream is a function of
(seed, example position) and can be replayed or resumed exactly.

Op magnitudes use one convention for both policies, the one of pycls `augment.py` OP_RANGES: a level in
[0, 1] maps linearly to an op argument range; timm's RandAugment magnitude M on its 0-10 scale is
level = M / 10 with the same ranges (pycls documents its ops as numerically identical to timm's v0
and "inc" transforms, except pycls keeps at least one bit in posterize).
"""
import dataclasses
import math
import re
from typing import Callable

import tensorflow as tf

from vit_jax_stems.data import image_ops

# op name -> (function of (image, signed value, fill), min, max, randomly negated). Ranges: pycls
# `pycls/datasets/augment.py` OP_RANGES; timm `_*_level_to_arg` gives the same values for level = M / 10.
_OPS: dict[str, tuple[Callable, float, float, bool]] = {
    'auto_contrast': (lambda x, v, f: image_ops.auto_contrast(x), 0.0, 1.0, False),
    'equalize': (lambda x, v, f: image_ops.equalize(x), 0.0, 1.0, False),
    'invert': (lambda x, v, f: image_ops.invert(x), 0.0, 1.0, False),
    'rotate': (image_ops.rotate, 0.0, 30.0, True),
    'posterize': (lambda x, v, f: image_ops.posterize(x, tf.floor(v)), 0.0, 4.0, False),
    'posterize_inc': (lambda x, v, f: image_ops.posterize(x, 4 - tf.floor(v)), 0.0, 4.0, False),
    'solarize': (lambda x, v, f: image_ops.solarize(x, tf.floor(v)), 0.0, 256.0, False),
    'solarize_inc': (lambda x, v, f: image_ops.solarize(x, 256 - tf.floor(v)), 0.0, 256.0, False),
    'solarize_add': (lambda x, v, f: image_ops.solarize_add(x, tf.floor(v)), 0.0, 110.0, False),
    'color': (lambda x, v, f: image_ops.color(x, v), 0.1, 1.9, False),
    'contrast': (lambda x, v, f: image_ops.contrast(x, v), 0.1, 1.9, False),
    'brightness': (lambda x, v, f: image_ops.brightness(x, v), 0.1, 1.9, False),
    'sharpness': (lambda x, v, f: image_ops.sharpness(x, v), 0.1, 1.9, False),
    'color_inc': (lambda x, v, f: image_ops.color(x, 1 + v), 0.0, 0.9, True),
    'contrast_inc': (lambda x, v, f: image_ops.contrast(x, 1 + v), 0.0, 0.9, True),
    'brightness_inc': (lambda x, v, f: image_ops.brightness(x, 1 + v), 0.0, 0.9, True),
    'sharpness_inc': (lambda x, v, f: image_ops.sharpness(x, 1 + v), 0.0, 0.9, True),
    'shear_x': (image_ops.shear_x, 0.0, 0.3, True),
    'shear_y': (image_ops.shear_y, 0.0, 0.3, True),
    'trans_x': (image_ops.translate_x, 0.0, 0.45, True),  # fraction of the width (timm TranslateXRel)
    'trans_y': (image_ops.translate_y, 0.0, 0.45, True),
}

# AutoAugment ImageNet "policy v0" (TPU EfficientNet autoaugment.py), as (op, probability, level in
# [0, 1]); transcribed from pycls `augment.py` AUTOAUG_POLICY (= timm auto_augment_policy_v0 with M/10).
AUTOAUGMENT_V0 = (
    (('equalize', 0.8, 0.1), ('shear_y', 0.8, 0.4)),
    (('color', 0.4, 0.9), ('equalize', 0.6, 0.3)),
    (('color', 0.4, 0.1), ('rotate', 0.6, 0.8)),
    (('solarize', 0.8, 0.3), ('equalize', 0.4, 0.7)),
    (('solarize', 0.4, 0.2), ('solarize', 0.6, 0.2)),
    (('color', 0.2, 0.0), ('equalize', 0.8, 0.8)),
    (('equalize', 0.4, 0.8), ('solarize_add', 0.8, 0.3)),
    (('shear_x', 0.2, 0.9), ('rotate', 0.6, 0.8)),
    (('color', 0.6, 0.1), ('equalize', 1.0, 0.2)),
    (('invert', 0.4, 0.9), ('rotate', 0.6, 0.0)),
    (('equalize', 1.0, 0.9), ('shear_y', 0.6, 0.3)),
    (('color', 0.4, 0.7), ('equalize', 0.6, 0.0)),
    (('posterize', 0.4, 0.6), ('auto_contrast', 0.4, 0.7)),
    (('solarize', 0.6, 0.8), ('color', 0.6, 0.9)),
    (('solarize', 0.2, 0.4), ('rotate', 0.8, 0.9)),
    (('rotate', 1.0, 0.7), ('trans_y', 0.8, 0.9)),
    (('shear_x', 0.0, 0.0), ('solarize', 0.8, 0.4)),
    (('shear_y', 0.8, 0.0), ('color', 0.6, 0.4)),
    (('color', 1.0, 0.0), ('rotate', 0.6, 0.2)),
    (('equalize', 0.8, 0.4), ('equalize', 0.0, 0.8)),
    (('equalize', 1.0, 0.4), ('auto_contrast', 0.6, 0.2)),
    (('shear_y', 0.4, 0.7), ('solarize_add', 0.6, 0.7)),
    (('posterize', 0.8, 0.2), ('solarize', 0.6, 1.0)),
    (('solarize', 0.6, 0.8), ('equalize', 0.6, 0.1)),
    (('color', 0.8, 0.6), ('rotate', 0.4, 0.5)),
)

# RandAugment op lists: timm `_RAND_INCREASING_TRANSFORMS` ('inc1') and `_RAND_TRANSFORMS` ('inc0').
RANDAUGMENT_INCREASING_OPS = (
    'auto_contrast', 'equalize', 'invert', 'rotate', 'posterize_inc', 'solarize_inc', 'solarize_add',
    'color_inc', 'contrast_inc', 'brightness_inc', 'sharpness_inc', 'shear_x', 'shear_y', 'trans_x',
    'trans_y')
RANDAUGMENT_OPS = (
    'auto_contrast', 'equalize', 'invert', 'rotate', 'posterize', 'solarize', 'solarize_add', 'color',
    'contrast', 'brightness', 'sharpness', 'shear_x', 'shear_y', 'trans_x', 'trans_y')


# Ops that are the identity at value 0 and costly enough to skip then (pycls v0 has rotate and
# shear_y at level 0): PIL's transform with the identity matrix returns the image unchanged too.
_GEOMETRIC = frozenset({'rotate', 'shear_x', 'shear_y', 'trans_x', 'trans_y'})


def apply_op(image, name: str, level, sign, fill, posterize_min: int = 0):
  """One op at `level` in [0, 1] (may exceed 1 with timm 'mmax'); `sign` is +1 or -1."""
  fn, lo, hi, negate = _OPS[name]
  value = tf.cast(level, tf.float32) * (hi - lo) + lo
  if negate:
    value = value * sign
  if name == 'posterize':
    value = tf.maximum(value, posterize_min)
  elif name == 'posterize_inc':
    value = tf.minimum(value, 4 - posterize_min)
  if name in _GEOMETRIC:
    return tf.cond(tf.equal(value, 0.0), lambda: image, lambda: fn(image, value, fill))
  return fn(image, value, fill)


def _apply_one_of(image, names, op_index, level, prob, seed, fill, posterize_min):
  """Applies names[op_index] with probability prob, negating the value on a coin flip."""
  apply_seed, sign_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  sign = tf.where(tf.random.stateless_uniform([], sign_seed) > 0.5, -1.0, 1.0)
  branches = [lambda n=n: apply_op(image, n, level, sign, fill, posterize_min) for n in names]
  return tf.cond(tf.random.stateless_uniform([], apply_seed) < prob,
                 lambda: tf.switch_case(op_index, branches), lambda: image)


def auto_augment(image: tf.Tensor, seed: tf.Tensor, fill=(128, 128, 128)) -> tf.Tensor:
  """pycls AutoAugment: one of the 25 v0 sub-policies, each of its two ops with its probability.

  fill: pycls WARP_PARAMS fillcolor (128, 128, 128); posterize keeps >= 1 bit (pycls POSTERIZE_MIN).
  """
  names = sorted({op for sub in AUTOAUGMENT_V0 for op, _, _ in sub})
  op_table = tf.constant([[names.index(op) for op, _, _ in sub] for sub in AUTOAUGMENT_V0], tf.int32)
  prob_table = tf.constant([[p for _, p, _ in sub] for sub in AUTOAUGMENT_V0], tf.float32)
  level_table = tf.constant([[m for _, _, m in sub] for sub in AUTOAUGMENT_V0], tf.float32)
  choice_seed, slots_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  sub = tf.random.stateless_uniform([], choice_seed, 0, len(AUTOAUGMENT_V0), dtype=tf.int32)

  # Two unrolled slots, not a tf.while_loop: each branch is now a call of a compiled kernel, so the
  # graph stays small, and the loop's per-image control-flow cost goes.
  for i in range(2):
    op_seed = tf.random.experimental.stateless_fold_in(slots_seed, i)
    image = _apply_one_of(image, names, op_table[sub, i], level_table[sub, i], prob_table[sub, i],
                          op_seed, fill, posterize_min=1)
  return image


@dataclasses.dataclass(frozen=True)
class RandAugmentSpec:
  """Parsed timm RandAugment string; fields as in timm `rand_augment_transform`."""
  num_layers: int = 2          # 'n'
  magnitude: float = 10.0      # 'm', on timm's 0-10 scale
  prob: float = 0.5            # 'p', probability of each chosen op
  magnitude_std: float = 0.0   # 'mstd': magnitude ~ N(m, mstd) per op; inf (mstd > 100): U(0, m)
  magnitude_max: float = 10.0  # 'mmax': clip of the sampled magnitude
  increasing: bool = False     # 'inc1': ops whose strength grows with the magnitude


def parse_randaugment(config_str: str) -> RandAugmentSpec:
  """Parses 'rand-m9-mstd0.5-inc1' and the other keys timm accepts (n, m, p, mstd, mmax, inc)."""
  parts = config_str.split('-')
  if parts[0] != 'rand':
    raise ValueError(f"RandAugment string {config_str!r} must start with 'rand-', e.g. 'rand-m9-mstd0.5-inc1'.")
  fields = {}
  keys = {'n': ('num_layers', int), 'm': ('magnitude', float), 'p': ('prob', float),
          'mstd': ('magnitude_std', float), 'mmax': ('magnitude_max', float), 'inc': ('increasing', int)}
  for part in parts[1:]:
    match = re.fullmatch(r'([a-z]+)(\d.*)', part)
    if not match or match.group(1) not in keys:
      raise ValueError(f'Unknown RandAugment section {part!r} in {config_str!r}; known: {sorted(keys)}.')
    name, cast = keys[match.group(1)]
    fields[name] = cast(match.group(2))
  fields['increasing'] = bool(fields.get('increasing', False))
  if fields.get('magnitude_std', 0.0) > 100:
    fields['magnitude_std'] = math.inf
  return RandAugmentSpec(**fields)


def rand_augment(image: tf.Tensor, seed: tf.Tensor, spec: RandAugmentSpec, fill=(128, 128, 128)):
  """timm RandAugment: `num_layers` ops drawn uniformly with replacement, each applied with `prob`."""
  names = RANDAUGMENT_INCREASING_OPS if spec.increasing else RANDAUGMENT_OPS
  for i in range(spec.num_layers):  # unrolled, as in auto_augment
    layer_seed = tf.random.experimental.stateless_fold_in(seed, i)
    choice_seed, magnitude_seed, op_seed = tf.unstack(tf.random.experimental.stateless_split(layer_seed, 3))
    op_index = tf.random.stateless_uniform([], choice_seed, 0, len(names), dtype=tf.int32)
    magnitude = tf.constant(spec.magnitude, tf.float32)
    if math.isinf(spec.magnitude_std):
      magnitude = tf.random.stateless_uniform([], magnitude_seed, 0.0, spec.magnitude)
    elif spec.magnitude_std > 0:
      magnitude += spec.magnitude_std * tf.random.stateless_normal([], magnitude_seed)
    magnitude = tf.clip_by_value(magnitude, 0.0, spec.magnitude_max)
    # timm's posterize (no minimum) so that 'inc1' at m=10 can reach 0 bits as in timm.
    image = _apply_one_of(image, names, op_index, magnitude / 10.0, spec.prob, op_seed, fill, 0)
  return image
