"""Precise BatchNorm statistics before evaluation (pycls `net.compute_precise_bn_stats`; P1 recipe).

Running averages of BatchNorm statistics lag behind weights that change quickly (and the EMA
weights never saw their own statistics). pycls therefore recomputes, before each evaluation, the
running mean and variance of every BN layer as the average over `BN.NUM_SAMPLES_PRECISE` = 8192
training samples of the per-batch statistics, for the raw and the EMA weights (pycls config).
Only ViT_C has BatchNorm (in its conv stem); for other models this is a no-op.

The batches are the next training batches of the stream, peeked and then trained on as usual
(`PeekableIterator`), so precise BN reads no extra data, leaves the training stream unchanged and
resumes exactly. They are augmented as the train step augments them but without mixup/CutMix,
which pycls applies in the train loop, after its loader.

Variances are Flax's (biased, over the global batch), the convention our BN layers keep while
training; pycls averages PyTorch's unbiased per-GPU variances (a factor n/(n-1), 1.004 at 256).
"""

import collections
import dataclasses
import math

import jax
import jax.numpy as jnp

from vit_jax_stems.data import device_augment

# Folded into the run key so that the augmentation of peeked batches differs from the train step's.
_PRECISE_BN_STREAM = 2


def num_batches(num_samples: int, batch_size: int) -> int:
  """Batches that cover num_samples (at least one), as pycls's int(NUM_SAMPLES / batch) rounded up."""
  return max(1, math.ceil(num_samples / batch_size))


def make_batch_stats_fn(model, augment: device_augment.DeviceAugment, momentum: float):
  """stats(variables, batch, key) -> this batch's BN statistics, a tree like variables['batch_stats'].

  Runs the model in training mode from zero running statistics: Flax's update
  new = momentum * old + (1 - momentum) * batch_stat then gives batch_stat = new / (1 - momentum).
  """
  no_mixing = dataclasses.replace(augment, mixup_alpha=0.0, cutmix_alpha=0.0)

  def stats(variables, batch, key):
    images, _ = no_mixing(batch['image'], batch['label'], key)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, variables['batch_stats'])
    _, updates = model.apply(
      {'params': variables['params'], 'batch_stats': zeros},
      images,
      train=True,
      mutable=['batch_stats'],
    )
    return jax.tree_util.tree_map(lambda s: s / (1.0 - momentum), updates['batch_stats'])

  return stats


def precise_batch_stats(stats_fn, variables, batches, key):
  """The average over `batches` (global arrays) of each batch's BN statistics."""
  total = None
  for i, batch in enumerate(batches):
    stats = stats_fn(variables, batch, jax.random.fold_in(key, i))
    total = stats if total is None else jax.tree_util.tree_map(jnp.add, total, stats)
  return jax.tree_util.tree_map(lambda s: s / len(batches), total)


def precise_bn_key(rng: jax.Array, step: int) -> jax.Array:
  return jax.random.fold_in(jax.random.fold_in(rng, step), _PRECISE_BN_STREAM)


class PeekableIterator:
  """Wraps an iterator so that the next n items can be looked at and are still yielded afterwards."""

  def __init__(self, iterator):
    self._it = iterator
    self._ahead = collections.deque()

  def __iter__(self):
    return self

  def __next__(self):
    return self._ahead.popleft() if self._ahead else next(self._it)

  def peek(self, n: int) -> list:
    while len(self._ahead) < n:
      self._ahead.append(next(self._it))
    return list(self._ahead)[:n]
