"""The search space of a sweep: which config fields each trial samples, and from what.

Syntax of `--space` (comma-separated, one entry per dotted config field):

  optimizer.lr=loguniform(2.5e-4,8e-3),optimizer.weight_decay=loguniform(0.02,0.8)
  schedule.warmup_epochs=uniform(0,5),optimizer.b2=choice(0.99|0.999)
  ema.enabled=choice(true|false)

`loguniform(a,b)` (0 < a < b) and `uniform(a,b)` (a < b) set float fields; `choice(v1|v2|...)`
sets a number, string or boolean field, each value typed by the field as a config option is
(vit_jax_stems/overrides.py). Fields that `--models` and `--epochs` set (model_name,
total_epochs/steps/examples), and batch_size (a trial group shares one batch shape), are not
sampled.

The default space (no `--space`) is P1's random search (arXiv 2106.14881, Sec. 4;
docs/references.md#experiment-protocols): lr and weight decay log-uniform in [x/8, 4x] around the
config's base point x = (config.optimizer.lr, config.optimizer.weight_decay). What a user gets
at the config's batch: the sampled `optimizer.lr` goes through the trainer's `optimizer.base_lr`,
which multiplies it by batch_size / optimizer.lr_base_batch when lr_base_batch is set (ConViT's
DeiT recipe: 5e-4 per 512 images, so at batch 1024 peak lrs from 1.25e-4 to 4e-3) and uses it as
the peak lr when not (the pycls configs, trained at batch 2048 as P1: AdamW 1e-3 gives
1.25e-4..4e-3; the P1 Table 4 value 2e-3 of `tuned` gives P1's 2.5e-4..8e-3, and SGD 0.8 would
give P1's 0.1..3.2; a `--config.batch_size` override then keeps these lrs unless
`--config.optimizer.lr_base_batch=2048` is also set). P1's weight-decay ranges, (0.02, 0.8) and
(4e-6, 1.2e-4), are [x/8, 4x] of 0.2 and 3e-5 up to P1's rounding of the lower end.

Each trial's values are a pure function of (sweep seed, trial index): a counter-based generator
(numpy Philox keyed by both) draws one uniform number per field, in the order the space lists
them, and each distribution maps its number into its range. Adding trials adds samples and never
changes the earlier ones; trial k of every model and optimizer gets the same uniform numbers
(the same relative place in its ranges), a paired comparison.
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np

from vit_jax_stems import overrides
from vit_jax_stems.train import config_checks

KINDS = ('loguniform', 'uniform', 'choice')
# Set by other sweep arguments, or shared by a trial group: never sampled.
NOT_SAMPLED = {
  'model_name': 'set by --models',
  'total_epochs': 'set by --epochs',
  'total_steps': 'set by --epochs',
  'total_examples': 'set by --epochs',
  'batch_size': 'a trial group shares one batch: run one sweep per batch size',
}
# P1's random-search range around a base point x: [x / 8, 4 x].
P1_LOW, P1_HIGH = 1 / 8, 4.0


class SpaceError(config_checks.ConfigError):
  """A --space that cannot be sampled; the message names the entry and what to change."""


@dataclasses.dataclass(frozen=True)
class Distribution:
  kind: str  # one of KINDS
  low: float | None = None
  high: float | None = None
  choices: tuple = ()

  def value(self, u):
    """The value at the uniform number u in [0, 1)."""
    if self.kind == 'loguniform':
      return float(math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low))))
    if self.kind == 'uniform':
      return float(self.low + u * (self.high - self.low))
    return self.choices[min(int(u * len(self.choices)), len(self.choices) - 1)]

  def __str__(self):
    if self.kind == 'choice':
      return f'choice({"|".join(str(c) for c in self.choices)})'
    return f'{self.kind}({self.low:g},{self.high:g})'


def describe(space):
  """The space in `--space` syntax (sweep.json, logs)."""
  return ','.join(f'{field}={dist}' for field, dist in space.items())


def parse(text, config):
  """`--space` text -> {dotted field: Distribution}, in the order given; every field checked
  against `config` (it must exist and hold what its distribution gives) before any training."""
  space = {}
  for entry in _split_top_level(text):
    match = re.fullmatch(r'\s*([\w.]+)\s*=\s*(\w+)\s*\((.*)\)\s*', entry)
    if not match:
      raise SpaceError(
        f'--space entry {entry!r}: write field=loguniform(a,b), uniform(a,b) or choice(v1|v2|...).'
      )
    field, kind, args = match.groups()
    if field.startswith('config.'):
      field = field[len('config.') :]
    if field in space:
      raise SpaceError(f'--space names {field} twice.')
    if field in NOT_SAMPLED:
      raise SpaceError(f'--space: config.{field} is not sampled ({NOT_SAMPLED[field]}).')
    kind_of_field = _field_type(config, field)
    space[field] = _distribution(entry, field, kind, args, kind_of_field)
  if not space:
    raise SpaceError('--space is empty: give at least one field=distribution(...).')
  return space


def default_space(config):
  """P1's space around the config's base point: lr and weight decay log-uniform in [x/8, 4x]."""
  space = {}
  for field in ('lr', 'weight_decay'):
    x = config.optimizer[field]
    if not x or x <= 0:
      raise SpaceError(
        f'config.optimizer.{field} is {x}: the default space samples [x/8, 4x] around it, so it '
        'must be > 0 (set it, or pass --space).'
      )
    space[f'optimizer.{field}'] = Distribution('loguniform', x * P1_LOW, x * P1_HIGH)
  return space


def sample(space, sweep_seed, trial_index):
  """{field: value} of trial `trial_index`: a pure function of (sweep_seed, trial_index)."""
  if sweep_seed < 0 or trial_index < 0:
    raise ValueError(f'sweep seed and trial index must be >= 0, got {sweep_seed}, {trial_index}.')
  key = np.array([sweep_seed, trial_index], dtype=np.uint64)
  uniforms = np.random.Generator(np.random.Philox(key=key)).random(len(space))
  return {field: dist.value(float(u)) for (field, dist), u in zip(space.items(), uniforms)}


def _split_top_level(text):
  """'a=f(1,2),b=g(3)' -> ['a=f(1,2)', 'b=g(3)']: commas inside parentheses stay."""
  entries, depth, current = [], 0, ''
  for ch in text:
    depth += {'(': 1, ')': -1}.get(ch, 0)
    if ch == ',' and depth == 0:
      entries.append(current)
      current = ''
    else:
      current += ch
  entries.append(current)
  return [e for e in entries if e.strip()]


def _field_type(config, field):
  """The type of `config.field` (a placeholder's declared type), or SpaceError naming it."""
  node, path = config, 'config'
  *parents, leaf = field.split('.')
  for name in parents:
    if name not in node or not hasattr(node[name], 'keys'):
      raise SpaceError(f'--space: {path} has no group {name!r} (in {field}).')
    node, path = node[name], f'{path}.{name}'
  if leaf not in node:
    raise SpaceError(
      f'--space: {path} has no field {leaf!r}.{overrides.did_you_mean(leaf, node.keys())}'
    )
  if hasattr(node[leaf], 'keys'):
    raise SpaceError(f'--space: config.{field} is a group of fields, not a value.')
  return node.get_type(leaf)


def _distribution(entry, field, kind, args, kind_of_field):
  if kind not in KINDS:
    raise SpaceError(
      f'--space {entry!r}: no distribution {kind!r}.{overrides.did_you_mean(kind, KINDS)} '
      f'Use {", ".join(KINDS)}.'
    )
  if kind == 'choice':
    if kind_of_field not in (bool, int, float, str):
      raise SpaceError(
        f'--space: config.{field} holds {kind_of_field.__name__}; choice() '
        'sets numbers, strings and booleans.'
      )
    try:
      choices = tuple(overrides.parse_value(v, kind_of_field) for v in args.split('|'))
    except ValueError as e:
      raise SpaceError(
        f'--space {entry!r}: config.{field} holds a {kind_of_field.__name__}: {e}.'
      ) from None
    return Distribution('choice', choices=choices)
  if kind_of_field is not float:
    raise SpaceError(
      f'--space: config.{field} holds {kind_of_field.__name__}, not a float; '
      f'{kind}() samples floats (use choice(v1|v2|...)).'
    )
  bounds = args.split(',')
  try:
    low, high = (float(b) for b in bounds)
  except ValueError:
    raise SpaceError(f'--space {entry!r}: {kind}(a,b) takes two numbers.') from None
  if not low < high:
    raise SpaceError(f'--space {entry!r}: the lower bound must be below the upper one.')
  if kind == 'loguniform' and low <= 0:
    raise SpaceError(f'--space {entry!r}: loguniform bounds must be > 0.')
  return Distribution(kind, low, high)
