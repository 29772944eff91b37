"""Checks of a training config that run before anything is compiled.

Every message names the config field to change. ml_collections already rejects overrides of
unknown fields on the command line (`--config.optimizer.lrr=1` fails); `check` also rejects
unknown fields written in a config file, and settings that contradict each other or the
machine (batch not divisible by the devices, a mesh that does not fit).
"""

import re
from typing import NamedTuple

import jax
import ml_collections

from vit_jax_stems import models
from vit_jax_stems.data import config as data_config
from vit_jax_stems.data import device_augment
from vit_jax_stems.train import config_schema, durations, optimizer, sharding


class ConfigError(ValueError):
  """A setting that cannot work; the message names the config field and what to change."""


# Sections whose keys are free: config.model holds ModelSpec overrides, which the model's own
# validation checks (`spec_fn` below) instead of the defaults of config_schema.
FREE_FORM = ('config.model',)


def _check_fields(config, schema, where='config'):
  """Every field of `config` must exist in `schema` (config_schema.base_config), recursively; a
  field added there is accepted here without any edit."""
  extra = sorted(set(config.keys()) - set(schema.keys()))
  if extra:
    raise ConfigError(
      f'Unknown config field(s): {", ".join(f"{where}.{k}" for k in extra)}. '
      f'Known: {", ".join(sorted(schema.keys()))}.'
    )
  for key, default in schema.items():
    value, field = config.get(key), f'{where}.{key}'
    is_section = isinstance(default, ml_collections.ConfigDict)
    if is_section and isinstance(value, ml_collections.ConfigDict) and field not in FREE_FORM:
      _check_fields(value, default, field)


class EvalEntry(NamedTuple):
  """One of config.evals: `split` of TFDS `dataset` (from `data_dir`, None: config.data.data_dir),
  reported as eval/<name>/top1 etc."""

  dataset: str
  split: str
  name: str
  data_dir: str | None = None


_EVAL_NAME = re.compile(r'[A-Za-z0-9_.-]+')
_EVALS_EXAMPLE = "(('imagenet_v2', 'test', 'v2'), ('imagenet2012_real', 'validation', 'real'))"


def eval_entries(config) -> list[EvalEntry]:
  """config.evals as EvalEntry's; ConfigError naming the entry for one that is malformed."""
  evals = config.get('evals') or ()
  if isinstance(evals, str) or not isinstance(evals, (tuple, list)):
    raise ConfigError(f'config.evals: use a tuple of entries such as {_EVALS_EXAMPLE}.')
  if evals and all(isinstance(e, str) for e in evals):
    raise ConfigError(
      f'config.evals={tuple(evals)!r} is one entry, not a tuple of entries: write '
      f'({tuple(evals)!r},) (with the trailing comma).'
    )
  entries, names = [], set()
  for i, entry in enumerate(evals):
    where = f'config.evals[{i}]={entry!r}'
    ok = isinstance(entry, (tuple, list)) and len(entry) in (3, 4)
    ok = ok and all(isinstance(v, str) and v for v in entry[:3])
    ok = ok and (len(entry) == 3 or entry[3] is None or isinstance(entry[3], str))
    if not ok:
      raise ConfigError(
        f'{where}: use (dataset, split, name) or (dataset, split, name, data_dir) with strings, '
        f"such as ('imagenet_v2', 'test', 'v2')."
      )
    entry = EvalEntry(*entry)
    if not _EVAL_NAME.fullmatch(entry.name):
      raise ConfigError(
        f'{where}: the name {entry.name!r} goes into metric names (eval/<name>/top1); use '
        'letters, digits, _ . - only.'
      )
    if entry.name in names:
      raise ConfigError(f'{where}: the name {entry.name!r} is taken by an earlier entry.')
    names.add(entry.name)
    entries.append(entry)
  return entries


def _require(cond, field, msg):
  if not cond:
    raise ConfigError(f'config.{field}: {msg}')


def check(config, **kwargs):
  """Raises ConfigError naming the field for any unknown or contradictory setting.

  The checks of other modules that it calls (durations, mesh, sharding rules, ModelSpec) raise
  ValueError with the same kind of message; they come out as ConfigError too, so that callers
  (main.py) can print them without a traceback.
  """
  try:
    _check(config, **kwargs)
  except ConfigError:
    raise
  except ValueError as e:
    raise ConfigError(str(e)) from None


