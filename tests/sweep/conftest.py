"""Sweep tests train the trainer tests' tiny models (tests/train/tiny.py)."""

import os
import sys

TRAIN_TESTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'train')
if TRAIN_TESTS not in sys.path:
  sys.path.insert(0, TRAIN_TESTS)
