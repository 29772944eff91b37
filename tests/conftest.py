"""Test-wide setup, applied before any test initialises the JAX backend.

* Eight fake CPU devices, so sharding code runs on one CPU machine (tests that need fewer devices
  use a sub-mesh).
* Fast XLA CPU compilation: the tiny test programs spend far more time compiling than running.
* A persistent compilation cache, so programs compiled twice in one run (resume tests, repeated
  model inits) compile once.
* The repository root on sys.path, for `configs` and `tools`.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault(
  'XLA_FLAGS', '--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true'
)

import jax  # noqa: E402

jax.config.update('jax_num_cpu_devices', 8)
jax.config.update(
  'jax_compilation_cache_dir',
  os.path.join(os.environ.get('TMPDIR', '/tmp'), 'vit_jax_stems_test_jit_cache'),
)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
