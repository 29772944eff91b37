"""TensorFlow for the host input pipeline, kept off the GPUs that JAX owns.

Every module of this package that runs TensorFlow or TFDS ops imports TensorFlow from here, so the
GPUs are hidden from it before its first op, whichever module a caller imports first.
"""

import tensorflow as tf

try:
  tf.config.set_visible_devices([], 'GPU')
except (RuntimeError, ValueError):  # TensorFlow already initialised its devices
  pass

__all__ = ['tf']
