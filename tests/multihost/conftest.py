"""tests/multihost: the trainer helpers of tests/train (`tiny`) on sys.path, and the same fast XLA
CPU flags and persistent compilation cache as tests/train/conftest.py (subprocesses inherit
the flags through the environment)."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
for path in (ROOT, os.path.join(ROOT, 'tests', 'train')):
  if path not in sys.path:
    sys.path.insert(0, path)

os.environ.setdefault(
    'XLA_FLAGS', '--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true')

import jax  # noqa: E402

CACHE_DIR = os.path.join(os.environ.get('TMPDIR', '/tmp'), 'vit_jax_stems_test_jit_cache')
jax.config.update('jax_compilation_cache_dir', CACHE_DIR)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
