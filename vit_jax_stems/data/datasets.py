"""Finding a TFDS dataset, checking it is prepared, and the per-process share of a split.

Everything here runs before any compile, so that a missing dataset stops a run at once with a
message that says what to download or prepare and where. Nothing here downloads: the only dataset
prepared automatically is the embedded `mnist5k`, whose data ships inside an installed package.
"""

import dataclasses
import math
import os
from typing import Any

import tensorflow_datasets as tfds
from absl import logging

from vit_jax_stems.data import mnist5k

# Datasets whose preparation needs no network (their builder reads files of an installed package).
EMBEDDED_DATASETS = ('mnist5k',)


class DatasetNotReadyError(RuntimeError):
  """The dataset is unknown, not prepared in data_dir, or lacks a split or feature the config names."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the trainer needs to know about a dataset before it builds a model."""

  name: str
  data_dir: str
  num_classes: int
  num_train_examples: int
  num_eval_examples: int
  image_size: int
  train_split: str
  eval_split: str

  def __getitem__(self, key: str) -> Any:  # lets callers treat it as a dict too
    return getattr(self, key)


def resolve_data_dir(data_dir: str | None) -> str:
  """Explicit data_dir, else $TFDS_DATA_DIR, else ~/tensorflow_datasets (TFDS's own default)."""
  if data_dir:
    return data_dir if '://' in data_dir else os.path.expanduser(data_dir)
  return os.path.expanduser(os.environ.get('TFDS_DATA_DIR', '~/tensorflow_datasets'))


def imagenet_manual_dir(config) -> str:
  return config.manual_dir or os.path.join(resolve_data_dir(config.data_dir), 'downloads', 'manual')


def _not_prepared_message(config, data_dir: str) -> str:
  base = config.name.split(':')[0].split('/')[0]
  if base == 'imagenet2012':
    manual = imagenet_manual_dir(config)
    return (
      f"Dataset 'imagenet2012' is not prepared in data_dir={data_dir!r}.\n"
      '1. Download ILSVRC2012_img_train.tar (138 GB) and ILSVRC2012_img_val.tar (6.3 GB) from '
      'https://image-net.org/download-images (needs an account) and put both files, unextracted, in '
      f'{manual!r} (or set config.manual_dir).\n'
      '2. Prepare the TFDS records once (about 150 GB more, a few hours on one machine):\n'
      f'   python -m vit_jax_stems.data.prepare --name=imagenet2012 --data_dir={data_dir} '
      f'--manual_dir={manual}\n'
      '   (or `tfds build imagenet2012 --data_dir=... --manual_dir=...`). For a pod, prepare once on '
      'one machine into a gs:// bucket and point config.data_dir at it.'
    )
  return (
    f'Dataset {config.name!r} is not prepared in data_dir={data_dir!r}. Training never downloads; '
    'prepare it once on a machine with network access:\n'
    f'   python -m vit_jax_stems.data.prepare --name={config.name} --data_dir={data_dir}\n'
    'or set config.data_dir to where it is already prepared.'
  )


def get_builder(config, *, prepare_embedded: bool = True) -> tfds.core.DatasetBuilder:
  """The TFDS builder of config.name in config.data_dir, checked to be prepared.

  The embedded datasets (mnist5k) are prepared on first use; every other dataset must already be
  prepared, otherwise DatasetNotReadyError explains how.
  """
  data_dir = resolve_data_dir(config.data_dir)
  try:
    builder = tfds.builder(config.name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise DatasetNotReadyError(
      f'No TFDS dataset named {config.name!r} (config.name). Use a name from '
      "https://www.tensorflow.org/datasets/catalog, the embedded 'mnist5k', or a dataset prepared in "
      f'data_dir={data_dir!r}. TFDS said: {e}'
    ) from e
  if not builder.is_prepared():
    if builder.name in EMBEDDED_DATASETS and prepare_embedded:
      logging.info('Preparing embedded dataset %s in %s (no download).', builder.name, data_dir)
      builder.download_and_prepare()
    else:
      raise DatasetNotReadyError(_not_prepared_message(config, data_dir))
  return builder


def check_features(builder: tfds.core.DatasetBuilder, config) -> int:
  """Checks image/label features exist and returns the number of classes."""
  features = builder.info.features
  for key, kind in (
    (config.image_key, tfds.features.Image),
    (config.label_key, tfds.features.ClassLabel),
  ):
    if key not in features or not isinstance(features[key], kind):
      raise DatasetNotReadyError(
        f'Dataset {builder.name!r} has no {kind.__name__} feature {key!r} (config.image_key / '
        f'config.label_key); its features are {list(features.keys())}.'
      )
  return features[config.label_key].num_classes


def num_examples(builder: tfds.core.DatasetBuilder, split: str) -> int:
  """Examples in a split expression such as 'train', 'validation[:1000]' or 'train[10%:20%]'."""
  try:
    return builder.info.splits[split].num_examples
  except (KeyError, ValueError, AssertionError) as e:
    raise DatasetNotReadyError(
      f'Split {split!r} not found in dataset {builder.name!r}; available splits: '
      f'{list(builder.info.splits.keys())}. Set config.train_split / config.eval_split.'
    ) from e


def get_dataset_info(config) -> DatasetInfo:
  """Checks that the dataset, both splits and the features exist; call it before compiling anything."""
  builder = get_builder(config)
  num_classes = check_features(builder, config)
  info = DatasetInfo(
    name=builder.name,
    data_dir=resolve_data_dir(config.data_dir),
    num_classes=num_classes,
    num_train_examples=num_examples(builder, config.train_split),
    num_eval_examples=num_examples(builder, config.eval_split),
    image_size=config.image_size,
    train_split=config.train_split,
    eval_split=config.eval_split,
  )
  if info.num_train_examples == 0 or info.num_eval_examples == 0:
    raise DatasetNotReadyError(f'Empty split in {info}.')
  return info


def process_index_and_count(
  process_index: int | None, process_count: int | None
) -> tuple[int, int]:
  """jax.process_index()/process_count() unless given (tests simulate several hosts in one process)."""
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top  (only needed when not told)

    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index={process_index} not in [0, process_count={process_count}).')
  return process_index, process_count


def local_batch_size(global_batch_size: int, process_count: int) -> int:
  if global_batch_size <= 0 or global_batch_size % process_count:
    raise ValueError(
      f'global_batch_size={global_batch_size} must be a positive multiple of the number of '
      f'processes ({process_count}): each process feeds global_batch_size / process_count examples.'
    )
  return global_batch_size // process_count


def process_splits(split: str, process_count: int) -> list[str]:
  """Contiguous, disjoint sub-splits covering `split`, one per process (sizes differ by at most 1)."""
  return tfds.even_splits(split, n=process_count, drop_remainder=False)


def eval_num_batches(builder, split: str, local_batch: int, process_count: int) -> int:
  """Batches every process yields for one eval pass: enough for the largest per-process share."""
  largest = max(num_examples(builder, s) for s in process_splits(split, process_count))
  return max(1, math.ceil(largest / local_batch))


__all__ = ['DatasetInfo', 'DatasetNotReadyError', 'get_builder', 'get_dataset_info', 'mnist5k']
