"""Runs a sweep on an existing scheduler: one job per trial group, through the launch scripts.

Each job runs `python -m vit_jax_stems.sweep <the sweep's arguments> --groups=<group>` as one
process on one host (every GPU of a node, or a single-host TPU VM), without jax.distributed.
Jobs share nothing but the sweep's workdir: each trial writes its own
`DIR/trials/<trial_id>/result.json` and `DIR/trials.jsonl` is gathered from those, so groups
on different machines never write the same file. A job that is preempted and started again
resumes its group (finished trials are kept, unfinished ones resume from their checkpoints).

- `slurm`: ONE job array over launch/slurm.sbatch. Array task i runs group i of the list in
  the job's environment (`VIT_SWEEP_GROUPS=g0:g1:...`); `--requeue` in the template restarts
  a preempted task with the same index. Nothing is written before submission, so a later
  submission (a subset of groups, say) cannot change what a running array reads.
- `tpu`: one Cloud TPU queued resource per group, over `launch/tpu.sh queue`: its VM, once
  provisioned, fetches this checkout from `DIR/submit/<name>.tgz` and starts the group's
  command itself (a startup script), so nothing here waits for capacity. After a preemption,
  `launch/tpu.sh delete --queued --name <name>` and the group's same command queue it again.

The commands and their options: launch/README.md, "Sweeps on a cluster".
"""

import hashlib
import os
import pathlib
import re
import subprocess

from vit_jax_stems.train import config_checks

KINDS = ('slurm', 'tpu')
SWEEP_MODULE = 'vit_jax_stems.sweep'
SLURM_SCRIPT = 'launch/slurm.sbatch'
TPU_SCRIPT = 'launch/tpu.sh'
# Flags of the sweep command that choose what this invocation does, not what a job runs.
# main.py's `--mode sweep` goes too: every job runs the module form, `python -m vit_jax_stems.sweep`.
_VALUE_FLAGS = ('submit', 'groups', 'mode', 'submit_option')
# Group ids travel in VIT_SWEEP_GROUPS (':'-separated, inside sbatch's ','-separated
# --export) and in resource names, so they keep to these characters.
_GROUP_ID = re.compile(r'[A-Za-z0-9][A-Za-z0-9._-]*')
# sbatch options that make a job one process on one node, or that carry the group list.
_SLURM_FIXED = ('array', 'export', 'nodes', 'ntasks', 'ntasks_per_node')
_TPU_OPTIONS = (
  'zone',
  'project',
  'accelerator_type',
  'runtime_version',
  'spot',
  'valid_until_duration',
  'remote_dir',
  'venv',
  'python',
  'name_prefix',
)
# Cloud TPU node ids: a lowercase letter, then lowercase letters, digits and '-', at most 63
# characters (RFC 1035 labels, as Compute Engine names).
_TPU_NAME_MAX = 63


class SubmitError(config_checks.ConfigError):
  """A submission that cannot work (the message says what to change), or a scheduler command
  that failed (the message says what was submitted before it)."""


def submit(kind, sweep_argv, groups, workdir, *, dry_run, **scheduler_options):
  """The scheduler commands that run `groups` of the sweep in `workdir`, one argv per command,
  executed in order unless `dry_run`. Run it from the root of the checkout the jobs use.

  `sweep_argv`: the sweep command's own arguments, without --submit, --dry_run and --groups
  (`job_argv` removes them). `scheduler_options`: slurm: any sbatch option, `partition='gpu'`
  for `--partition=gpu`, True for a bare flag, plus `max_parallel=N` (`--array=...%N`);
  tpu: the flags of launch/tpu.sh in `_TPU_OPTIONS` (zone, project, accelerator_type,
  runtime_version from TPU_ZONE, TPU_PROJECT, TPU_ACCELERATOR_TYPE, TPU_RUNTIME_VERSION when
  not given), plus `name_prefix` (default: the workdir's last component).
  """
  if kind not in KINDS:
    raise SubmitError(f'--submit must be one of {", ".join(KINDS)}, got {kind!r}')
  groups = list(groups)
  _check_groups(groups)
  _check_sweep_argv(sweep_argv)
  if kind == 'slurm':
    commands = [slurm_command(sweep_argv, groups, workdir, **scheduler_options)]
  else:
    commands = tpu_commands(sweep_argv, groups, workdir, **scheduler_options)
  script = SLURM_SCRIPT if kind == 'slurm' else TPU_SCRIPT
  if not pathlib.Path(script).is_file():
    raise SubmitError(
      f'run --submit {kind} from the root of the checkout the jobs use ({script} is not in '
      f'{os.getcwd()})'
    )
  if not dry_run:
    _execute(commands, groups if kind == 'tpu' else None)
  return commands


