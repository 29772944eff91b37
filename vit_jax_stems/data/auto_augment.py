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

from vit_jax_stems.data import image_ops
from vit_jax_stems.data.tf_host import tf


@dataclasses.dataclass(frozen=True)
class _Op:
  """A policy op: the image_ops op it runs and how a level in [0, 1] becomes that op's argument.

  value = level * (hi - lo) + lo, negated on a coin flip if `negate`; floored if `integer`; then
  argument = offset + scale * value (the timm/pycls "inc" variants count down from offset).
  """

  image_op: str
  lo: float
  hi: float
  negate: bool = False
  integer: bool = False
  offset: float = 0.0
  scale: float = 1.0


# Ranges: pycls `pycls/datasets/augment.py` OP_RANGES; timm `_*_level_to_arg` gives the same values
# for level = M / 10.
_OPS: dict[str, _Op] = {
  'auto_contrast': _Op('auto_contrast', 0.0, 1.0),
  'equalize': _Op('equalize', 0.0, 1.0),
  'invert': _Op('invert', 0.0, 1.0),
  'rotate': _Op('rotate', 0.0, 30.0, negate=True),
  'posterize': _Op('posterize', 0.0, 4.0, integer=True),
  'posterize_inc': _Op('posterize', 0.0, 4.0, integer=True, offset=4.0, scale=-1.0),
  'solarize': _Op('solarize', 0.0, 256.0, integer=True),
  'solarize_inc': _Op('solarize', 0.0, 256.0, integer=True, offset=256.0, scale=-1.0),
  'solarize_add': _Op('solarize_add', 0.0, 110.0, integer=True),
  'color': _Op('color', 0.1, 1.9),
  'contrast': _Op('contrast', 0.1, 1.9),
  'brightness': _Op('brightness', 0.1, 1.9),
  'sharpness': _Op('sharpness', 0.1, 1.9),
  'color_inc': _Op('color', 0.0, 0.9, negate=True, offset=1.0),
  'contrast_inc': _Op('contrast', 0.0, 0.9, negate=True, offset=1.0),
  'brightness_inc': _Op('brightness', 0.0, 0.9, negate=True, offset=1.0),
  'sharpness_inc': _Op('sharpness', 0.0, 0.9, negate=True, offset=1.0),
  'shear_x': _Op('shear_x', 0.0, 0.3, negate=True),
  'shear_y': _Op('shear_y', 0.0, 0.3, negate=True),
  'trans_x': _Op(
    'translate_x', 0.0, 0.45, negate=True
  ),  # fraction of the width (timm TranslateXRel)
  'trans_y': _Op('translate_y', 0.0, 0.45, negate=True),
}
# Identity at value 0, and then skipped: pycls v0 has rotate and shear_y at level 0 (PIL's transform
# with the identity matrix returns the same pixels).
_GEOMETRIC = frozenset({'rotate', 'shear_x', 'shear_y', 'trans_x', 'trans_y'})

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
  'auto_contrast',
  'equalize',
  'invert',
  'rotate',
  'posterize_inc',
  'solarize_inc',
  'solarize_add',
  'color_inc',
  'contrast_inc',
  'brightness_inc',
  'sharpness_inc',
  'shear_x',
  'shear_y',
  'trans_x',
  'trans_y',
)
RANDAUGMENT_OPS = (
  'auto_contrast',
  'equalize',
  'invert',
  'rotate',
  'posterize',
  'solarize',
  'solarize_add',
  'color',
  'contrast',
  'brightness',
  'sharpness',
  'shear_x',
  'shear_y',
  'trans_x',
  'trans_y',
)


def _op_call(names, index, level, sign, posterize_min):
  """(image_ops op index, argument) for names[index] at `level` with `sign` (+1 or -1).

  index, level and sign may be tensors of one shape (one entry per slot): the per-op constants are
  rows of a table, so all slots' arguments take a handful of TF ops and no control flow (TF
  executes every graph node once per image, ~1 us each).
  """
  rows = []
  for name in names:
    o = _OPS[name]
    # pycls POSTERIZE_MIN (AutoAugment keeps >= 1 bit); 0 for timm's RandAugment.
    clip_lo = posterize_min if name == 'posterize' else -math.inf
    clip_hi = 4 - posterize_min if name == 'posterize_inc' else math.inf
    rows.append(
      [
        o.hi - o.lo,
        o.lo,
        o.negate,
        clip_lo,
        clip_hi,
        o.integer,
        o.offset,
        o.scale,
        image_ops.OPS.index(o.image_op),
        name in _GEOMETRIC,
      ]
    )
  (span, lo, negate, clip_lo, clip_hi, integer, offset, scale, op, geometric) = tf.unstack(
    tf.gather(tf.constant(rows, tf.float64), index), axis=-1
  )
  # In double, as pycls `v = magnitude * (max_v - min_v) + min_v` on Python floats.
  value = tf.cast(level, tf.float64) * span + lo
  value = tf.where(negate > 0, value * tf.cast(sign, tf.float64), value)
  value = tf.clip_by_value(value, clip_lo, clip_hi)
  value = tf.where(integer > 0, tf.floor(value), value)
  op = tf.where((geometric > 0) & tf.equal(value, 0.0), 0, tf.cast(op, tf.int32))  # identity: skip
  return op, offset + scale * value


def apply_op(image, name: str, level, sign, fill, posterize_min: int = 0):
  """One op at `level` in [0, 1] (may exceed 1 with timm 'mmax'); `sign` is +1 or -1."""
  op, arg = _op_call((name,), 0, level, sign, posterize_min)
  return image_ops.apply(image, op, arg, fill)


