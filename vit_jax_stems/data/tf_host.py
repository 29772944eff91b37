"""TensorFlow for the host input pipeline, kept off the GPUs that JAX owns.

Every module of this package that runs TensorFlow or TFDS ops imports this one first (`datasets`
and `prepare` through `mnist5k`), so the GPUs are hidden from TensorFlow before its first op,
whichever module a caller imports.
"""

import tensorflow as tf

try:
  tf.config.set_visible_devices([], 'GPU')
except (RuntimeError, ValueError):  # TensorFlow already initialised its devices
  pass

__all__ = ['tf']
