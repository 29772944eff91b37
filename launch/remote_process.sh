# shellcheck shell=bash
# Shared by launch/tpu.sh and launch/ssh_multinode.sh (sourced, not run).
#
# Both scripts hand a one-line shell command to a remote machine (through
# `gcloud compute tpus tpu-vm ssh --command=...` or plain `ssh`). These
# functions build that line so that every user-supplied value is quoted exactly
# once, and they print or run a local argv. Nothing here evaluates its input.

# Takes the value of a flag given as `--flag=value` or `--flag value`.
# Sets FLAG_VALUE and FLAG_SHIFT (how many words were used); calls the sourcing
# script's `die` when the value is missing.
# shellcheck disable=SC2034  # FLAG_VALUE and FLAG_SHIFT are read by the sourcing script.
take_value() {
  local flag=$1 word=$2
  if [[ "$word" == *=* ]]; then
    FLAG_VALUE=${word#*=}
    FLAG_SHIFT=1
  elif (($# >= 3)); then
    FLAG_VALUE=$3
    FLAG_SHIFT=2
  else
    die "$flag needs a value"
  fi
}

# Quotes one word for a POSIX shell: left bare when it only holds safe
# characters, otherwise wrapped in single quotes ('\'' for a quote inside).
# The same rule as Python's shlex.quote, so dry-run lines read back with
# shlex.split.
shell_quote() {
  local word=$1
  if [[ -n "$word" && "$word" =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
    printf '%s' "$word"
  else
    printf "'%s'" "${word//\'/\'\\\'\'}"
  fi
}

# Joins words into one shell line, each word quoted.
shell_join() {
  local out='' word
  for word in "$@"; do
    out+="${out:+ }$(shell_quote "$word")"
  done
  printf '%s' "$out"
}

# Prints the argv (one line, quoted) and runs it unless DRY_RUN=1. In a dry run
# the line goes to stdout and nothing runs; otherwise it goes to stderr with a
# '+ ' prefix so that the command's own output stays clean.
run_cmd() {
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    printf '%s\n' "$(shell_join "$@")"
  else
    printf '+ %s\n' "$(shell_join "$@")" >&2
    "$@"
  fi
}

# A remote path relative to the remote home directory, as a shell word:
# "$HOME"/<quoted path>. Relative paths keep one spelling valid on every worker
# whatever the login user is called.
remote_home_path() {
  local path=$1
  if [[ -z "$path" || "$path" == /* || "$path" == ~* ]]; then
    echo "remote path '$path' must be relative to the remote home directory (e.g. vit_jax_stems)" >&2
    return 2
  fi
  # shellcheck disable=SC2016  # $HOME is for the remote shell to expand.
  printf '"$HOME"/%s' "$(shell_quote "$path")"
}

# The remote line that starts one detached python program (main.py, or -m MODULE).
#   $1 remote repo dir, $2 remote python (both relative to home), $3 log dir
#   (relative to home), $4 env assignments as one already-quoted string ('' for
#   none), then python's arguments (main.py and its flags).
# The process runs under setsid so it survives the ssh session and owns a
# process group, whose id goes to <log dir>/main.pid; stop_snippet kills that
# group. A second start while the first still runs is refused.
start_snippet() {
  local repo python logs env_prefix
  repo=$(remote_home_path "$1") || return 2
  python=$(remote_home_path "$2") || return 2
  logs=$(remote_home_path "$3") || return 2
  env_prefix=$4
  shift 4
  local args
  args=$(shell_join "$@")
  printf '%s' "mkdir -p $logs && if [ -f $logs/main.pid ] && kill -0 \"\$(cat $logs/main.pid)\" 2>/dev/null; then echo \"main.py already runs on \$(hostname) (pid \$(cat $logs/main.pid)); stop it first\" >&2; exit 1; fi && cd $repo && { ${env_prefix:+$env_prefix }setsid nohup $python $args >>$logs/main.log 2>&1 </dev/null & echo \$! >$logs/main.pid; }"
}

# The remote line that stops the process group started by start_snippet: TERM,
# up to 30 s grace (the trainer may be writing a checkpoint), then KILL. A
# zombie (exited, not yet reaped by init) counts as stopped.
stop_snippet() {
  local logs
  logs=$(remote_home_path "$1") || return 2
  printf '%s' "if [ -f $logs/main.pid ]; then pid=\$(cat $logs/main.pid); kill -TERM -- \"-\$pid\" 2>/dev/null || true; for _ in \$(seq 30); do kill -0 \"\$pid\" 2>/dev/null && ! grep -qs '^State:.*Z' /proc/\"\$pid\"/status || break; sleep 1; done; kill -KILL -- \"-\$pid\" 2>/dev/null || true; rm -f $logs/main.pid; echo \"stopped main.py (pid \$pid) on \$(hostname)\"; else echo \"no main.py started by the launch scripts on \$(hostname)\"; fi"
}
