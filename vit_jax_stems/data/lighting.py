"""AlexNet-style PCA lighting noise (pycls `transforms.lighting`, used by P1 with std 0.1)."""
import tensorflow as tf

# ImageNet RGB eigenvalues/eigenvectors (eigenvectors are the columns). Source: pycls
# `pycls/datasets/imagenet.py` _EIG_VALS/_EIG_VECS, from fb.resnet.torch `datasets/imagenet.lua`.
EIGVALS = (0.2175, 0.0188, 0.0045)
EIGVECS = ((-0.5675, 0.7192, 0.4009),
           (-0.5808, -0.0045, -0.8140),
           (-0.5836, -0.6948, 0.4203))


def pca_lighting(image01: tf.Tensor, seed: tf.Tensor, std: float) -> tf.Tensor:
  """Adds EIGVECS @ (alpha * EIGVALS), alpha ~ N(0, std^2) per component, to an RGB image on the [0, 1] scale."""
  alpha = tf.random.stateless_normal([3], seed, stddev=std)
  rgb = tf.linalg.matvec(tf.constant(EIGVECS, tf.float32), alpha * tf.constant(EIGVALS, tf.float32))
  return image01 + rgb
