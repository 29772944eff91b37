"""Multi-host start-up: `jax.distributed.initialize` as launch/README.md's contract asks, with a
bounded time to notice a dead process.

Launch contract (launch/README.md):
- Cloud TPU VM: `--distributed` and no variable: plain `initialize()`, JAX reads the topology
  from the TPU metadata (likewise SLURM / Open MPI auto-detection).
- GPU (SLURM, ssh): JAX_COORDINATOR_ADDRESS=host:port, JAX_NUM_PROCESSES, JAX_PROCESS_ID. JAX
  reads the address itself but not the other two, so they are passed here. Command-line
  flags (--coordinator_address, --num_processes, --process_id) win over the variables.

Failure detection is JAX's own: process 0 runs the coordination service and every process
sends it heartbeats from a background thread (so a long step or compile does not count as a
failure). A process that sends none for `heartbeat_timeout_s` (killed, host lost) is declared
dead; the service tells every other process, whose JAX client then terminates that process
(LOG(QFATAL): "Terminating process because the JAX distributed service detected fatal errors.
This most likely indicates that another task died ..."), also when it is blocked inside a
collective. If process 0 itself dies, the others' heartbeats fail and they terminate the same
way. So survivors exit, with that message and a non-zero status, at most about
`heartbeat_timeout_s` (plus a few seconds of polling) after the death; a collective that fails
earlier (gloo sees the closed socket) stops them sooner with an XLA error. tests/multihost
measures this on CPU. Relaunching the same command resumes from the last checkpoint.

JAX's default heartbeat timeout is 100 s; keep it generous on big pods (a stalled host, e.g.
in a long GCS write, should not kill a healthy job), lower it to fail fast.
"""
import logging
import os

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
    raise ValueError(f'{name}={value!r} must be an integer (launch/README.md, launch '
                     'contract).') from None


def initialize_kwargs(environ, *, distributed=False, coordinator_address=None,
                      num_processes=None, process_id=None,
                      heartbeat_timeout_s=DEFAULT_HEARTBEAT_TIMEOUT_S,
                      init_timeout_s=DEFAULT_INIT_TIMEOUT_S,
                      shutdown_timeout_s=DEFAULT_SHUTDOWN_TIMEOUT_S):
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
  if process_id is not None and num_processes is not None and not (
      0 <= process_id < num_processes):
    raise ValueError(f'--process_id / {PROCESS_ID_VAR}={process_id} must be in '
                     f'[0, {num_processes}) (--num_processes / {NUM_PROCESSES_VAR}).')
  for name, value in (('--distributed_heartbeat_timeout_s', heartbeat_timeout_s),
                      ('--distributed_init_timeout_s', init_timeout_s),
                      ('--distributed_shutdown_timeout_s', shutdown_timeout_s)):
    if value < 1:
      raise ValueError(f'{name} must be >= 1 second, got {value}.')
  return dict(coordinator_address=address, num_processes=num_processes, process_id=process_id,
              initialization_timeout=int(init_timeout_s),
              heartbeat_timeout_seconds=int(heartbeat_timeout_s),
              shutdown_timeout_seconds=int(shutdown_timeout_s))


def maybe_initialize(environ=None, **flags):
  """Calls jax.distributed.initialize when `initialize_kwargs` says multi-host; returns the
  kwargs used (None: single process, nothing done)."""
  kwargs = initialize_kwargs(os.environ if environ is None else environ, **flags)
  if kwargs is None:
    return None
  import jax  # pylint: disable=g-import-not-at-top
  jax.distributed.initialize(**kwargs)
  logging.info('jax.distributed: process %d of %d (coordinator %s, heartbeat timeout %d s)',
               jax.process_index(), jax.process_count(),
               kwargs['coordinator_address'] or 'auto-detected',
               kwargs['heartbeat_timeout_seconds'])
  return kwargs
