"""Multi-host start-up: `jax.distributed.initialize` as launch/README.md's contract asks, with a
bounded time to notice a dead process.

Launch contract (launch/README.md):
- Cloud TPU VM: `--distributed` and no variable: plain `initialize()`, JAX reads the topology
  from the TPU metadata (likewise SLURM / Open MPI auto-detection).
- GPU (SLURM, ssh): JAX_COORDINATOR_ADDRESS=host:port, JAX_NUM_PROCESSES, JAX_PROCESS_ID. JAX
  reads the address itself but not the other two, so they are passed here. Command-line
  flags (--coordinator_address, --num_processes, --process_id) win over the variables.

Failure detection is JAX's own, so no watchdog of ours: process 0 runs the coordination
service and every process sends it heartbeats from a background thread (a long step or compile
does not count as silence). A process silent for `heartbeat_timeout_s` (H) is declared dead and
the service tells the others; their JAX client then aborts its own process, even one blocked
in a collective, with "Terminating process because the JAX distributed service detected fatal
errors. This most likely indicates that another task died" (SIGABRT). If process 0 dies, the
others lose the service's socket and abort the same way at once. Bound: a survivor stops at
most about H + 2 s after the death. Measured on CPU/gloo with H = 10 (tests/multihost): 6-12 s
after `kill -9` of process 1 (gloo fails the collective at once with "Connection closed by
peer", then the exit waits for the service's verdict); 1-2 s after `kill -9` of process 0.
A process that hangs while alive keeps sending heartbeats and is not detected.
The step in flight is lost; rerunning the same command resumes from the last checkpoint.

JAX's default heartbeat timeout is 100 s (main.py's default too); keep it generous on big pods
(a host briefly unreachable or starved of CPU should not kill a healthy job), lower it to fail
fast on small ones.
"""

import os

from absl import logging

ADDRESS_VAR = 'JAX_COORDINATOR_ADDRESS'
NUM_PROCESSES_VAR = 'JAX_NUM_PROCESSES'
PROCESS_ID_VAR = 'JAX_PROCESS_ID'

# jax.distributed.initialize defaults in jax 0.10.2 (jax/_src/distributed.py).
DEFAULT_HEARTBEAT_TIMEOUT_S = 100
DEFAULT_INIT_TIMEOUT_S = 300
DEFAULT_SHUTDOWN_TIMEOUT_S = 300


def _env_int(environ, name):
  value = environ.get(name)
  if value is None or value == '':
    return None
  try:
    return int(value)
  except ValueError:
    raise ValueError(
      f'{name}={value!r} must be an integer (launch/README.md, launch contract).'
    ) from None


def initialize_kwargs(
  environ,
  *,
  distributed=False,
  coordinator_address=None,
  num_processes=None,
  process_id=None,
  heartbeat_timeout_s=DEFAULT_HEARTBEAT_TIMEOUT_S,
  init_timeout_s=DEFAULT_INIT_TIMEOUT_S,
  shutdown_timeout_s=DEFAULT_SHUTDOWN_TIMEOUT_S,
):
  """Keyword arguments for jax.distributed.initialize, or None for a single-process run.

  Multi-host when `distributed` (--distributed), a coordinator address flag or
  JAX_COORDINATOR_ADDRESS is given. Values left None are auto-detected by JAX (TPU, SLURM).
  Raises ValueError naming the flag or variable to fix, before anything starts.
  """
  address = coordinator_address or environ.get(ADDRESS_VAR) or None
  if num_processes is None:
    num_processes = _env_int(environ, NUM_PROCESSES_VAR)
  if process_id is None:
    process_id = _env_int(environ, PROCESS_ID_VAR)
  if not (distributed or address):
    return None
  if num_processes is not None and num_processes < 1:
    raise ValueError(f'--num_processes / {NUM_PROCESSES_VAR} must be >= 1, got {num_processes}.')
  if process_id is not None and num_processes is not None and not (0 <= process_id < num_processes):
    raise ValueError(
      f'--process_id / {PROCESS_ID_VAR}={process_id} must be in '
      f'[0, {num_processes}) (--num_processes / {NUM_PROCESSES_VAR}).'
    )
  for name, value in (
    ('--distributed_heartbeat_timeout_s', heartbeat_timeout_s),
    ('--distributed_init_timeout_s', init_timeout_s),
    ('--distributed_shutdown_timeout_s', shutdown_timeout_s),
  ):
    if value < 1:
      raise ValueError(f'{name} must be >= 1 second, got {value}.')
  return dict(
    coordinator_address=address,
    num_processes=num_processes,
    process_id=process_id,
    initialization_timeout=int(init_timeout_s),
    heartbeat_timeout_seconds=int(heartbeat_timeout_s),
    shutdown_timeout_seconds=int(shutdown_timeout_s),
  )


def maybe_initialize(environ=None, **flags):
  """Calls jax.distributed.initialize when `initialize_kwargs` says multi-host; returns the
  kwargs used (None: single process, nothing done)."""
  kwargs = initialize_kwargs(os.environ if environ is None else environ, **flags)
  if kwargs is None:
    return None
  import jax  # pylint: disable=g-import-not-at-top

  jax.distributed.initialize(**kwargs)
  logging.info(
    'jax.distributed: process %d of %d (coordinator %s, heartbeat timeout %d s)',
    jax.process_index(),
    jax.process_count(),
    kwargs['coordinator_address'] or 'auto-detected',
    kwargs['heartbeat_timeout_seconds'],
  )
  return kwargs