def _check(config, *, num_devices=None, num_processes=None, model_names=None, spec_fn=None):
  num_processes = jax.process_count() if num_processes is None else num_processes
  if num_devices is None:
    num_devices = jax.device_count()
    if config.get('num_devices') is not None:
      _require(num_processes == 1, 'num_devices', 'only for single-process runs; use None.')
      _require(
        1 <= config.num_devices <= num_devices,
        'num_devices',
        f'must be in [1, {num_devices}] (the devices of this machine).',
      )
      num_devices = config.num_devices
  _check_fields(config, config_schema.base_config())

  if model_names is not None:
    _require(
      config.model_name in model_names,
      'model_name',
      f'{config.model_name!r} is not a registered model; choose one of {model_names}.',
    )
  for key in ('num_classes', 'image_size'):
    _require(
      key not in config.model,
      f'model.{key}',
      'set by the dataset (num_classes) and config.data.image_size; remove it.',
    )
  if spec_fn is not None:
    try:
      spec_fn()
    except (TypeError, ValueError) as e:
      raise ValueError(f'config.model (ModelSpec overrides {dict(config.model)}): {e}') from e
  _require(
    config.dtype in models.COMPUTE_DTYPES,
    'dtype',
    f'{config.dtype!r} is not one of {tuple(models.COMPUTE_DTYPES)}.',
  )

  # Batch sizes: the batch is split over every device and every process.
  accum = config.optimizer.accum_steps
  _require(accum >= 1, 'optimizer.accum_steps', f'must be >= 1, got {accum}.')
  _require(
    config.batch_size % accum == 0,
    'batch_size',
    f'{config.batch_size} is not divisible by config.optimizer.accum_steps={accum}.',
  )
  micro = config.batch_size // accum
  _require(
    micro % num_devices == 0,
    'batch_size',
    f'the per-step batch {micro} (batch_size / accum_steps) is not divisible by the '
    f'{num_devices} devices.',
  )
  _require(
    config.eval_batch_size % num_devices == 0,
    'eval_batch_size',
    f'{config.eval_batch_size} is not divisible by the {num_devices} devices.',
  )
  del num_processes  # devices are a multiple of processes, so the checks above cover them.
  eval_entries(config)  # their datasets: vit_jax_stems.train.evaluate.check_evals
  _require(
    config.get('precise_bn_samples', 0) >= 0,
    'precise_bn_samples',
    f'must be >= 0 (0 turns precise BN statistics off), got {config.get("precise_bn_samples")}.',
  )
  _require(
    not (config.get('linear_probe') and config.get('precise_bn_samples', 0) > 0),
    'precise_bn_samples',
    "must be 0 with config.linear_probe (a probe keeps the backbone's BatchNorm statistics).",
  )
  device_augment.DeviceAugment.from_config(config.data, num_classes=1).check_batch_size(micro)
  problem = data_config.train_fraction_problem(config.data.train_fraction)
  if problem:
    raise ConfigError(problem)

  sharding.mesh_shape(config.mesh, num_devices)
  sharding.check_rules(config.sharding_rules)
  _require(
    config.min_size_to_shard_mb >= 0,
    'min_size_to_shard_mb',
    f'must be >= 0 (0: split every leaf the rules allow), got {config.min_size_to_shard_mb}.',
  )

  opt = config.optimizer
  _require(
    opt.name in optimizer.OPTIMIZERS,
    'optimizer.name',
    f'{opt.name!r} is not one of {optimizer.OPTIMIZERS}.',
  )
  _require(
    opt.wd_mask in optimizer.WD_MASKS,
    'optimizer.wd_mask',
    f'{opt.wd_mask!r} is not one of {optimizer.WD_MASKS}.',
  )
  _require(opt.lr > 0, 'optimizer.lr', f'must be > 0, got {opt.lr}.')
  sched = config.schedule
  _require(
    sched.name in optimizer.SCHEDULES,
    'schedule.name',
    f'{sched.name!r} is not one of {optimizer.SCHEDULES}.',
  )
  if sched.name == 'pycls_cosine':
    _require(0 <= sched.min_lr_factor <= 1, 'schedule.min_lr_factor', 'must be in [0, 1].')
  if sched.name == 'timm_cosine':
    _require(
      sched.min_lr < optimizer.base_lr(opt, config.batch_size),
      'schedule.min_lr',
      'must be below the peak lr (config.optimizer.lr).',
    )

  if config.ema.enabled:
    _require(config.ema.period >= 1, 'ema.period', 'must be >= 1.')
    _require(config.ema.alpha > 0, 'ema.alpha', 'must be > 0 when config.ema.enabled.')

  # Durations: exactly one unit each (durations.to_steps raises naming the fields).
  for prefix in ('total',):
    durations.to_steps(config, prefix, steps_per_epoch=1, batch_size=1, where='config')
  for unit, value in durations.given_units(config, 'total').items():
    _require(
      value > 0, f'total_{unit}', f'must be > 0 (a run trains at least one step), got {value}.'
    )
  for prefix in ('eval_every', 'checkpoint_every'):
    durations.to_steps(config, prefix, steps_per_epoch=1, batch_size=1, default=0)
  durations.to_steps(
    sched, 'warmup', steps_per_epoch=1, batch_size=1, default=0, where='config.schedule'
  )
  _require(config.log_every_steps >= 1, 'log_every_steps', 'must be >= 1.')
  _require(config.keep_checkpoints >= 1, 'keep_checkpoints', 'must be >= 1.')
