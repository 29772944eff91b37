"""Input pipeline over TFDS and tf.data: any TFDS image classification dataset, the papers' augmentations,
exact multi-host evaluation, and the embedded `mnist5k` and `cluttered_mnist5k` datasets.

    from vit_jax_stems import data
    dcfg = data.default_config()                    # or data.paper_recipe_config('vitc' | 'convit')
    info = data.get_dataset_info(dcfg)              # raises DatasetNotReadyError before any compile
    train_iter = data.make_train_iterator(dcfg, global_batch_size=256, seed=0, start_step=step)
    eval_iter = data.make_eval_iterator(dcfg, global_batch_size=256)

Importing the package, its `config` or its JAX half (`device_augment`) imports no TensorFlow, so
configs load and models and train steps run without it; the names that need TensorFlow (datasets,
pipelines) import it on first use (PEP 562 module `__getattr__`).
"""

import importlib

from vit_jax_stems.data.config import (
  IMAGENET_MEAN,
  IMAGENET_STD,
  cluttered_config,
  default_config,
  paper_recipe_config,
)
from vit_jax_stems.data.info import DatasetInfo

# Name -> the module of this package that defines it and imports TensorFlow.
_TENSORFLOW_NAMES = {
  'DatasetNotReadyError': 'datasets',
  'get_dataset_info': 'datasets',
  'EvalIterator': 'pipeline',
  'eval_data_config': 'eval_sets',
  'get_eval_set_info': 'eval_sets',
  'TrainIterator': 'pipeline',
  'make_eval_dataset': 'pipeline',
  'make_eval_iterator': 'pipeline',
  'make_train_dataset': 'pipeline',
  'make_train_iterator': 'pipeline',
}


def __getattr__(name: str):
  if name not in _TENSORFLOW_NAMES:
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  value = getattr(importlib.import_module(f'{__name__}.{_TENSORFLOW_NAMES[name]}'), name)
  globals()[name] = value  # later lookups skip __getattr__
  return value


__all__ = [
  'IMAGENET_MEAN',
  'IMAGENET_STD',
  'DatasetInfo',
  'DatasetNotReadyError',
  'EvalIterator',
  'TrainIterator',
  'cluttered_config',
  'default_config',
  'eval_data_config',
  'get_dataset_info',
  'get_eval_set_info',
  'make_eval_dataset',
  'make_eval_iterator',
  'make_train_dataset',
  'make_train_iterator',
  'paper_recipe_config',
]
