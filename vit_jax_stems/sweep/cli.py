"""The sweep command: `python -m vit_jax_stems.sweep` and `python main.py --mode sweep`.

  python -m vit_jax_stems.sweep --config configs/vitc.py:demo --trials 16 \
      [--space 'optimizer.lr=loguniform(2.5e-4,8e-3),optimizer.weight_decay=loguniform(0.02,0.8)'] \
      [--models vit_c_1gf] [--optimizers adamw,sgd] [--epochs 5,15] [--group_size 8] \
      [--groups G1,G2] [--execution auto|grouped|sequential] [--sweep_seed 0] \
      [--submit slurm|tpu [--dry_run]] --workdir DIR [--config.a.b=value ...]

`--config` and `--config.a.b=value` are main.py's (the same files, options and overrides); the
flags below are defined here, so that main.py's `--mode sweep` takes them too (and refuses them
in its other modes). Without `--space`, each optimizer samples P1's space around its own base
point (space.py).

* `--trials N`: trials per (model, optimizer, epochs); P1 draws 64. Raising N on a rerun extends
  the sweep; its earlier trials keep their samples and results.
* `--models m1,m2`: registered model names, each set as config.model_name of the one config; the
  config's model overrides stay (the demos' `config.model` sizes). Families whose demos differ
  in more than the name (ViT_P, ViT_C and ConViT demos: depth, stem, GPSA layers) are compared
  by one sweep per config file, each into its own DIR, with the same --trials, --optimizers and
  --sweep_seed (so trial k of every family samples the same point of its space); the report reads
  the DIRs together (`python -m vit_jax_stems.sweep.report --workdir D1 D2 D3`).
* `--optimizers adamw,sgd`: one config per optimizer, each the config file with the option
  `optimizer=NAME` added to (or replacing one in) its options, then the same --config overrides.
  So each optimizer's base point is its recipe in the config file: the pycls configs' P1 values
  (configs/common.py P1_ADAMW, P1_TUNED), the demos' `DEMO_SGD`. A config file without an
  `optimizer` option cannot take --optimizers. A --config.optimizer.* override applies to every
  optimizer.
* `--epochs E1,E2`: config.total_epochs of the trials (config.total_steps and total_examples are
  cleared); default: the config's own training length.
* `--group_size K`: trials of one (model, optimizer, epochs) are grouped K at a time; a group is
  what one vmapped program (`--execution grouped`) or one scheduler job (`--submit`) runs.
  `--groups` runs only the groups named (what a scheduler job does).
* `--submit slurm|tpu`: writes and submits one job per group with trials left to run
  (vit_jax_stems/sweep/submit.py), instead of running here; `--dry_run` prints the commands.

Every argument is checked, and every trial config passes the trainer's checks, before anything
is trained or written. Results: DIR/trials.jsonl (runner.py); a killed sweep resumes when the
same command is run again.
"""

import dataclasses
import importlib
import sys
from collections.abc import Callable

from absl import flags

flags.DEFINE_integer('trials', None, 'Sweep: trials per (model, optimizer, epochs); P1 uses 64.')
flags.DEFINE_string(
  'space',
  None,
  "Sweep: e.g. 'optimizer.lr=loguniform(1e-4,1e-2),optimizer.weight_decay=uniform(0,0.3)' "
  '(also choice(a|b)); default: lr and weight decay log-uniform in [x/8, 4x] of the config.',
)
flags.DEFINE_list('models', None, 'Sweep: registered model names (config.model_name).')
flags.DEFINE_list('optimizers', None, 'Sweep: adamw,sgd (config file option optimizer=NAME).')
flags.DEFINE_list('epochs', None, 'Sweep: config.total_epochs values, e.g. 5,15.')
flags.DEFINE_integer('group_size', 8, 'Sweep: at most this many trials per group.')
flags.DEFINE_list('groups', None, 'Sweep: run only these groups (ids as in DIR/sweep.json).')
flags.DEFINE_enum(
  'execution',
  'auto',
  ['auto', 'grouped', 'sequential'],
  'Sweep: groups as one vmapped program, trials one by one, or whichever is faster here.',
)
flags.DEFINE_integer('sweep_seed', 0, 'Sweep: seed of the hyperparameter samples.')
flags.DEFINE_enum('submit', None, ['slurm', 'tpu'], 'Sweep: submit one job per group instead.')
flags.DEFINE_bool('dry_run', False, 'Sweep with --submit: print the job commands, submit nothing.')
flags.DEFINE_multi_string(
  'submit_option',
  [],
  'Sweep with --submit: a scheduler option key=value or a bare key (repeatable), e.g. '
  'partition=gpu, time=12:00:00, spot (vit_jax_stems/sweep/submit.py).',
)

