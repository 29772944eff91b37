"""The launch contract (launch/README.md) -> jax.distributed.initialize arguments, without starting
anything; tests/multihost/test_multihost.py runs the same path for real through main.py."""

import inspect

import jax
import pytest

from vit_jax_stems.train import distributed

GPU_ENV = {
  'JAX_COORDINATOR_ADDRESS': '10.0.0.1:12355',
  'JAX_NUM_PROCESSES': '16',
  'JAX_PROCESS_ID': '3',
}


def test_single_process_without_flag_or_address():
  assert distributed.initialize_kwargs({}) is None
  # The count and id alone do not make a multi-host run (JAX needs the coordinator).
  assert distributed.initialize_kwargs({'JAX_NUM_PROCESSES': '2', 'JAX_PROCESS_ID': '1'}) is None


def test_gpu_contract_passes_count_and_id_that_jax_does_not_read_itself():
  kw = distributed.initialize_kwargs(GPU_ENV)
  assert (kw['coordinator_address'], kw['num_processes'], kw['process_id']) == (
    '10.0.0.1:12355',
    16,
    3,
  )


def test_flags_win_over_the_environment():
  kw = distributed.initialize_kwargs(
    GPU_ENV, coordinator_address='h:1', num_processes=4, process_id=0
  )
  assert (kw['coordinator_address'], kw['num_processes'], kw['process_id']) == ('h:1', 4, 0)


def test_tpu_distributed_flag_alone_lets_jax_auto_detect():
  kw = distributed.initialize_kwargs({}, distributed=True)
  assert (kw['coordinator_address'], kw['num_processes'], kw['process_id']) == (None, None, None)


def test_timeouts_reach_jax_under_its_own_argument_names():
  kw = distributed.initialize_kwargs(
    GPU_ENV, heartbeat_timeout_s=7, init_timeout_s=60, shutdown_timeout_s=30
  )
  assert (
    kw['heartbeat_timeout_seconds'],
    kw['initialization_timeout'],
    kw['shutdown_timeout_seconds'],
  ) == (7, 60, 30)
  # Every key is a parameter of the installed jax.distributed.initialize, and the defaults
  # here are jax's own.
  params = inspect.signature(jax.distributed.initialize).parameters
  assert set(kw) <= set(params)
  defaults = distributed.initialize_kwargs(GPU_ENV)
  for key in ('heartbeat_timeout_seconds', 'initialization_timeout', 'shutdown_timeout_seconds'):
    assert defaults[key] == params[key].default


@pytest.mark.parametrize(
  'env, flags, match',
  [
    (dict(GPU_ENV, JAX_NUM_PROCESSES='two'), {}, "JAX_NUM_PROCESSES='two' must be an integer"),
    (dict(GPU_ENV, JAX_PROCESS_ID='16'), {}, r'JAX_PROCESS_ID=16 must be in \[0, 16\)'),
    (GPU_ENV, dict(num_processes=0), 'must be >= 1'),
    (GPU_ENV, dict(heartbeat_timeout_s=0), '--distributed_heartbeat_timeout_s must be >= 1'),
  ],
)
def test_bad_values_name_what_to_change(env, flags, match):
  with pytest.raises(ValueError, match=match):
    distributed.initialize_kwargs(env, **flags)


def test_maybe_initialize_calls_jax_only_for_multi_host(monkeypatch):
  calls = []
  monkeypatch.setattr(jax.distributed, 'initialize', lambda **kw: calls.append(kw))
  monkeypatch.setattr(jax, 'process_index', lambda: 3)
  monkeypatch.setattr(jax, 'process_count', lambda: 16)
  assert distributed.maybe_initialize({}) is None and not calls
  kw = distributed.maybe_initialize(GPU_ENV, heartbeat_timeout_s=10)
  assert calls == [kw] and kw['heartbeat_timeout_seconds'] == 10
