#!/usr/bin/env bash
# Cloud TPU VM launcher for vit_jax_stems: create, set up, sync, run, watch,
# stop and delete one TPU VM (single host or pod slice) with gcloud, or queue one that runs
# by itself (queue: a queued resource with a startup script).
# Walkthrough: launch/README.md. `--dry-run` prints each command, one per line,
# exactly as it would run, and runs nothing.
set -euo pipefail
if ((BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] < 404)); then
  echo "tpu.sh: needs bash >= 4.4 (macOS: brew install bash), this is $BASH_VERSION" >&2
  exit 2
fi

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source=launch/remote_process.sh
source "$SCRIPT_DIR/remote_process.sh"

usage() {
  cat <<'EOF'
Usage: launch/tpu.sh SUBCOMMAND [flags] [-- extra main.py flags, or --module's flags]

Subcommands (in the order of a first run):
  create   create the TPU VM (on demand; --spot; --queued for a queued resource)
  sync     copy this checkout (without .git, .venv, workdirs) to every worker
  setup    on every worker: python venv, pip install "jax[tpu]==<pin>" -r requirements.txt
  run      start main.py on every worker, detached, log in ~/vit_logs/main.log
  logs     follow the log of one worker (--worker, default 0) or all
  stop     stop main.py on every worker (TERM, 30 s grace, KILL)
  status   describe the TPU VM (or the queued resource with --queued)
  delete   delete the TPU VM (or the queued resource and its VM with --queued)
  queue    create a queued resource whose VM, once provisioned, does sync, setup and run by
           itself (a startup script, as root, at every boot); needs --code-url. After a
           preemption: delete --queued, then the same queue command again (the run resumes)

Flags (environment variable in brackets; flags win):
  --name NAME               TPU VM name [TPU_NAME] (required)
  --zone ZONE               e.g. us-central2-b (v4), europe-west4-a (v3) [TPU_ZONE] (required)
  --project PROJECT         [TPU_PROJECT] (default: gcloud's configured project)
  --accelerator-type TYPE   e.g. v3-32, v4-32 [TPU_ACCELERATOR_TYPE] (default v4-32)
  --runtime-version VER     [TPU_RUNTIME_VERSION] (default tpu-ubuntu2204-base)
  --spot                    create: Spot capacity (cheaper, can be preempted)
  --queued                  create/status/delete through a queued resource named NAME
  --valid-until-duration D  create --queued: give up if not provisioned within D (e.g. 6h)
  --workdir gs://...        run: checkpoints and TensorBoard [TPU_WORKDIR] (required)
  --data-dir gs://...       run: TFDS data dir [TPU_DATA_DIR] (required)
  --config SPEC             run: [TPU_CONFIG] (default configs/vitc.py:size=4gf)
  --mode train|eval         run: (default train)
  --module MODULE           run/queue: start `python -m MODULE` with only the flags after `--`
                            instead of main.py and the flags above (e.g. vit_jax_stems.sweep)
  --code-url gs://...tgz    queue: where this checkout is uploaded for the VM to fetch
  --as-root                 logs/stop: the run belongs to root (started by queue)
  --worker N|all            logs: which worker (default 0)
  --remote-dir DIR          code dir on workers, relative to ~ (default vit_jax_stems)
  --venv DIR                venv on workers, relative to ~ (default vit_venv)
  --python EXE              python for the venv, python3.N (default python3.11)
  --dry-run                 print the commands, run nothing (queue still writes the startup
                            script that its create command names, for you to read)
  -h, --help                this help
Everything after `--` goes to main.py (or --module) unchanged (run and queue only).
EOF
}

die() {
  echo "tpu.sh: $*" >&2
  exit 2
}

# ----------------------------------------------------------------- arguments
SUBCOMMAND=''
NAME=${TPU_NAME:-}
ZONE=${TPU_ZONE:-}
PROJECT=${TPU_PROJECT:-}
ACCELERATOR_TYPE=${TPU_ACCELERATOR_TYPE:-v4-32}
RUNTIME_VERSION=${TPU_RUNTIME_VERSION:-tpu-ubuntu2204-base}
WORKDIR=${TPU_WORKDIR:-}
DATA_DIR=${TPU_DATA_DIR:-}
CONFIG=${TPU_CONFIG:-configs/vitc.py:size=4gf}
MODE=train
WORKER=0
REMOTE_DIR=vit_jax_stems
VENV=vit_venv
PYTHON=python3.11
SPOT=0
QUEUED=0
VALID_UNTIL=''
MODULE=''
CODE_URL=''
AS_ROOT=0
DRY_RUN=0
EXTRA_ARGS=()

while (($#)); do
  word=$1
  case "$word" in
    --) shift; EXTRA_ARGS=("$@"); break ;;
    -h | --help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --spot) SPOT=1; shift ;;
    --queued) QUEUED=1; shift ;;
    --as-root) AS_ROOT=1; shift ;;
    --name | --name=*) take_value --name "$@"; NAME=$FLAG_VALUE; shift "$FLAG_SHIFT" ;;
    --zone | --zone=*) take_value --zone "$@"; ZONE=$FLAG_VALUE; shift "$FLAG_SHIFT" ;;
    --project | --project=*) take_value --project "$@"; PROJECT=$FLAG_VALUE; shift "$FLAG_SHIFT" ;;
    --accelerator-type | --accelerator-type=*) take_value --accelerator-type "$@"; ACCELERATOR_TYPE=$FLAG_VALUE; shift "$FLAG_SHIFT" ;;
    --runtime-version | --runtime-version=*) take_value --runtime-version "$@"; RUNTIME_VERSION=$FLAG_VALUE; shift "$FLAG_SHIFT" ;;
    --valid-until-duration | --valid-until-duration=*) take_value --valid-until-duration "$@"; VALID_UNTIL=$FLAG_VALUE; shift "$FLAG_SHIFT" ;;
    --workdir | --workdir=*) take_value --workdir "$@"; WORKDIR=$FLAG_VALUE; shift "$FLAG_SHIFT" ;;
    --data-dir | --data-dir=*) take_value --data-dir "$@"; DATA_DIR=$FLAG_VALUE; shift "$FLAG_SHIFT" ;;
    --config | --config=*) take_value --config "$@"; CONFIG=$FLAG_VALUE; shift "$FLAG_SHIFT" ;;
    --mode | --mode=*) take_value --mode "$@"; MODE=$FLAG_VALUE; shift "$FLAG_SHIFT" ;;
    --module | --module=*) take_value --module "$@"; MODULE=$FLAG_VALUE; shift "$FLAG_SHIFT" ;;
    --code-url | --code-url=*) take_value --code-url "$@"; CODE_URL=$FLAG_VALUE; shift "$FLAG_SHIFT" ;;
    --worker | --worker=*) take_value --worker "$@"; WORKER=$FLAG_VALUE; shift "$FLAG_SHIFT" ;;
    --remote-dir | --remote-dir=*) take_value --remote-dir "$@"; REMOTE_DIR=$FLAG_VALUE; shift "$FLAG_SHIFT" ;;
    --venv | --venv=*) take_value --venv "$@"; VENV=$FLAG_VALUE; shift "$FLAG_SHIFT" ;;
    --python | --python=*) take_value --python "$@"; PYTHON=$FLAG_VALUE; shift "$FLAG_SHIFT" ;;
    -*) die "unknown flag '$word' (see 'launch/tpu.sh --help'; flags for main.py go after '--')" ;;
    *)
      [[ -z "$SUBCOMMAND" ]] || die "unexpected argument '$word' after subcommand '$SUBCOMMAND' (flags for main.py go after '--')"
      SUBCOMMAND=$word
      shift
      ;;
  esac
