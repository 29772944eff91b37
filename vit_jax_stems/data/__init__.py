"""Input pipeline over TFDS and tf.data: any TFDS image classification dataset, the papers' augmentations,
exact multi-host evaluation, and the embedded `mnist5k` dataset (registered with TFDS on import).

    from vit_jax_stems import data
    dcfg = data.default_config()                    # or data.paper_recipe_config('vitc' | 'convit')
    info = data.get_dataset_info(dcfg)              # raises DatasetNotReadyError before any compile
    train_iter = data.make_train_iterator(dcfg, global_batch_size=256, seed=0, start_step=step)
    eval_iter = data.make_eval_iterator(dcfg, global_batch_size=256)

This package imports TensorFlow; model and train-step code must not import it.
"""

import tensorflow as tf

# The input pipeline runs on the host CPU; keep TensorFlow off any accelerator that JAX owns.
try:
  tf.config.set_visible_devices([], 'GPU')
except (RuntimeError, ValueError):  # already initialised
  pass

# pylint: disable=g-import-not-at-top,wrong-import-position
from vit_jax_stems.data import mnist5k  # registers the 'mnist5k' TFDS builder
from vit_jax_stems.data.config import (
  IMAGENET_MEAN,
  IMAGENET_STD,
  default_config,
  paper_recipe_config,
)
from vit_jax_stems.data.datasets import DatasetInfo, DatasetNotReadyError, get_dataset_info
from vit_jax_stems.data.pipeline import (
  EvalIterator,
  TrainIterator,
  make_eval_dataset,
  make_eval_iterator,
  make_train_dataset,
  make_train_iterator,
)

__all__ = [
  'IMAGENET_MEAN',
  'IMAGENET_STD',
  'DatasetInfo',
  'DatasetNotReadyError',
  'EvalIterator',
  'TrainIterator',
  'default_config',
  'get_dataset_info',
  'make_eval_dataset',
  'make_eval_iterator',
  'make_train_dataset',
  'make_train_iterator',
  'mnist5k',
  'paper_recipe_config',
]
