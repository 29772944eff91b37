"""tf.data input pipelines: an endless, resumable training stream and an exact, padded eval pass.

Multi-host: each process reads its own contiguous share of the split (tfds.split_for_jax_process /
even_splits) and yields batches of global_batch_size / process_count; the trainer assembles global
arrays from them (`vit_jax_stems.train.sharding.global_batch`).

Determinism and resume (the stream is a pure function of seed, process and step):
  * with config.train_fraction < 1 the split is first cut to its class-balanced subset (a fixed
    set: `datasets.train_subset`), whose examples are shared out over the processes;
  * the process's share is read in the fixed on-disk order (TFDS shuffles examples when it writes
    the records), then shuffled per epoch with a buffer seeded by fold(seed, process, epoch);
  * every example gets its own augmentation seed fold(seed, process, epoch, position in the epoch);
    all random ops are stateless (the device half of the augmentation, lighting, erasing and
    mixup/CutMix, is keyed by the train step: `vit_jax_stems.data.device_augment`);
  * start_step=s continues exactly where an uninterrupted run would be: the process has consumed
    s * local_batch examples, i.e. epoch e = that // epoch_size plus an offset into it, so the
    pipeline starts at epoch e and skips the offset. The skip happens before decoding (it only reads
    records), so it costs reading at most one epoch share of the encoded files, no JPEG decoding.
No iterator state needs to go into checkpoints: the step number is enough.

Bad records (corrupt or truncated images) are skipped and counted, never a crash and never silent:
decoding runs in chunks of examples inside an inner dataset with ignore_errors, and the slots that
do not come back get a flagged placeholder; in training the placeholder's slot in the batch is
filled with a copy of the first good example of the same batch (shapes, batch composition and the
resume arithmetic stay fixed), in eval its mask is False. The Python iterators count them (`num_bad_records`), keep their
TFDS ids (`bad_record_ids`) and log a warning naming each; a batch with no good example raises.
"""

import math
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from vit_jax_stems.data import auto_augment, datasets, decode
from vit_jax_stems.data.tf_host import tf

_INT64_MAX = np.iinfo(np.int64).max
_MAX_LOGGED_BAD = 100

# Tags folded into the seed so that independent streams never share random numbers.
_TAG_EXAMPLES, _TAG_SHUFFLE = 1, 2


def fold_seed(seed, *data) -> tf.Tensor:
  """A [2] int64 stateless seed from an integer seed and a sequence of integers (ints or tensors)."""
  key = tf.stack([tf.constant(0, tf.int64), tf.cast(seed, tf.int64)])
  for value in data:
    key = tf.random.experimental.stateless_fold_in(key, tf.cast(value, tf.int64))
  return key


def _read(builder, split, config, keeps=None) -> tf.data.Dataset:
  """Encoded examples {'image': bytes, 'label', 'tfds_id'} of a split, in on-disk order; only the
  records for which keeps(tfds_id) is True when given (a train subset, before the cache)."""
  ds = builder.as_dataset(
    split=split,
    shuffle_files=False,
    decoders={config.image_key: tfds.decode.SkipDecoding()},
    read_config=tfds.ReadConfig(add_tfds_id=True, try_autocache=False),
  )
  if keeps is not None:
    ds = ds.filter(lambda ex: keeps(ex['tfds_id']))
  ds = ds.map(
    lambda ex: {
      'image': ex[config.image_key],
      'label': tf.cast(ex[config.label_key], tf.int32),
      'tfds_id': ex['tfds_id'],
    }
  )
  return ds.cache() if config.cache else ds


# Examples decoded together in one inner dataset by _decode_or_flag: amortises the cost of creating
# that dataset (~0.3 ms of CPU per example when it held one example) while keeping batches small.
_DECODE_CHUNK = 32