SWEEP_FLAGS = (
  'trials',
  'space',
  'models',
  'optimizers',
  'epochs',
  'group_size',
  'groups',
  'execution',
  'sweep_seed',
  'submit',
  'dry_run',
  'submit_option',
)
OPTIMIZERS = ('adamw', 'sgd')
FLAGS = flags.FLAGS


def refuse_sweep_flags():
  """main.py in a mode other than sweep: a sweep flag there is a mistake, not a no-op."""
  given = [f'--{name}' for name in SWEEP_FLAGS if FLAGS[name].present]
  if given:
    sys.stderr.write(
      f'FATAL Flags parsing error: {", ".join(given)}: sweep flags; add --mode sweep.\n'
    )
    sys.exit(1)


@dataclasses.dataclass(frozen=True)
class Arguments:
  """The sweep flags (SWEEP_FLAGS) as values."""

  trials: int | None
  space: str | None = None
  models: list | None = None
  optimizers: list | None = None
  epochs: list | None = None
  group_size: int = 8
  groups: list | None = None
  execution: str = 'auto'
  sweep_seed: int = 0
  submit: str | None = None
  dry_run: bool = False
  submit_option: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class ConfigSource:
  """Where the configs come from: the `--config` argument (file and options), its --config.a.b
  overrides ({dotted field: value}) and the function that loads a `--config` argument."""

  argument: str
  overrides: dict
  load: Callable


def run(config, workdir):
  """The sweep of the parsed flags: `config` is FLAGS.config (durations preferred from the
  command line), `workdir` absolute."""
  flag = FLAGS['config']
  return sweep(
    config,
    workdir,
    Arguments(**{name: FLAGS[name].value for name in SWEEP_FLAGS}),
    ConfigSource(flag.config_filename, flag.override_values, flag.parser.parse),
    argv=sys.argv[1:],
  )


def sweep(config, workdir, args, source, *, argv):
  """Checks everything, records DIR/sweep.json, then runs the trials of `args.groups` (all by
  default) here, or submits one job per group with trials left (`args.submit`). `argv`: the
  command's arguments, which the jobs get (less what submit.job_argv drops). Returns the runner's rows, or
  what submit.submit returns."""
  import jax  # pylint: disable=g-import-not-at-top

  from vit_jax_stems.sweep import runner, trials  # pylint: disable=g-import-not-at-top

  definition, trial_list, base_configs = _plan(config, args, source)
  write = trials.check_workdir(workdir, definition, trial_list)
  scope = _scope(trial_list, args.groups)
  _check_configs(base_configs, scope)
  if args.dry_run and not args.submit:
    raise trials.SweepError('--dry_run goes with --submit slurm|tpu.')
  if write and not args.dry_run and jax.process_index() == 0:
    trials.write_sweep_json(workdir, definition, trial_list)
  if args.submit:
    groups = list(trials.by_group(runner.pending(scope, workdir)))
    if not groups:
      print(f'sweep: every trial in {workdir} has a result; nothing to submit.', flush=True)
      return None
    submit = importlib.import_module('vit_jax_stems.sweep.submit')
    return submit.submit(
      args.submit,
      submit.job_argv(argv),
      groups,
      workdir,
      dry_run=args.dry_run,
      **submit.parse_options(args.submit_option),
    )
  try:
    return runner.run(scope, base_configs, workdir, execution=args.execution)
  except runner.SweepStopped as e:
    print(f'sweep stopped: {e}; rerun the same command to resume.', flush=True)
    return None