def job_argv(argv):
  """`argv` without the flags that choose what this invocation does (--submit X, --dry_run,
  --groups X, --submit_option X, main.py's --mode X, in any absl spelling), so that it is what every job runs."""
  out, skip_value = [], False
  for i, arg in enumerate(argv):
    if skip_value:
      skip_value = False
      continue
    if arg == '--':
      return out + list(argv[i:])
    name = arg.lstrip('-').split('=', 1)[0] if arg.startswith('-') else None
    if name in _VALUE_FLAGS:
      skip_value = '=' not in arg
    elif name not in ('dry_run', 'nodry_run'):
      out.append(arg)
  return out


def parse_options(items):
  """`['partition=gpu', 'time=04:00:00', 'spot']` -> `{'partition': 'gpu', 'time': '04:00:00',
  'spot': True}`: the scheduler options of `submit` as a command line gives them
  (`--submit_option partition=gpu`); option names take '_' or '-'."""
  options = {}
  for item in items:
    key, sep, value = item.partition('=')
    key = key.strip().replace('-', '_')
    if not re.fullmatch(r'[a-z][a-z0-9_]*', key):
      raise SubmitError(f'a --submit_option is key=value or a bare key, got {item!r}')
    options[key] = value if sep else True
  return options


def slurm_command(sweep_argv, groups, workdir, *, max_parallel=None, **sbatch_options):
  """`sbatch --array=0-(G-1) ... launch/slurm.sbatch <sweep_argv>`: array task i runs groups[i]."""
  fixed = sorted(set(sbatch_options) & set(_SLURM_FIXED))
  if fixed:
    raise SubmitError(
      f'--submit slurm sets {", ".join(fixed)} itself: each array task runs one trial group '
      'as one process on one node'
    )
  array = f'0-{len(groups) - 1}'
  if max_parallel is not None:
    if not str(max_parallel).isdigit() or int(max_parallel) < 1:
      raise SubmitError(
        f'max_parallel is how many array tasks may run at once, got {max_parallel!r}'
      )
    array += f'%{int(max_parallel)}'
  options = {
    'job_name': f'sweep-{_slug(_last_component(workdir)) or "vit"}',
    # %A_%a: array job id and task index; appended to, so a requeued task keeps its log.
    'output': 'slurm-%x-%A_%a.out',
    'open_mode': 'append',
    **sbatch_options,
    'nodes': 1,
    'ntasks_per_node': 1,
  }
  return [
    'sbatch',
    f'--array={array}',
    *_flags(options),
    f'--export=ALL,VIT_SWEEP_GROUPS={":".join(groups)}',
    SLURM_SCRIPT,
    *sweep_argv,
  ]