def _decode_or_flag(ds: tf.data.Dataset, decode_fn, placeholder_image) -> tf.data.Dataset:
  """Maps decode_fn over examples in parallel, in order, into chunks (batches of up to _DECODE_CHUNK).

  A failing example becomes ok=False with placeholder_image. Examples go in chunks through an inner
  `map(...).ignore_errors()` that tags each decoded image with its slot in the chunk; the slots that
  come back missing are the undecodable records and get the placeholder, so every example keeps its
  position in the stream. Chunks are decoded in parallel by `interleave` and come out in order.
  decode_fn must return images of one static shape, that of placeholder_image. The result is
  chunked (callers rebatch or unbatch): every per-example step is done inside the chunk's inner map.
  """

  def decode_chunk(chunk):
    n = tf.shape(chunk['label'])[0]
    slots = tf.data.Dataset.from_tensor_slices({**chunk, '_slot': tf.range(n)})
    good = slots.map(
      lambda ex: (ex['_slot'], tf.ensure_shape(decode_fn(ex), placeholder_image.shape))
    )
    good = good.ignore_errors().batch(_DECODE_CHUNK)
    none_good = tf.data.Dataset.from_tensors((tf.zeros([0], tf.int32), placeholder_image[None][:0]))
    good = good.concatenate(none_good).take(
      1
    )  # a chunk in which nothing decodes still yields one element

    def fill(good_slots, good_images):
      where = good_slots[:, None]

      def with_placeholders():
        return tf.tensor_scatter_nd_update(
          tf.tile(placeholder_image[None], [n, 1, 1, 1]), where, good_images
        )

      all_good = tf.equal(tf.shape(good_slots)[0], n)
      images = tf.cond(all_good, lambda: good_images, with_placeholders)
      ok = tf.scatter_nd(where, tf.ones_like(good_slots, tf.bool), [n])
      return {**chunk, 'image': images, 'ok': ok}

    return good.map(fill)

  return ds.batch(_DECODE_CHUNK).interleave(
    decode_chunk,
    cycle_length=tf.data.AUTOTUNE,
    num_parallel_calls=tf.data.AUTOTUNE,
    deterministic=True,
  )


def _augment_fill(config, default):
  if config.augment.augment_fill is not None:
    return tuple(config.augment.augment_fill)
  return default


def host_augment_fn(config):
  """fn(uint8 crop, example seed) -> uint8 image: flip, then AutoAugment or RandAugment (per example, on the host).

  The output stays uint8: PCA lighting, normalisation, random erasing, mixup/CutMix and label
  smoothing are arithmetic on whole batches and run on the accelerators inside the train step
  (`vit_jax_stems.data.device_augment`), which keeps the host CPU, the input's bottleneck, free.
  """
  aug = config.augment
  ra_spec = auto_augment.parse_randaugment(aug.randaugment) if aug.randaugment else None
  if aug.autoaugment and ra_spec:
    raise ValueError(
      'config.data.augment.autoaugment and config.data.augment.randaugment are exclusive; '
      'choose one.'
    )

  def fn(image, example_seed):
    flip_seed, policy_seed = tf.unstack(
      tf.random.experimental.stateless_split(fold_seed(0, example_seed[0], example_seed[1]), 2)
    )
    if aug.flip:
      image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    if aug.autoaugment:
      image = auto_augment.auto_augment(
        image, policy_seed, fill=_augment_fill(config, (128, 128, 128))
      )
    elif ra_spec:
      mean_fill = tuple(
        min(255, round(255 * m)) for m in config.mean
      )  # timm/DeiT `img_mean` hparam
      image = auto_augment.rand_augment(
        image, policy_seed, ra_spec, fill=_augment_fill(config, mean_fill)
      )
    return image

  return fn


def refill_bad_slots(batch):
  """Fills the slots of undecodable records with the batch's first good example (same shapes, same count)."""
  ok = batch['ok']

  def refill():
    first_ok = tf.argmax(tf.cast(ok, tf.int32), output_type=tf.int32)
    source = tf.where(ok, tf.range(tf.shape(ok)[0]), first_ok)
    return tf.gather(batch['image'], source), tf.gather(batch['label'], source)

  images, labels = tf.cond(tf.reduce_all(ok), lambda: (batch['image'], batch['label']), refill)
  return {**batch, 'image': images, 'label': labels}