done
export DRY_RUN

# ---------------------------------------------------------------- validation
case "$SUBCOMMAND" in
  create | setup | sync | run | logs | stop | status | delete | queue) ;;
  '') usage >&2; die "missing subcommand" ;;
  *) die "unknown subcommand '$SUBCOMMAND' (one of: create setup sync run logs stop status delete queue)" ;;
esac
[[ -n "$NAME" ]] || die "--name (or TPU_NAME) is required for '$SUBCOMMAND'"
[[ -n "$ZONE" ]] || die "--zone (or TPU_ZONE) is required for '$SUBCOMMAND'"
if ((${#EXTRA_ARGS[@]})) && [[ "$SUBCOMMAND" != run && "$SUBCOMMAND" != queue ]]; then
  die "arguments after '--' go to main.py and are only allowed with 'run' and 'queue'"
fi
[[ "$PYTHON" =~ ^python3\.[0-9]+$ ]] || die "--python must look like python3.11 (it also names the apt package), got '$PYTHON'"
[[ "$WORKER" == all || "$WORKER" =~ ^[0-9]+$ ]] || die "--worker must be a worker index or 'all', got '$WORKER'"
# Remote paths are checked here, before any command runs.
remote_home_path "$REMOTE_DIR" >/dev/null || die "bad --remote-dir"
remote_home_path "$VENV" >/dev/null || die "bad --venv"
[[ -z "$MODULE" || "$MODULE" =~ ^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$ ]] || die "--module must be a python module name like vit_jax_stems.sweep, got '$MODULE'"

# --project only when set, so that gcloud's configured default applies otherwise.
LOCATION=(--zone="$ZONE")
[[ -z "$PROJECT" ]] || LOCATION+=(--project="$PROJECT")
TPU_VM=(gcloud compute tpus tpu-vm)
QUEUED_RESOURCES=(gcloud compute tpus queued-resources)
LOG_DIR=vit_logs
TARBALL="${TMPDIR:-/tmp}/$NAME-vit_jax_stems.tgz"

# One command on every worker of the slice, in parallel (gcloud's --worker=all).
on_workers() {
  local worker=$1 command=$2
  run_cmd "${TPU_VM[@]}" ssh "$NAME" "${LOCATION[@]}" --worker="$worker" --command="$command"
}

# The same for a run that queue's startup script started: it belongs to root and its files are
# under root's home, so the line runs under `sudo -H` (HOME=/root), as that script sets it.
on_workers_as_owner() {
  local worker=$1 command=$2
  if ((AS_ROOT)); then command="sudo -H bash -c $(shell_quote "$command")"; fi
  on_workers "$worker" "$command"
}

# The jax pin is read from requirements.txt so the TPU install cannot drift
# from the version the project is tested with.
jax_pin() {
  local line version=''
  while IFS= read -r line || [[ -n "$line" ]]; do
    if [[ "$line" =~ ^jax==([^[:space:]#]+) ]]; then
      version=${BASH_REMATCH[1]}
    fi
  done <"$REPO_ROOT/requirements.txt"
  [[ -n "$version" ]] || die "no 'jax==<version>' pin in $REPO_ROOT/requirements.txt"
  printf '%s' "$version"
}

# --------------------------------------------------------------- subcommands
cmd_create() {
  if ((QUEUED)); then
    # The queued resource and the VM it creates share NAME, so every other
    # subcommand addresses the VM by the same name.
    local cmd=("${QUEUED_RESOURCES[@]}" create "$NAME" --node-id="$NAME" "${LOCATION[@]}"
      --accelerator-type="$ACCELERATOR_TYPE" --runtime-version="$RUNTIME_VERSION")
    if ((SPOT)); then cmd+=(--spot); fi
    [[ -z "$VALID_UNTIL" ]] || cmd+=(--valid-until-duration="$VALID_UNTIL")
    run_cmd "${cmd[@]}"
  else
    [[ -z "$VALID_UNTIL" ]] || die "--valid-until-duration only applies with --queued"
    local cmd=("${TPU_VM[@]}" create "$NAME" "${LOCATION[@]}"
      --accelerator-type="$ACCELERATOR_TYPE" --version="$RUNTIME_VERSION")
    if ((SPOT)); then cmd+=(--spot); fi
    run_cmd "${cmd[@]}"
  fi
}

cmd_sync() {
  # A tarball of the checkout, copied to every worker and unpacked into a fresh
  # directory, so files deleted locally disappear remotely too. The venv lives
  # outside the code directory and survives a sync.
  pack_checkout
  run_cmd "${TPU_VM[@]}" scp "$TARBALL" "$NAME:$REMOTE_DIR.tgz" "${LOCATION[@]}" --worker=all
  on_workers all "$(unpack_line)"
}

# Packs this checkout (without .git, .venv, workdirs) into the local tarball TARBALL.
pack_checkout() {
  run_cmd tar -czf "$TARBALL" -C "$REPO_ROOT" --exclude=.git --exclude=.venv --exclude=__pycache__ \
    --exclude=.pytest_cache --exclude=workdirs --exclude='*.egg-info' .
}

# The worker's line that replaces the code dir by the tarball ~/REMOTE_DIR.tgz.
unpack_line() {
  local dir new tgz
  dir=$(remote_home_path "$REMOTE_DIR")
  new=$(remote_home_path "$REMOTE_DIR.new")
  tgz=$(remote_home_path "$REMOTE_DIR.tgz")
  printf '%s' "rm -rf $new && mkdir -p $new && tar -xzf $tgz -C $new && rm -rf $dir && mv $new $dir && rm -f $tgz"
}

cmd_setup() {
  on_workers all "$(setup_line)"
}

setup_line() {
  local venv requirements pip
  venv=$(remote_home_path "$VENV")
  requirements=$(remote_home_path "$REMOTE_DIR/requirements.txt")
  pip="$venv/bin/pip"
  # TPU VM images ship an older python; the project needs >= 3.11 (pyproject).
  printf '%s' "if ! $PYTHON -c 'import ensurepip' 2>/dev/null; then sudo apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q $PYTHON $PYTHON-venv; fi && $PYTHON -m venv $venv && $pip install -q --upgrade pip && $pip install $(shell_quote "jax[tpu]==$(jax_pin)") -r $requirements"
}

# What run and queue start on every worker: main.py with the flags above, or `-m MODULE`
# with only the flags after `--`. Checked before any command runs.
check_run_flags() {
  [[ -z "$MODULE" ]] || return 0
  [[ -n "$WORKDIR" ]] || die "--workdir (or TPU_WORKDIR) is required for '$SUBCOMMAND'"
  [[ -n "$DATA_DIR" ]] || die "--data-dir (or TPU_DATA_DIR) is required for '$SUBCOMMAND'"
  # Every worker writes parts of one checkpoint and reads the same dataset, so
  # both must be shared storage that all workers see.
  [[ "$WORKDIR" == gs://* ]] || die "--workdir must be a gs:// path (all workers write one shared checkpoint), got '$WORKDIR'"
  [[ "$DATA_DIR" == gs://* ]] || die "--data-dir must be a gs:// path (every worker reads it), got '$DATA_DIR'"
  [[ "$MODE" == train || "$MODE" == eval ]] || die "--mode must be train or eval, got '$MODE'"
}

run_line() {
  if [[ -n "$MODULE" ]]; then
    start_snippet "$REMOTE_DIR" "$VENV/bin/python" "$LOG_DIR" '' -m "$MODULE" "${EXTRA_ARGS[@]}"
  else
    # --distributed: main.py then calls jax.distributed.initialize() with no arguments, which
    # on a TPU VM finds the other workers itself (launch/README.md, "Launch contract").
    start_snippet "$REMOTE_DIR" "$VENV/bin/python" "$LOG_DIR" '' \
      main.py --config="$CONFIG" --workdir="$WORKDIR" --config.data.data_dir="$DATA_DIR" --mode="$MODE" \
      --distributed "${EXTRA_ARGS[@]}"
  fi
}

cmd_run() {
  check_run_flags
  on_workers all "$(run_line)"
}

# The queued resource's VM runs sync, setup and run by itself: its startup script (which the
# TPU VM runs as root on every worker at each boot) fetches the checkout from CODE_URL, then
# runs the lines of setup and run. Nothing waits here for capacity, and after a preemption
# the same command queues a new VM whose run resumes from the checkpoints in gs://.
cmd_queue() {
  [[ -n "$CODE_URL" ]] || die "--code-url gs://.../code.tgz is required for 'queue' (the VM fetches this checkout from there)"
  [[ "$CODE_URL" == gs://* ]] || die "--code-url must be a gs:// path (the VM fetches the checkout from there), got '$CODE_URL'"
  check_run_flags
  local script="${TMPDIR:-/tmp}/$NAME-startup.sh"
  # gcloud splits --metadata-from-file at commas.
  [[ "$script" != *,* ]] || die "TMPDIR must not contain a comma (gcloud splits --metadata-from-file there), got '$script'"
  local tgz
  tgz=$(remote_home_path "$REMOTE_DIR.tgz")
  {
    echo '#!/bin/bash'
    echo "# Startup script of the queued resource $NAME, written by launch/tpu.sh queue. The TPU VM"
    echo '# runs it as root on every worker at each boot: fetch the checkout, set up, start the run.'
    echo 'set -euo pipefail'
    echo 'export HOME=/root'
    echo '# Nothing of ours runs this early in a boot: a pid file left by the last boot is stale.'
    echo "rm -f $(remote_home_path "$LOG_DIR/main.pid")"
    echo "gcloud storage cp $(shell_quote "$CODE_URL") $tgz && $(unpack_line)"
    setup_line
    echo
    run_line
    echo
  } >"$script"
  pack_checkout
  run_cmd gcloud storage cp "$TARBALL" "$CODE_URL"
  local cmd=("${QUEUED_RESOURCES[@]}" create "$NAME" --node-id="$NAME" "${LOCATION[@]}"
    --accelerator-type="$ACCELERATOR_TYPE" --runtime-version="$RUNTIME_VERSION")
  if ((SPOT)); then cmd+=(--spot); fi
  [[ -z "$VALID_UNTIL" ]] || cmd+=(--valid-until-duration="$VALID_UNTIL")
  run_cmd "${cmd[@]}" --metadata-from-file=startup-script="$script"
}

cmd_logs() {
  on_workers_as_owner "$WORKER" "tail -n 200 -F $(remote_home_path "$LOG_DIR/main.log")"
}

cmd_stop() {
  on_workers_as_owner all "$(stop_snippet "$LOG_DIR")"
}

cmd_status() {
  if ((QUEUED)); then
    run_cmd "${QUEUED_RESOURCES[@]}" describe "$NAME" "${LOCATION[@]}"
  else
    run_cmd "${TPU_VM[@]}" describe "$NAME" "${LOCATION[@]}"
  fi
}

cmd_delete() {
  # No --quiet: gcloud asks before deleting.
  if ((QUEUED)); then
    # --force also deletes the TPU VM the queued resource created.
    run_cmd "${QUEUED_RESOURCES[@]}" delete "$NAME" "${LOCATION[@]}" --force
  else
    run_cmd "${TPU_VM[@]}" delete "$NAME" "${LOCATION[@]}"
  fi
}

"cmd_$SUBCOMMAND"
