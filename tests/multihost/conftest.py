"""tests/multihost uses the suite-wide setup of tests/conftest.py (8 fake CPU devices, fast XLA
CPU flags that the 2-process subprocesses inherit through XLA_FLAGS, persistent compilation
cache, repository root on sys.path) and the trainer helpers of tests/train (`tiny`)."""

import os
import sys

TRAIN_TESTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'train')
if TRAIN_TESTS not in sys.path:
  sys.path.insert(0, TRAIN_TESTS)
