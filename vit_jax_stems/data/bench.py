"""Input pipeline throughput on ImageNet-like JPEGs with a paper recipe's augmentations.

  python -m vit_jax_stems.data.bench --recipe=vitc --device_rate=3000

Writes generated ~500x375 quality-90 JPEGs in the ILSVRC2012 tar layout to a temporary directory,
prepares them with TFDS's own imagenet2012 builder, then times the real train and eval iterators
(tf.data uses every core it may). Prints images/s, images/s per core and the cores needed to feed
--device_rate images/s. On a shared machine the figures are a lower bound: the load average is printed.

The host pipeline ends at uint8 batches; lighting, normalisation, erasing and mixup/CutMix run in
the train step on the accelerators (`vit_jax_stems.data.device_augment`) and cost no host CPU.
A peer measured in the same run, the same pipeline with every augmentation off (decode fused with
the random crop, resize, batch), shows what the recipe's augmentations cost on top of decoding.
"""

import os
import tempfile
import time

import numpy as np
from absl import app, flags

from vit_jax_stems import data
from vit_jax_stems.data import fake_imagenet

_RECIPE = flags.DEFINE_enum(
  'recipe', 'vitc', ['vitc', 'convit'], 'Paper recipe whose augmentations to time.'
)
_NUM_TRAIN = flags.DEFINE_integer(
  'num_train', 512, 'Generated training images (cycled through epochs).'
)
_NUM_VAL = flags.DEFINE_integer('num_val', 256, 'Generated validation images.')
_BATCH = flags.DEFINE_integer('batch', 128, 'Batch size.')
_TRAIN_BATCHES = flags.DEFINE_integer('train_batches', 20, 'Timed train batches (after warm-up).')
_IMAGE_SIZE = flags.DEFINE_integer('image_size', 224, 'Model input size.')
_DEVICE_RATE = flags.DEFINE_float(
  'device_rate', 3000.0, 'Images/s the accelerators consume (e.g. ViT_C-4GF on 8 GPUs).'
)
_WORKDIR = flags.DEFINE_string(
  'workdir', None, 'Where to write the generated dataset (default: a temp dir).'
)


def cores() -> int:
  return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()


def time_batches(iterator, num_batches: int, warmup: int = 2) -> tuple[float, float]:
  """(images per wall second, images per CPU second of this process) after `warmup` batches.

  CPU seconds (all threads) measure the cost per core even when other jobs share the cores.
  """
  for _ in range(warmup):
    next(iterator)
  start, cpu_start, images = time.perf_counter(), time.process_time(), 0
  for _ in range(num_batches):
    images += len(next(iterator)['image'])
  return images / (time.perf_counter() - start), images / (time.process_time() - cpu_start)


def main(argv):
  del argv
  workdir = _WORKDIR.value or tempfile.mkdtemp(prefix='vit_jax_stems_bench_')
  manual_dir, data_dir = os.path.join(workdir, 'manual'), os.path.join(workdir, 'tfds')
  classes = 10
  if not os.path.exists(os.path.join(data_dir, 'imagenet2012')):
    fake_imagenet.write_manual_dir(
      manual_dir, num_classes=classes, num_train=_NUM_TRAIN.value, num_val=_NUM_VAL.value
    )
    fake_imagenet.prepare_imagenet(data_dir, manual_dir)
  config = data.paper_recipe_config(_RECIPE.value)
  config.data_dir, config.manual_dir = data_dir, manual_dir
  config.image_size = _IMAGE_SIZE.value
  config.shuffle_buffer = 1024
  info = data.get_dataset_info(config)
  sizes = (
    [os.path.getsize(os.path.join(manual_dir, f)) for f in os.listdir(manual_dir)]
    if os.path.isdir(manual_dir)
    else []
  )
  n_cores = cores()
  print(
    f'dataset: {info.num_train_examples} train / {info.num_eval_examples} val generated JPEGs '
    f'(~500x375, q90; tars {sum(sizes) / 2**20:.0f} MiB) in {data_dir}'
  )
  print(f'recipe {_RECIPE.value}: {dict(config.augment)}')
  print(
    f'cores available: {n_cores}; load average before: {os.getloadavg()} (shared machine: lower bound)'
  )

  train = data.make_train_iterator(
    config, global_batch_size=_BATCH.value, seed=0, process_index=0, process_count=1
  )
  train_rates = time_batches(train, _TRAIN_BATCHES.value)
  del train  # stop its background threads before timing the next pipeline
  bare = config.copy_and_resolve_references()
  bare.augment.flip = bare.augment.autoaugment = False
  bare.augment.randaugment = None
  bare.augment.repeated_augmentation = 1
  decode_only = data.make_train_iterator(
    bare, global_batch_size=_BATCH.value, seed=0, process_index=0, process_count=1
  )
  decode_rates = time_batches(decode_only, _TRAIN_BATCHES.value)
  del decode_only
  ev = data.make_eval_iterator(
    config, global_batch_size=_BATCH.value, process_index=0, process_count=1
  )
  eval_rates = time_batches(ev, len(ev) - 1, warmup=1)
  print(f'load average after: {os.getloadavg()}')
  rows = (
    ('train', train_rates),
    ('train peer: decode+crop only', decode_rates),
    ('eval', eval_rates),
  )
  for name, (rate, per_cpu_second) in rows:
    print(
      f'{name:29s} {rate:8.1f} images/s wall on {n_cores} cores = {rate / n_cores:7.1f} images/s per core (wall); '
      f'{per_cpu_second:7.1f} images per CPU-second; '
      f'{int(np.ceil(_DEVICE_RATE.value / per_cpu_second))} cores to feed {_DEVICE_RATE.value:.0f} images/s'
    )
  print(
    f'recipe augmentations cost {decode_rates[1] / train_rates[1]:.2f}x the CPU time of decode+crop alone'
  )


if __name__ == '__main__':
  app.run(main)