def _plan(config, args, source):
  """(definition, trial list, base configs) of the arguments; SweepError for bad ones."""
  from vit_jax_stems import models  # pylint: disable=g-import-not-at-top
  from vit_jax_stems.sweep import space, trials  # pylint: disable=g-import-not-at-top

  if args.trials is None or args.trials < 1:
    raise trials.SweepError('--trials N (N >= 1) is required: trials per model and optimizer.')
  if args.group_size < 1:
    raise trials.SweepError(f'--group_size={args.group_size}: must be >= 1.')
  if args.sweep_seed < 0:
    raise trials.SweepError(f'--sweep_seed={args.sweep_seed}: must be >= 0.')
  for name in args.models or []:
    if name not in models.list_models():
      raise trials.SweepError(
        f'--models: no model {name!r} (python -m vit_jax_stems.complexity all).'
      )
  epochs = [_positive_float(e) for e in args.epochs] if args.epochs else None
  base_configs = _base_configs(config, args.optimizers, source)
  spaces = {
    name: space.parse(args.space, c) if args.space else space.default_space(c)
    for name, c in base_configs.items()
  }
  trial_list = trials.make_trials(
    base_configs=base_configs,
    models=args.models,
    epochs=epochs,
    n_trials=args.trials,
    spaces=spaces,
    sweep_seed=args.sweep_seed,
    group_size=args.group_size,
  )
  definition = {
    'config': source.argument,
    'config_overrides': source.overrides,
    'space': args.space,
    'spaces': {name: space.describe(s) for name, s in spaces.items()},
    'models': args.models,
    'optimizers': args.optimizers,
    'epochs': epochs,
    'group_size': args.group_size,
    'sweep_seed': args.sweep_seed,
    'trials': args.trials,
  }
  return definition, trial_list, base_configs


def _positive_float(text):
  from vit_jax_stems.sweep import trials  # pylint: disable=g-import-not-at-top

  try:
    value = float(text)
  except ValueError:
    value = -1.0
  if not value > 0:
    raise trials.SweepError(f'--epochs: {text!r} is not a number of epochs > 0.')
  return value


def _base_configs(config, optimizers, source):
  """{optimizer: config}: the config as given, or the config file once per optimizer with the
  option optimizer=NAME and the same --config overrides."""
  from vit_jax_stems import command_line  # pylint: disable=g-import-not-at-top
  from vit_jax_stems.sweep import trials  # pylint: disable=g-import-not-at-top
  from vit_jax_stems.train import durations  # pylint: disable=g-import-not-at-top

  if not optimizers:
    return {config.optimizer.name: config}
  configs = {}
  for name in optimizers:
    if name not in OPTIMIZERS:
      raise trials.SweepError(f'--optimizers: {name!r} is not one of {", ".join(OPTIMIZERS)}.')
    argument = with_option(source.argument, 'optimizer', name)
    try:
      c = source.load(argument)
    except ValueError as e:
      why = command_line.without_config_traceback(str(e)).strip().splitlines()[-1]
      raise trials.SweepError(
        f'--optimizers {name}: --config={argument}: {why.removeprefix("ValueError: ")}'
      ) from None
    c.update_from_flattened_dict(source.overrides)
    durations.prefer_command_line(c, [f'--config.{path}' for path in source.overrides])
    if c.optimizer.name != name:
      raise trials.SweepError(
        f'--optimizers {name}: --config={argument} trains config.optimizer.name='
        f'{c.optimizer.name} (a --config.optimizer.name override applies to every optimizer).'
      )
    configs[name] = c
  return configs


def with_option(config_argument, name, value):
  """'configs/vitc.py:demo' -> 'configs/vitc.py:demo,optimizer=sgd' (an earlier value replaced)."""
  path, _, options = config_argument.partition(':')
  kept = [o for o in options.split(',') if o.strip() and o.split('=')[0].strip() != name]
  return f'{path}:{",".join([*kept, f"{name}={value}"])}'


def _scope(trial_list, groups):
  """The trials of `groups` (all when None); SweepError naming an unknown group."""
  from vit_jax_stems import overrides  # pylint: disable=g-import-not-at-top
  from vit_jax_stems.sweep import trials  # pylint: disable=g-import-not-at-top

  if not groups:
    return trial_list
  known = trials.by_group(trial_list)
  for group in groups:
    if group not in known:
      raise trials.SweepError(
        f'--groups: this sweep has no group {group!r}.{overrides.did_you_mean(group, known)} '
        f'It has {len(known)}: {", ".join(list(known)[:4])}{", ..." if len(known) > 4 else ""}.'
      )
  return [t for t in trial_list if t['group'] in groups]


def _check_configs(base_configs, trial_list):
  """The trainer's config checks for one trial of every (model, optimizer, epochs)."""
  from vit_jax_stems.sweep import trials  # pylint: disable=g-import-not-at-top
  from vit_jax_stems.train import trainer  # pylint: disable=g-import-not-at-top

  seen = set()
  for trial in trial_list:
    key = (trial['model'], trial['optimizer'], trial['epochs'])
    if key not in seen:
      seen.add(key)
      trainer.check_config(trials.trial_config(base_configs[trial['optimizer']], trial))
