"""A stand-in for vit_jax_stems.data with the same interface, for trainer tests that must not
depend on the input pipeline: deterministic random images whose class is encoded in the mean
brightness (learnable), global batch k a function of (seed, k) only, each process taking its
rows of the global batch (as the real pipeline does)."""

import types

import jax
import numpy as np

NUM_CLASSES = 10


def get_dataset_info(dcfg):
  return types.SimpleNamespace(
    num_classes=NUM_CLASSES,
    num_train_examples=dcfg.get('fake_num_train', 256),
    num_eval_examples=dcfg.get('fake_num_eval', 100),
  )


def _examples(rng, n, size):
  """uint8 images (as the real pipeline ships them) whose mean brightness encodes the label."""
  labels = rng.integers(0, NUM_CLASSES, size=n)
  images = rng.normal(0, 1, size=(n, size, size, 3))
  images += (labels[:, None, None, None] / NUM_CLASSES - 0.5) * 2
  return np.clip(np.round(128 + 40 * images), 0, 255).astype(np.uint8), labels.astype(np.int32)


def _local_rows(n):
  per = n // jax.process_count()
  return slice(jax.process_index() * per, (jax.process_index() + 1) * per)


def make_train_iterator(dcfg, *, global_batch_size, seed, start_step=0):
  step = start_step
  while True:
    rng = np.random.default_rng([seed, step])
    images, labels = _examples(rng, global_batch_size, dcfg.image_size)
    rows = _local_rows(global_batch_size)
    yield {'image': images[rows], 'label': labels[rows]}
    step += 1


def make_eval_iterator(dcfg, split=None, *, global_batch_size):
  del split
  n = get_dataset_info(dcfg).num_eval_examples
  images, labels = _examples(np.random.default_rng(12345), n, dcfg.image_size)
  for start in range(0, n, global_batch_size):
    img = np.zeros((global_batch_size,) + images.shape[1:], np.uint8)
    lab = np.zeros((global_batch_size,), np.int32)
    mask = np.zeros((global_batch_size,), bool)
    m = min(global_batch_size, n - start)
    img[:m], lab[:m], mask[:m] = images[start : start + m], labels[start : start + m], True
    rows = _local_rows(global_batch_size)
    yield {'image': img[rows], 'label': lab[rows], 'mask': mask[rows]}