def tpu_commands(sweep_argv, groups, workdir, **options):
  """One `launch/tpu.sh queue ... --module vit_jax_stems.sweep -- <sweep_argv> --groups=<g>`
  per group (its --dry-run prints the gcloud commands)."""
  unknown = sorted(set(options) - set(_TPU_OPTIONS))
  if unknown:
    raise SubmitError(
      f'unknown --submit tpu option {", ".join(unknown)} (known: {", ".join(_TPU_OPTIONS)})'
    )
  if not str(workdir).startswith('gs://'):
    raise SubmitError(
      f'--submit tpu needs a gs:// --workdir (results and checkpoints must outlive a '
      f'preempted VM), got {workdir!r}'
    )
  env = os.environ
  zone = options.pop('zone', None) or env.get('TPU_ZONE')
  if not zone:
    raise SubmitError('--submit tpu needs a zone: set TPU_ZONE (e.g. us-central2-b)')
  accelerator_type = (
    options.pop('accelerator_type', None) or env.get('TPU_ACCELERATOR_TYPE') or 'v4-8'
  )
  hosts_hint = re.search(r'-(\d+)$', accelerator_type)
  if hosts_hint and int(hosts_hint.group(1)) > 8:
    raise SubmitError(
      f'a sweep group runs as one process per TPU VM: use a single-host slice such as v4-8 '
      f'or v5litepod-8 (TPU_ACCELERATOR_TYPE), got {accelerator_type}'
    )
  flags = {
    'zone': zone,
    'project': options.pop('project', None) or env.get('TPU_PROJECT'),
    'accelerator_type': accelerator_type,
    'runtime_version': options.pop('runtime_version', None) or env.get('TPU_RUNTIME_VERSION'),
  }
  prefix = options.pop('name_prefix', None)
  flags.update(options)  # spot, valid_until_duration, remote_dir, venv, python
  names = [tpu_name(workdir, group, prefix) for group in groups]
  if len(set(names)) < len(names):
    raise SubmitError(f'two trial groups map to one TPU name: {names}')
  base = str(workdir).rstrip('/')
  return [
    [
      TPU_SCRIPT,
      'queue',
      f'--name={name}',
      *_flags(flags),
      f'--code-url={base}/submit/{name}.tgz',
      f'--module={SWEEP_MODULE}',
      '--',
      *sweep_argv,
      f'--groups={group}',
    ]
    for name, group in zip(names, groups)
  ]


def tpu_name(workdir, group, prefix=None):
  """The queued resource (and TPU VM) name of one group: `<prefix>-<group>` as a valid Cloud
  TPU id, the prefix defaulting to the workdir's last component; too long a name is cut and
  ends in a hash of (workdir, group), so it stays unique."""
  name = f'{_slug(prefix or _last_component(workdir))}-{_slug(group)}'.strip('-')
  if not name[:1].isalpha():
    name = f'sweep-{name}'
  if len(name) > _TPU_NAME_MAX:
    digest = hashlib.sha1(f'{workdir}\0{group}'.encode()).hexdigest()[:8]
    name = f'{name[: _TPU_NAME_MAX - 9].rstrip("-")}-{digest}'
  return name


def _execute(commands, groups):
  for i, command in enumerate(commands):
    returncode = subprocess.run(command, check=False).returncode
    if returncode != 0:
      done = f'; queued before it: {", ".join(groups[:i]) or "none"}' if groups else ''
      raise SubmitError(f'{command[0]} failed (exit {returncode}){done}')


def _check_groups(groups):
  if not groups:
    raise SubmitError('no trial groups to submit (check --groups)')
  bad = [g for g in groups if not isinstance(g, str) or not _GROUP_ID.fullmatch(g)]
  if bad:
    raise SubmitError(f'trial group ids may hold only letters, digits, ".", "_", "-": {bad}')
  if len(set(groups)) < len(groups):
    raise SubmitError(f'a trial group is listed twice: {groups}')


def _check_sweep_argv(sweep_argv):
  if len(job_argv(sweep_argv)) != len(sweep_argv):
    raise SubmitError(
      f'the job arguments {list(sweep_argv)} must not hold --submit, --dry_run or --groups '
      '(submit.job_argv drops them)'
    )


def _flags(options):
  """`{'gpus_per_node': 8, 'spot': True, 'x': None}` -> `['--gpus-per-node=8', '--spot']`."""
  flags = []
  for key, value in options.items():
    flag = '--' + key.replace('_', '-')
    if value is True:
      flags.append(flag)
    elif value is not None and value is not False:
      flags.append(f'{flag}={value}')
  return flags


def _slug(text):
  return re.sub(r'[^a-z0-9]+', '-', str(text).lower()).strip('-')


def _last_component(workdir):
  return str(workdir).rstrip('/').rsplit('/', 1)[-1]
