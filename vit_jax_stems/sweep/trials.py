"""The trial list of a sweep: a pure function of the sweep's arguments, recorded in DIR/sweep.json.

A trial is one dict (JSON as it is):

  {'trial_id': 'vit_c_1gf-adamw-e15-t002',  # model-optimizer-duration-t<index>
   'index': 2,                     # sample index within its (model, optimizer, epochs)
   'model': 'vit_c_1gf', 'optimizer': 'adamw',
   'epochs': 15.0,                 # config.total_epochs of the trial; None: the config's steps
   'overrides': {'optimizer.lr': 1.2e-3, 'optimizer.weight_decay': 0.08},  # dotted config fields
   'group': 'vit_c_1gf-adamw-e15-g00'}

Every (model, optimizer, epochs) gets trials 0..N-1, trial k sampled as
`space.sample(space_of_its_optimizer, sweep_seed, k)`. Its group is `index // group_size`
within the same (model, optimizer, epochs), so a group's trials share the model, the optimizer,
the schedule and the batch (the space never samples batch_size): what a vmapped group needs.
Neither ids nor samples nor groups depend on N, so `--trials` may grow between runs (the sweep is
extended); any other change of the arguments is another sweep and needs another DIR.
"""

import json
import uuid

from etils import epath

from vit_jax_stems.sweep import space as space_lib
from vit_jax_stems.train import config_checks

SWEEP_JSON = 'sweep.json'
# Arguments that may change between runs of one sweep: how many trials; the --space text (its
# parsed form, 'spaces', is what counts).
NOT_DEFINING = ('trials', 'space')


class SweepError(config_checks.ConfigError):
  """Sweep arguments that cannot work; printed as one line, before any training."""


def duration_label(epochs, config):
  """'e15' for 15 epochs, 'e2.5', or the config's own duration when epochs is None ('s4')."""
  if epochs is not None:
    return f'e{epochs:g}'
  for unit, letter in (('epochs', 'e'), ('steps', 's'), ('examples', 'x')):
    value = config.get(f'total_{unit}')
    if value is not None:
      return f'{letter}{value:g}'
  raise SweepError('The config sets no training length: set config.total_epochs or --epochs.')


def make_trials(*, base_configs, models, epochs, n_trials, spaces, sweep_seed, group_size):
  """The trial list, in order model, optimizer, epochs, index.

  Args:
    base_configs: {optimizer name: its config} (cli.py: one config file per optimizer).
    models: registered model names, or None for each config's own model_name.
    epochs: training lengths in epochs, or None for each config's own.
    n_trials: trials per (model, optimizer, epochs).
    spaces: {optimizer name: {field: space.Distribution}}.
    sweep_seed: the seed of every sample.
    group_size: at most this many trials per group.
  """
  models = models or list(dict.fromkeys(c.model_name for c in base_configs.values()))
  trials = []
  for model in models:
    for optimizer, config in base_configs.items():
      for epoch in epochs or [None]:
        label = f'{model}-{optimizer}-{duration_label(epoch, config)}'
        trial_epochs = epoch if epoch is not None else config.get('total_epochs')
        for index in range(n_trials):
          trials.append(
            {
              'trial_id': f'{label}-t{index:03d}',
              'index': index,
              'model': model,
              'optimizer': optimizer,
              'epochs': None if trial_epochs is None else float(trial_epochs),
              'overrides': space_lib.sample(spaces[optimizer], sweep_seed, index),
              'group': f'{label}-g{index // group_size:02d}',
            }
          )
  return trials


def by_group(trials):
  """{group id: its trials in index order}, groups in trial-list order."""
  groups = {}
  for trial in trials:
    groups.setdefault(trial['group'], []).append(trial)
  return groups


def group_config(base_config, trial):
  """The config every trial of `trial`'s group shares: the model and training length set, the
  sampled fields not yet (what `grouped.train_group` varies per trial)."""
  config = base_config.copy_and_resolve_references()
  config.model_name = trial['model']
  if trial['epochs'] is not None:
    config.total_epochs = trial['epochs']
    config.total_steps = None
    config.total_examples = None
  return config


def trial_config(base_config, trial):
  """The config that trains `trial` alone: its group's config with its sampled fields."""
  return apply_overrides(group_config(base_config, trial), trial['overrides'])


def apply_overrides(config, overrides):
  """`config` with the dotted `overrides` ({'optimizer.lr': 1e-3}) set in place; an unknown field
  is a ConfigError, not a new field."""
  for field, value in overrides.items():
    *parents, leaf = field.split('.')
    node = config
    try:
      for name in parents:
        node = node[name]
      node[leaf]
    except (KeyError, AttributeError):
      raise config_checks.ConfigError(
        f'Trial override {field}={value!r}: config.{field} is not a config field.'
      ) from None
    node[leaf] = value
  return config


def check_workdir(workdir, definition, trials):
  """Whether DIR/sweep.json must be (re)written for this sweep; SweepError if DIR holds another
  sweep or a training run. `definition`: the arguments that define the sweep (JSON values)."""
  workdir = epath.Path(workdir)
  if (workdir / 'checkpoints').exists():
    raise SweepError(f'{workdir} holds a training run (checkpoints/): give the sweep its own DIR.')
  path = workdir / SWEEP_JSON
  if not path.exists():
    return True
  recorded = json.loads(path.read_text())
  old, new = recorded['arguments'], _as_json(definition)
  differ = sorted(
    k for k in set(old) | set(new) if k not in NOT_DEFINING and old.get(k) != new.get(k)
  )
  if differ:
    raise SweepError(
      f'{workdir} holds another sweep (its {SWEEP_JSON} differs in {", ".join(differ)}): use '
      'another --workdir, or the arguments it was started with.'
    )
  old_trials = {t['trial_id']: t for t in recorded['trials']}
  for trial in _as_json(trials):
    if trial['trial_id'] in old_trials and old_trials[trial['trial_id']] != trial:
      raise SweepError(
        f'{path}: trial {trial["trial_id"]} was recorded with other values; this code samples '
        'differently from the one that started the sweep. Use another --workdir.'
      )
  return recorded != _as_json({'arguments': definition, 'trials': trials})


def write_sweep_json(workdir, definition, trials):
  """DIR/sweep.json: the arguments and the trial list (written whole, then renamed into place)."""
  write_json_atomic(epath.Path(workdir) / SWEEP_JSON, {'arguments': definition, 'trials': trials})


def write_json_atomic(path, obj):
  write_text_atomic(path, json.dumps(obj, indent=1) + '\n')


def write_text_atomic(path, text):
  """Writes `text` to `path` through a temporary file renamed into place, so that a reader
  (another job, `report`) never sees half a file."""
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.parent / f'.{path.name}.{uuid.uuid4().hex}.tmp'  # one per writer
  tmp.write_text(text)
  tmp.replace(path)


def _as_json(obj):
  return json.loads(json.dumps(obj))
