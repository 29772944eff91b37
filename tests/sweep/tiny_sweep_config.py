"""Config file of tiny ViT_C trials (tests/train/tiny.py, 3 steps) for the sweep command tests.

Options: optimizer=adamw|sgd (the demos' optimizers, as configs/vitc.py:demo takes them).
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'train'))

import tiny

from configs import common


def get_config(arg=None):
  opts = common.parse_options(arg, optimizer='adamw')
  c = tiny.tiny_config('vitc', steps=3, optimizer=opts['optimizer'])
  c.num_devices = 1
  return c
