"""The one place where durations given as epochs, steps or examples become steps.

A config names a duration by a prefix and exactly one unit suffix, e.g. `total_epochs=400`
or `total_steps=1000`, `log_every_steps=50` or `eval_every_epochs=1`. Everything else in
the trainer only sees steps.
"""

import math

_UNITS = ('steps', 'epochs', 'examples')


def to_steps(cfg, prefix, *, steps_per_epoch, batch_size, default=None, where='config'):
  """Returns the duration `{prefix}_{steps|epochs|examples}` of `cfg` in steps.

  Args:
    cfg: a ConfigDict (or a sub-dict such as config.schedule).
    prefix: e.g. 'total', 'warmup', 'log_every'.
    steps_per_epoch: number of training steps in one pass over the training set.
    batch_size: examples per step (for `_examples`).
    default: value (in steps) when none of the three fields is set; None means required.
    where: how to name `cfg` in error messages, e.g. 'config.schedule'.
  """
  given = given_units(cfg, prefix)
  if len(given) > 1:
    names = ', '.join(f'{where}.{prefix}_{u}' for u in given)
    raise ValueError(f'Contradictory durations: set only one of {names} (the others to None).')
  if not given:
    if default is None:
      raise ValueError(
        'Missing duration: set one of ' + ', '.join(f'{where}.{prefix}_{u}' for u in _UNITS) + '.'
      )
    return default
  ((unit, value),) = given.items()
  if value < 0:
    raise ValueError(f'{where}.{prefix}_{unit} must be >= 0, got {value}.')
  if unit == 'steps':
    return int(value)
  if unit == 'epochs':
    return math.ceil(value * steps_per_epoch - 1e-9)
  return math.ceil(value / batch_size - 1e-9)


def given_units(cfg, prefix):
  """{unit: value} of the fields `{prefix}_{steps|epochs|examples}` that are set (not None)."""
  return {u: cfg.get(f'{prefix}_{u}') for u in _UNITS if cfg.get(f'{prefix}_{u}') is not None}


def is_set(cfg, prefix):
  """Whether any of the duration fields `{prefix}_*` is set (not None)."""
  return any(cfg.get(f'{prefix}_{u}') is not None for u in _UNITS)


def prefer_command_line(config, argv):
  """Lets `--config.total_steps=100` replace a config file's `total_epochs=400` (and so on for
  every duration) instead of being reported as contradictory: for each duration field set on
  the command line, its sibling units that were not also set there become None."""
  given = set()
  for arg in argv:
    if arg.startswith('--config.'):
      given.add(arg[len('--config.') :].split('=', 1)[0])
  for path in given:
    *parents, leaf = path.split('.')
    for unit in _UNITS:
      if leaf.endswith('_' + unit):
        prefix = leaf[: -len(unit) - 1]
        node = config
        for p in parents:
          node = node[p]
        for other in _UNITS:
          sibling = f'{prefix}_{other}'
          if other != unit and sibling in node and '.'.join(parents + [sibling]) not in given:
            node[sibling] = None
  return config
