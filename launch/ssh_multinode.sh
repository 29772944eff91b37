#!/usr/bin/env bash
# Multi-node GPU training of vit_jax_stems over plain ssh: one process per host
# (each process drives all GPUs of its host). For clusters without SLURM.
#
#   launch/ssh_multinode.sh start --hosts hosts.txt --workdir /shared/runs/vitc4gf \
#     --data-dir /shared/tensorflow_datasets [-- extra main.py flags]
#   launch/ssh_multinode.sh stop --hosts hosts.txt
#
# hosts.txt: one host per line (as `ssh` and the other hosts reach it; '#'
# starts a comment). The first host runs process 0 and the coordinator. Each
# host gets JAX_COORDINATOR_ADDRESS=<first host>:<port>, JAX_NUM_PROCESSES=<hosts>
# and JAX_PROCESS_ID=<line index> (the contract in launch/README.md), and must
# already hold the code (same path relative to ~ everywhere) and its venv.
# Logs: ~/vit_logs/main.log on each host. `--dry-run` prints the ssh commands.
set -euo pipefail
if ((BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] < 404)); then
  echo "ssh_multinode.sh: needs bash >= 4.4, this is $BASH_VERSION" >&2
  exit 2
fi

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=launch/remote_process.sh
source "$SCRIPT_DIR/remote_process.sh"

usage() {
  cat <<'EOF'
Usage: launch/ssh_multinode.sh start|stop --hosts FILE [flags] [-- extra main.py flags]

  --hosts FILE        one host per line; the first is the coordinator (required)
  --port N            coordinator port (default 12355)
  --workdir DIR       start: shared dir or gs:// path every host writes (required)
  --data-dir DIR      start: TFDS data dir every host reads (required)
  --config SPEC       start: (default configs/vitc.py:size=4gf)
  --mode train|eval   start: (default train)
  --remote-dir DIR    code dir on each host, relative to ~ (default vit_jax_stems)
  --python PATH       python on each host, relative to ~ (default vit_jax_stems/.venv/bin/python)
  --dry-run           print the ssh commands, run nothing
  -h, --help          this help
EOF
}

die() {
  echo "ssh_multinode.sh: $*" >&2
  exit 2
}

SUBCOMMAND=''
HOSTS_FILE=''
PORT=12355
WORKDIR=''
DATA_DIR=''
CONFIG=configs/vitc.py:size=4gf
MODE=train
REMOTE_DIR=vit_jax_stems
PYTHON=''
DRY_RUN=0
EXTRA_ARGS=()

while (($#)); do
  word=$1
  case "$word" in
    --) shift; EXTRA_ARGS=("$@"); break ;;
    -h | --help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --hosts | --hosts=*) take_value --hosts "$@"; HOSTS_FILE=$FLAG_VALUE; shift "$FLAG_SHIFT" ;;
    --port | --port=*) take_value --port "$@"; PORT=$FLAG_VALUE; shift "$FLAG_SHIFT" ;;
    --workdir | --workdir=*) take_value --workdir "$@"; WORKDIR=$FLAG_VALUE; shift "$FLAG_SHIFT" ;;
    --data-dir | --data-dir=*) take_value --data-dir "$@"; DATA_DIR=$FLAG_VALUE; shift "$FLAG_SHIFT" ;;
    --config | --config=*) take_value --config "$@"; CONFIG=$FLAG_VALUE; shift "$FLAG_SHIFT" ;;
    --mode | --mode=*) take_value --mode "$@"; MODE=$FLAG_VALUE; shift "$FLAG_SHIFT" ;;
    --remote-dir | --remote-dir=*) take_value --remote-dir "$@"; REMOTE_DIR=$FLAG_VALUE; shift "$FLAG_SHIFT" ;;
    --python | --python=*) take_value --python "$@"; PYTHON=$FLAG_VALUE; shift "$FLAG_SHIFT" ;;
    -*) die "unknown flag '$word' (see 'launch/ssh_multinode.sh --help'; flags for main.py go after '--')" ;;
    *)
      [[ -z "$SUBCOMMAND" ]] || die "unexpected argument '$word' after subcommand '$SUBCOMMAND' (flags for main.py go after '--')"
      SUBCOMMAND=$word
      shift
      ;;
  esac
done
export DRY_RUN

case "$SUBCOMMAND" in
  start | stop) ;;
  '') usage >&2; die "missing subcommand (start or stop)" ;;
  *) die "unknown subcommand '$SUBCOMMAND' (start or stop)" ;;
esac
[[ -n "$HOSTS_FILE" ]] || die "--hosts FILE is required"
[[ -f "$HOSTS_FILE" ]] || die "hosts file '$HOSTS_FILE' does not exist"
[[ "$PORT" =~ ^[0-9]+$ ]] || die "--port must be a number, got '$PORT'"
PYTHON=${PYTHON:-$REMOTE_DIR/.venv/bin/python}
if ((${#EXTRA_ARGS[@]})) && [[ "$SUBCOMMAND" != start ]]; then
  die "arguments after '--' go to main.py and are only allowed with 'start'"
fi

HOSTS=()
while IFS= read -r line || [[ -n "$line" ]]; do
  line=${line%%#*}
  line=${line//[[:space:]]/}
  [[ -z "$line" ]] || HOSTS+=("$line")
done <"$HOSTS_FILE"
((${#HOSTS[@]})) || die "hosts file '$HOSTS_FILE' lists no host"
for host in "${HOSTS[@]}"; do
  [[ "$host" =~ ^[A-Za-z0-9_.@-]+$ && "$host" != -* ]] || die "'$host' in $HOSTS_FILE is not a host name"
done

SSH=(ssh -o BatchMode=yes)
LOG_DIR=vit_logs

if [[ "$SUBCOMMAND" == start ]]; then
  [[ -n "$WORKDIR" ]] || die "--workdir is required for 'start'"
  [[ -n "$DATA_DIR" ]] || die "--data-dir is required for 'start'"
  [[ "$MODE" == train || "$MODE" == eval ]] || die "--mode must be train or eval, got '$MODE'"
  # Remote paths are checked before anything starts on any host.
  remote_home_path "$REMOTE_DIR" >/dev/null || die "bad --remote-dir"
  remote_home_path "$PYTHON" >/dev/null || die "bad --python"
  # The coordinator address as the other hosts reach host 0 (user@ stripped).
  coordinator="${HOSTS[0]#*@}:$PORT"
  for i in "${!HOSTS[@]}"; do
    env_prefix=$(shell_join "JAX_COORDINATOR_ADDRESS=$coordinator" "JAX_NUM_PROCESSES=${#HOSTS[@]}" "JAX_PROCESS_ID=$i")
    line=$(start_snippet "$REMOTE_DIR" "$PYTHON" "$LOG_DIR" "$env_prefix" \
      main.py --config="$CONFIG" --workdir="$WORKDIR" --config.data.data_dir="$DATA_DIR" --mode="$MODE" \
      "${EXTRA_ARGS[@]}")
    run_cmd "${SSH[@]}" "${HOSTS[$i]}" "$line"
  done
else
  line=$(stop_snippet "$LOG_DIR")
  for host in "${HOSTS[@]}"; do
    run_cmd "${SSH[@]}" "$host" "$line"
  done
fi
