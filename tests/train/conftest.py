"""Shared setup for trainer tests: the repo root on sys.path (for `configs`), fast XLA CPU
compilation (the tiny test programs spend far more time compiling than running), and a
persistent compilation cache so repeated runs of one program (resume tests) compile once."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

# Only takes effect if no test module initialised the JAX backend before this conftest loads.
FAST_XLA_FLAGS = '--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true'
os.environ.setdefault('XLA_FLAGS', FAST_XLA_FLAGS)

import jax  # noqa: E402

jax.config.update('jax_compilation_cache_dir', os.path.join(
    os.environ.get('TMPDIR', '/tmp'), 'vit_jax_stems_test_jit_cache'))
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