def _apply_slots(image, names, index, level, prob, uniforms, fill, posterize_min):
  """Applies names[index[i]] at level[i] for each slot i in turn, each with probability prob[i].

  uniforms: (2, slots) draws in [0, 1): the op is applied if the first is < prob, its value is
  negated (for ops with a sign) if the second is > 0.5.
  """
  sign = tf.where(uniforms[1] > 0.5, -1.0, 1.0)
  op, arg = _op_call(names, index, level, sign, posterize_min)
  op = tf.where(uniforms[0] < prob, op, 0)  # 0: identity
  for i in range(index.shape[0]):  # unrolled: each slot is one switch over compiled kernels
    image = image_ops.apply(image, op[i], arg[i], fill)
  return image


def auto_augment(image: tf.Tensor, seed: tf.Tensor, fill=(128, 128, 128)) -> tf.Tensor:
  """pycls AutoAugment: one of the 25 v0 sub-policies, each of its two ops with its probability.

  fill: pycls WARP_PARAMS fillcolor (128, 128, 128); posterize keeps >= 1 bit (pycls POSTERIZE_MIN).
  All draws of an image come from one stateless call: [sub-policy, apply x2, sign x2].
  """
  names = sorted({op for sub in AUTOAUGMENT_V0 for op, _, _ in sub})
  op_table = tf.constant(
    [[names.index(op) for op, _, _ in sub] for sub in AUTOAUGMENT_V0], tf.int32
  )
  prob_table = tf.constant([[p for _, p, _ in sub] for sub in AUTOAUGMENT_V0], tf.float32)
  level_table = tf.constant([[m for _, _, m in sub] for sub in AUTOAUGMENT_V0], tf.float64)
  uniforms = tf.random.stateless_uniform([5], seed)
  sub = tf.minimum(tf.cast(uniforms[0] * len(AUTOAUGMENT_V0), tf.int32), len(AUTOAUGMENT_V0) - 1)
  return _apply_slots(
    image,
    names,
    tf.gather(op_table, sub),
    tf.gather(level_table, sub),
    tf.gather(prob_table, sub),
    tf.reshape(uniforms[1:], [2, 2]),
    fill,
    posterize_min=1,
  )


@dataclasses.dataclass(frozen=True)
class RandAugmentSpec:
  """Parsed timm RandAugment string; fields as in timm `rand_augment_transform`."""

  num_layers: int = 2  # 'n'
  magnitude: float = 10.0  # 'm', on timm's 0-10 scale
  prob: float = 0.5  # 'p', probability of each chosen op
  magnitude_std: float = 0.0  # 'mstd': magnitude ~ N(m, mstd) per op; inf (mstd > 100): U(0, m)
  magnitude_max: float = 10.0  # 'mmax': clip of the sampled magnitude
  increasing: bool = False  # 'inc1': ops whose strength grows with the magnitude


def parse_randaugment(config_str: str) -> RandAugmentSpec:
  """Parses 'rand-m9-mstd0.5-inc1' and the other keys timm accepts (n, m, p, mstd, mmax, inc)."""
  parts = config_str.split('-')
  if parts[0] != 'rand':
    raise ValueError(
      f'config.data.augment.randaugment={config_str!r} must start with '
      "'rand-', e.g. 'rand-m9-mstd0.5-inc1'."
    )
  fields = {}
  keys = {
    'n': ('num_layers', int),
    'm': ('magnitude', float),
    'p': ('prob', float),
    'mstd': ('magnitude_std', float),
    'mmax': ('magnitude_max', float),
    'inc': ('increasing', int),
  }
  for part in parts[1:]:
    match = re.fullmatch(r'([a-z]+)(\d.*)', part)
    if not match or match.group(1) not in keys:
      raise ValueError(
        f'Unknown RandAugment section {part!r} in config.data.augment.randaugment={config_str!r}; '
        f'known: {sorted(keys)}.'
      )
    name, cast = keys[match.group(1)]
    fields[name] = cast(match.group(2))
  fields['increasing'] = bool(fields.get('increasing', False))
  if fields.get('magnitude_std', 0.0) > 100:
    fields['magnitude_std'] = math.inf
  return RandAugmentSpec(**fields)


def rand_augment(image: tf.Tensor, seed: tf.Tensor, spec: RandAugmentSpec, fill=(128, 128, 128)):
  """timm RandAugment: `num_layers` ops drawn uniformly with replacement, each applied with `prob`.

  All draws of an image come from two stateless calls: uniforms [op, apply, sign] per layer, and
  the per-layer magnitude noise.
  """
  names = RANDAUGMENT_INCREASING_OPS if spec.increasing else RANDAUGMENT_OPS
  n = spec.num_layers
  uniform_seed, magnitude_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  uniforms = tf.random.stateless_uniform([3, n], uniform_seed)
  index = tf.minimum(tf.cast(uniforms[0] * len(names), tf.int32), len(names) - 1)
  magnitude = tf.fill([n], tf.constant(spec.magnitude, tf.float32))
  if math.isinf(spec.magnitude_std):
    magnitude = tf.random.stateless_uniform([n], magnitude_seed, 0.0, spec.magnitude)
  elif spec.magnitude_std > 0:
    magnitude += spec.magnitude_std * tf.random.stateless_normal([n], magnitude_seed)
  magnitude = tf.clip_by_value(magnitude, 0.0, spec.magnitude_max)
  # timm's posterize (no minimum) so that 'inc1' at m=10 can reach 0 bits as in timm.
  level = tf.cast(magnitude, tf.float64) / 10.0
  return _apply_slots(image, names, index, level, tf.fill([n], spec.prob), uniforms[1:], fill, 0)