def make_train_dataset(
  config,
  *,
  global_batch_size: int,
  seed: int,
  start_step: int = 0,
  process_index: int | None = None,
  process_count: int | None = None,
) -> tf.data.Dataset:
  """The endless per-process training stream as a tf.data.Dataset (see the module docstring)."""
  if start_step < 0:
    raise ValueError(f'start_step must be >= 0, got {start_step}.')
  builder = datasets.get_builder(config)
  datasets.check_features(builder, config)
  process_index, process_count = datasets.process_index_and_count(process_index, process_count)
  local_batch = datasets.local_batch_size(global_batch_size, process_count)
  keeps = None
  if datasets.train_fraction(config) < 1:  # a class-balanced subset, shared out over processes
    share = datasets.train_subset_share(builder, config, process_index, process_count)
    split, epoch_size, keeps = share.split, share.num_examples, share.keeps
  else:
    split = tfds.split_for_jax_process(
      config.train_split, process_index=process_index, process_count=process_count
    )
    epoch_size = datasets.num_examples(builder, split)
  if epoch_size == 0:
    raise datasets.DatasetNotReadyError(
      f'Process {process_index} has no training examples in {datasets.split_name(split)}; '
      'change config.data.train_split.'
    )
  aug = config.augment
  repeats = int(aug.repeated_augmentation)
  if repeats < 1:
    raise ValueError(f'config.data.augment.repeated_augmentation must be >= 1, got {repeats}.')
  records = _read(builder, split, config, keeps)

  def epoch(index):
    shuffle_seed = fold_seed(seed, _TAG_SHUFFLE, process_index, index)[1]
    ds = records.shuffle(
      min(config.shuffle_buffer, epoch_size), seed=shuffle_seed, reshuffle_each_iteration=False
    )
    if (
      repeats > 1
    ):  # DeiT repeated augmentation: same length, each example `repeats` times in a row
      ds = ds.take(math.ceil(epoch_size / repeats))
      # Repeated in small batches (tf.repeat), not one inner dataset per example (~0.1 ms each).
      ds = ds.batch(64).map(lambda b: {k: tf.repeat(v, repeats, axis=0) for k, v in b.items()})
      ds = ds.unbatch().take(epoch_size)
    return ds.enumerate().map(
      lambda i, ex: {**ex, 'seed': fold_seed(seed, _TAG_EXAMPLES, process_index, index, i)}
    )

  first_epoch, offset = divmod(start_step * local_batch, epoch_size)
  ds = tf.data.Dataset.range(first_epoch, _INT64_MAX).flat_map(epoch).skip(offset)

  size = config.image_size
  host_augment = host_augment_fn(config)

  def crop_and_augment(example):  # a failure anywhere in here flags the record as bad
    image = decode.decode_random_resized_crop(
      example['image'],
      fold_seed(0, example['seed'][0], example['seed'][1], 7),
      size=size,
      area_range=(aug.area_min, aug.area_max),
      aspect_range=(aug.aspect_min, aug.aspect_max),
      method=config.interpolation,
      antialias=config.antialias,
      random_crop=aug.random_resized_crop,
    )
    return host_augment(image, example['seed'])

  ds = _decode_or_flag(ds, crop_and_augment, tf.zeros([size, size, 3], tf.uint8))
  ds = ds.map(lambda chunk: {k: chunk[k] for k in ('image', 'label', 'ok', 'tfds_id')})
  ds = ds.rebatch(local_batch, drop_remainder=True)
  ds = ds.map(refill_bad_slots, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.prefetch(config.prefetch)


def make_eval_dataset(
  config,
  *,
  split: str | None = None,
  global_batch_size: int,
  process_index: int | None = None,
  process_count: int | None = None,
):
  """One padded pass over `split` for this process; returns (dataset, num_batches, examples of this process).

  A label feature that holds a set of classes per example (datasets.has_label_sets: ReaL) comes
  out as a multi-hot bool (num_classes,) per example, all False for an empty set or padding.
  """
  split = split or config.eval_split
  builder = datasets.get_builder(config)
  num_classes = datasets.check_features(builder, config, allow_label_sets=True)
  label_sets = datasets.has_label_sets(builder, config)
  process_index, process_count = datasets.process_index_and_count(process_index, process_count)
  local_batch = datasets.local_batch_size(global_batch_size, process_count)
  local_split = datasets.process_splits(split, process_count)[process_index]
  local_examples = datasets.num_examples(builder, local_split)
  num_batches = datasets.eval_num_batches(builder, split, local_batch, process_count)
  size = config.image_size

  def preprocess(example):
    return decode.decode_resize_center_crop(
      example['image'],
      size=size,
      crop_pct=config.crop_pct,
      method=config.interpolation,
      antialias=config.antialias,
    )

  records = _read(builder, local_split, config)
  if label_sets:
    records = records.map(lambda ex: {**ex, 'label': _multi_hot(ex['label'], num_classes)})
  ds = _decode_or_flag(records, preprocess, tf.zeros([size, size, 3], tf.uint8)).unbatch()
  ds = ds.map(
    lambda ex: {
      'image': ex['image'],
      'label': ex['label'],
      'mask': ex['ok'],
      'real': tf.constant(True),
      'tfds_id': ex['tfds_id'],
    },
    num_parallel_calls=tf.data.AUTOTUNE,
  )
  padding = tf.data.Dataset.from_tensors(
    {
      'image': tf.zeros([size, size, 3], tf.uint8),
      'label': tf.zeros([num_classes], tf.bool) if label_sets else tf.constant(0, tf.int32),
      'mask': tf.constant(False),
      'real': tf.constant(False),
      'tfds_id': tf.constant(''),
    }
  )
  ds = ds.concatenate(padding.repeat(num_batches * local_batch - local_examples))
  ds = ds.batch(local_batch, drop_remainder=True).prefetch(config.prefetch)
  return ds, num_batches, local_examples


def _multi_hot(labels: tf.Tensor, num_classes: int) -> tf.Tensor:
  """int (k,) classes, k >= 0 -> bool (num_classes,), True at each of them."""
  return tf.reduce_sum(tf.one_hot(labels, num_classes, dtype=tf.int32), axis=0) > 0


class _BadRecordLog:
  """Counts and names the records that failed to decode."""

  def __init__(self):
    self.num_bad_records = 0
    self.bad_record_ids: list[str] = []

  def record(self, ids: np.ndarray, kind: str):
    for tfds_id in ids:
      tfds_id = tfds_id.decode() if isinstance(tfds_id, bytes) else str(tfds_id)
      self.num_bad_records += 1
      if len(self.bad_record_ids) < _MAX_LOGGED_BAD:
        self.bad_record_ids.append(tfds_id)
        logging.warning(
          'Skipped undecodable %s record %s (bad records so far: %d).',
          kind,
          tfds_id,
          self.num_bad_records,
        )


class TrainIterator(_BadRecordLog):
  """Endless iterator of per-process numpy batches {'image': uint8 (b, H, W, 3), 'label': int32 (b,)}.

  The train step finishes the augmentation on the device (`vit_jax_stems.data.device_augment`).
  """

  def __init__(self, dataset: tf.data.Dataset, start_step: int):
    super().__init__()
    self.dataset = dataset
    self.step = start_step  # the step of the next batch
    self._it = iter(tfds.as_numpy(dataset))

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    batch = next(self._it)
    ok, ids = batch.pop('ok'), batch.pop('tfds_id')
    if not ok.all():
      self.record(ids[~ok], 'train')
      if not ok.any():
        raise RuntimeError(
          f'Every record of training batch {self.step} failed to decode: '
          f'{[i.decode() for i in ids]}. The dataset files are likely damaged; prepare them again.'
        )
    self.step += 1
    return batch


class EvalIterator(_BadRecordLog):
  """One pass of per-process numpy batches {'image' uint8, 'label' int32, 'mask' bool}; len() = batches."""

  def __init__(self, dataset: tf.data.Dataset, num_batches: int, num_examples: int):
    super().__init__()
    self.dataset = dataset
    self.num_batches = num_batches
    self.num_examples = (
      num_examples  # real examples of this process (masked-in count if no bad records)
    )
    self._it = iter(tfds.as_numpy(dataset))

  def __len__(self) -> int:
    return self.num_batches

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    batch = next(self._it)
    real, ids = batch.pop('real'), batch.pop('tfds_id')
    bad = real & ~batch['mask']
    if bad.any():
      self.record(ids[bad], 'eval')
    return batch


def make_train_iterator(
  config,
  *,
  global_batch_size: int,
  seed: int,
  start_step: int = 0,
  process_index: int | None = None,
  process_count: int | None = None,
) -> TrainIterator:
  """Per-process training batches continuing the stream an uninterrupted run sees at `start_step`."""
  ds = make_train_dataset(
    config,
    global_batch_size=global_batch_size,
    seed=seed,
    start_step=start_step,
    process_index=process_index,
    process_count=process_count,
  )
  return TrainIterator(ds, start_step)


def make_eval_iterator(
  config,
  split: str | None = None,
  *,
  global_batch_size: int,
  process_index: int | None = None,
  process_count: int | None = None,
) -> EvalIterator:
  """One exact pass over an eval split: same number of batches on every process, padding masked out."""
  ds, num_batches, num_examples = make_eval_dataset(
    config,
    split=split,
    global_batch_size=global_batch_size,
    process_index=process_index,
    process_count=process_count,
  )
  return EvalIterator(ds, num_batches, num_examples)
