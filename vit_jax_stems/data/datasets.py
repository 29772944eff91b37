"""Finding a TFDS dataset, checking it is prepared, and the per-process share of a split.

Everything here runs before any compile, so that a missing dataset stops a run at once with a
message that says what to download or prepare and where. Nothing here downloads: the only datasets
prepared automatically are the embedded ones (`mnist5k`, `cluttered_mnist5k`), whose data ships
inside an installed package.
"""

import contextlib
import dataclasses
import difflib
import fcntl
import hashlib
import io
import json
import math
import os
from collections.abc import Callable

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from vit_jax_stems.data import cluttered_mnist5k, mnist5k  # noqa: F401  (register the builders)
from vit_jax_stems.data import config as data_config
from vit_jax_stems.data.info import DatasetInfo
from vit_jax_stems.data.tf_host import tf

# Datasets whose preparation needs no network (their builder reads files of an installed package).
EMBEDDED_DATASETS = ('mnist5k', 'cluttered_mnist5k')
# The datasets this project documents how to get: the embedded ones and ImageNet from its tars.
KNOWN_DATASETS = (*EMBEDDED_DATASETS, 'imagenet2012')


class DatasetNotReadyError(RuntimeError):
  """The dataset is unknown, not prepared in data_dir, or lacks a split or feature the config names."""


def resolve_data_dir(data_dir: str | None) -> str:
  """Explicit data_dir, else $TFDS_DATA_DIR, else ~/tensorflow_datasets (TFDS's own default)."""
  if data_dir:
    return data_dir if '://' in data_dir else os.path.expanduser(data_dir)
  return os.path.expanduser(os.environ.get('TFDS_DATA_DIR', '~/tensorflow_datasets'))


def imagenet_manual_dir(config) -> str:
  return config.manual_dir or os.path.join(resolve_data_dir(config.data_dir), 'downloads', 'manual')


def base_name(name: str) -> str:
  """'imagenet_v2/threshold-0.7:3.0.0' -> 'imagenet_v2' (TFDS's name/config:version)."""
  return name.split(':')[0].split('/')[0]


def _not_prepared_message(
  config, data_dir: str, data_dir_field: str = 'config.data.data_dir'
) -> str:
  base = base_name(config.name)
  if base == 'imagenet2012_real':  # TFDS's builder: ImageNet's validation tar + real.json
    manual = imagenet_manual_dir(config)
    return (
      f"Dataset 'imagenet2012_real' is not prepared in data_dir={data_dir!r}. Put "
      'ILSVRC2012_img_val.tar (6.3 GB, from https://image-net.org/download-images, needs an '
      f'account) in {manual!r} (or set config.data.manual_dir) and prepare it once; it also '
      'downloads the ReaL labels (real.json, 379 KiB, from GitHub):\n'
      f'   python -m vit_jax_stems.data.prepare --name=imagenet2012_real --data_dir={data_dir} '
      f'--manual_dir={manual}\n'
      f'or set {data_dir_field} to where it is already prepared.'
    )
  if base == 'imagenet2012':
    manual = imagenet_manual_dir(config)
    return (
      f"Dataset 'imagenet2012' is not prepared in data_dir={data_dir!r}.\n"
      '1. Download ILSVRC2012_img_train.tar (138 GB) and ILSVRC2012_img_val.tar (6.3 GB) from '
      'https://image-net.org/download-images (needs an account) and put both files, unextracted, in '
      f'{manual!r} (or set config.data.manual_dir).\n'
      '2. Prepare the TFDS records once (about 150 GB more, a few hours on one machine):\n'
      f'   python -m vit_jax_stems.data.prepare --name=imagenet2012 --data_dir={data_dir} '
      f'--manual_dir={manual}\n'
      '   (or `tfds build imagenet2012 --data_dir=... --manual_dir=...`). For a pod, prepare once on '
      'one machine into a gs:// bucket and point config.data.data_dir at it.'
    )
  return (
    f'Dataset {config.name!r} is not prepared in data_dir={data_dir!r}. Training never downloads; '
    'prepare it once on a machine with network access:\n'
    f'   python -m vit_jax_stems.data.prepare --name={config.name} --data_dir={data_dir}\n'
    f'or set {data_dir_field} to where it is already prepared.'
  )


def prepared_datasets(data_dir: str) -> list[str]:
  """Names of the datasets that have a directory in data_dir (prepared, or being prepared)."""
  try:
    entries = list(epath.Path(data_dir).iterdir())
  except OSError:  # data_dir does not exist (yet)
    return []
  hidden = ('.', 'downloads')
  return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith(hidden))


def _unknown_name_message(name: str, data_dir: str, name_field: str) -> str:
  names = dict.fromkeys([*KNOWN_DATASETS, *tfds.list_builders(with_community_datasets=False)])
  close = difflib.get_close_matches(name, list(names), n=3, cutoff=0.8)
  prepared = ', '.join(map(repr, prepared_datasets(data_dir))) or 'none'
  return (
    f'No dataset named {name!r}. Set {name_field} to one this project knows '
    f'({", ".join(map(repr, KNOWN_DATASETS))}; see vit_jax_stems/data/README.md), one prepared '
    f'in data_dir={data_dir!r} ({prepared}), or a name from '
    'https://www.tensorflow.org/datasets/catalog.'
    + (f' Did you mean {" or ".join(map(repr, close))}?' if close else '')
  )


def _builder(name: str, data_dir: str, name_field: str) -> tfds.core.DatasetBuilder:
  try:
    return tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    # `from None`: TFDS's own message lists every dataset it knows, about a thousand lines.
    raise DatasetNotReadyError(_unknown_name_message(name, data_dir, name_field)) from None


@contextlib.contextmanager
def _preparation_lock(data_dir: str, name: str):
  """Holds an exclusive lock per dataset in a local data_dir (none for remote ones such as gs://).

  TFDS prepares into a temporary directory and renames it into place; of two processes preparing
  the same dataset at once, the second's rename fails. The lock (fcntl.flock on a hidden file in
  data_dir, released by the kernel even if its holder dies) makes the second wait for the first.
  """
  if '://' in data_dir:
    yield
    return
  os.makedirs(data_dir, exist_ok=True)
  with open(os.path.join(data_dir, f'.{name}.prepare.lock'), 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


def prepare(
  name: str, data_dir: str, download_config=None, *, name_field: str = 'config.data.name'
) -> tfds.core.DatasetBuilder:
  """Downloads and prepares a dataset unless it is prepared, once however many processes ask at once.

  name_field: what the user sets to choose the dataset, for the unknown-name message.
  """
  builder = _builder(name, data_dir, name_field)
  if builder.is_prepared():
    return builder
  with _preparation_lock(data_dir, builder.name):
    # Another process may have prepared it while this one waited for the lock.
    builder = _builder(name, data_dir, name_field)
    if not builder.is_prepared():
      builder.download_and_prepare(download_config=download_config)
  return builder


def get_builder(
  config, *, name_field='config.data.name', data_dir_field='config.data.data_dir'
) -> tfds.core.DatasetBuilder:
  """The TFDS builder of config.name in config.data_dir, checked to be prepared.

  The embedded datasets (mnist5k, cluttered_mnist5k) are prepared on first use; every other
  dataset must already be prepared, otherwise DatasetNotReadyError explains how. The *_field
  arguments: what the user sets to choose the dataset and its data_dir, for the messages.
  """
  data_dir = resolve_data_dir(config.data_dir)
  builder = _builder(config.name, data_dir, name_field)
  if not builder.is_prepared():
    if builder.name in EMBEDDED_DATASETS:
      logging.info('Preparing embedded dataset %s in %s (no download).', builder.name, data_dir)
      builder = prepare(config.name, data_dir)
    else:
      raise DatasetNotReadyError(_not_prepared_message(config, data_dir, data_dir_field))
  return builder


def has_label_sets(builder: tfds.core.DatasetBuilder, config) -> bool:
  """Whether the label feature is a Sequence of ClassLabel: a set of correct classes per example
  (imagenet2012_real's `real_label`), which only evaluation reads."""
  features = builder.info.features
  feature = features[config.label_key] if config.label_key in features else None
  return isinstance(feature, tfds.features.Sequence) and isinstance(
    feature.feature, tfds.features.ClassLabel
  )


def check_features(builder: tfds.core.DatasetBuilder, config, *, allow_label_sets=False) -> int:
  """Checks image/label features exist and returns the number of classes. allow_label_sets:
  the label may also be a set of classes per example (has_label_sets; evaluation only)."""
  features = builder.info.features
  sets = allow_label_sets and has_label_sets(builder, config)
  label_kind = tfds.features.Sequence if sets else tfds.features.ClassLabel
  for key, kind in ((config.image_key, tfds.features.Image), (config.label_key, label_kind)):
    if key not in features or not isinstance(features[key], kind):
      raise DatasetNotReadyError(
        f'Dataset {builder.name!r} has no {kind.__name__} feature {key!r} (config.data.image_key '
        f'/ config.data.label_key); its features are {list(features.keys())}.'
      )
  label = features[config.label_key]
  return (label.feature if sets else label).num_classes


def split_name(split) -> str:
  """A split as the user wrote it: TFDS's per-process shares (`tfds.even_splits`,
  `tfds.split_for_jax_process`) show as their split, 'validation', and which share they are."""
  if isinstance(split, str):
    return repr(split)
  parent, index, count = (getattr(split, a, None) for a in ('split', 'index', 'count'))
  if isinstance(parent, str) and index is not None and count is not None:
    return f'{parent!r} (share {index + 1} of {count}, one per process)'
  return str(split)


def num_examples(builder: tfds.core.DatasetBuilder, split) -> int:
  """Examples in a split expression such as 'train', 'validation[:1000]' or 'train[10%:20%]'."""
  try:
    return builder.info.splits[split].num_examples
  except (KeyError, ValueError, AssertionError) as e:
    raise DatasetNotReadyError(
      f'Split {split_name(split)} not found in dataset {builder.name!r}; available splits: '
      f'{list(builder.info.splits.keys())}. Set config.data.train_split / config.data.eval_split.'
    ) from e


def get_dataset_info(config) -> DatasetInfo:
  """Checks that the dataset, both splits and the features exist; call it before compiling anything.

  num_train_examples is that of the class-balanced subset when config.train_fraction < 1.
  """
  fraction = train_fraction(config)
  builder = get_builder(config)
  num_classes = check_features(builder, config)
  if fraction < 1:
    num_train = len(train_subset(builder, config)[1])
  else:
    num_train = num_examples(builder, config.train_split)
  info = DatasetInfo(
    name=builder.name,
    data_dir=resolve_data_dir(config.data_dir),
    num_classes=num_classes,
    num_train_examples=num_train,
    num_eval_examples=num_examples(builder, config.eval_split),
    image_size=config.image_size,
    train_split=config.train_split,
    eval_split=config.eval_split,
  )
  for field, split, count in (
    ('train_split', info.train_split, info.num_train_examples),
    ('eval_split', info.eval_split, info.num_eval_examples),
  ):
    if count == 0:
      raise DatasetNotReadyError(
        f'Split {split!r} of dataset {info.name!r} is empty; change config.data.{field}.'
      )
  return info


# ------------------------------------------------------------------ Class-balanced train subsets
# config.train_fraction = f < 1 trains on the first floor(n_c * f) examples of each class c of the
# train split, in the order of their TFDS index: shard file by shard file, record by record (the
# index that 'train[a:b]' slices; TFDS shuffled the examples by a hash of their keys when it wrote
# them, so the order is fixed, the same on every machine, and unrelated to the class). P2's
# reference, convit `datasets.py` make_subsampled_dataset, takes the first int(n_c * f) files of
# each class in sorted file-name order (docs/references.md#experiment-protocols).


def train_fraction(config) -> float:
  """config.train_fraction, checked to be in (0, 1]."""
  problem = data_config.train_fraction_problem(config.train_fraction)
  if problem:
    raise DatasetNotReadyError(problem)
  return float(config.train_fraction)


def record_positions(tfds_ids: tf.Tensor, shard_offsets: np.ndarray) -> tf.Tensor:
  """TFDS index within its split of each record, from its tfds_id
  ('<name>-train.tfrecord-00003-of-01024__17': the shard's first index + 17). Readers interleave
  shard files, so the order records arrive in is not their index."""
  shard = tf.strings.to_number(
    tf.strings.regex_replace(tfds_ids, r'^.*-(\d+)-of-\d+__\d+$', r'\1'), tf.int64
  )
  index = tf.strings.to_number(tf.strings.regex_replace(tfds_ids, r'^.*__(\d+)$', r'\1'), tf.int64)
  return tf.gather(tf.constant(shard_offsets, tf.int64), shard) + index


def _shard_offsets(builder, name: str) -> np.ndarray:
  lengths = builder.info.splits[name].shard_lengths
  return np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)


_LABELS: dict[str, np.ndarray] = {}  # split_labels of this process, by cache file


def split_labels(builder, data_dir: str, name: str, label_key: str) -> np.ndarray:
  """Every label of the split `name` (a plain split such as 'train'), indexed by TFDS index.

  One pass over the records that parses the labels only (for ImageNet's train split: reading its
  ~140 GB once, no image decoded); the result goes to <data_dir>/.label_cache/, keyed by the
  split's shard lengths and bytes so that a re-prepared dataset is read again, and later runs
  load it. A data_dir that cannot be written (a read-only bucket) only loses the cache.
  """
  split = builder.info.splits[name]
  key = [builder.name, str(builder.version), name, label_key, list(split.shard_lengths)]
  key.append(int(split.num_bytes))
  digest = hashlib.sha1(json.dumps(key).encode()).hexdigest()[:16]
  path = epath.Path(data_dir) / '.label_cache' / f'{builder.name}-{name}-{label_key}-{digest}.npy'
  if str(path) in _LABELS:
    return _LABELS[str(path)]
  if path.exists():
    labels = np.load(io.BytesIO(path.read_bytes()))
  else:
    logging.info('Reading the labels of %s %s (once; cached in %s).', builder.name, name, path)
    ds = builder.as_dataset(
      split=name,
      shuffle_files=False,
      decoders=tfds.decode.PartialDecoding({label_key: True}),
      read_config=tfds.ReadConfig(add_tfds_id=True, try_autocache=False),
    )
    offsets = _shard_offsets(builder, name)
    ds = ds.batch(65536).map(lambda ex: (record_positions(ex['tfds_id'], offsets), ex[label_key]))
    labels = np.full(split.num_examples, -1, np.int64)
    for positions, values in tfds.as_numpy(ds):
      labels[positions] = values
    if (labels < 0).any():
      raise DatasetNotReadyError(
        f'{builder.name} {name}: {int((labels < 0).sum())} records missing from the label pass; '
        'the prepared files are damaged: prepare the dataset again.'
      )
    _write_cache(path, labels)
  _LABELS[str(path)] = labels
  return labels


def _write_cache(path: epath.Path, array: np.ndarray):
  buffer = io.BytesIO()
  np.save(buffer, array)
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f'.{path.name}.{os.getpid()}.tmp'
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)  # atomic locally: a concurrent reader sees the whole file or none
  except OSError as e:
    logging.warning('Could not cache the labels in %s (%s); each run reads them again.', path, e)


def class_balanced_prefix(labels: np.ndarray, fraction: float) -> np.ndarray:
  """Indices of the first floor(n_c * fraction) entries of each class c of `labels`, ascending.

  The floor has a 1e-9 tolerance: 0.29 * 100 is 28.999999999999996 in floating point and keeps 29.
  """
  _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
  quota = np.floor(counts * fraction + 1e-9).astype(np.int64)
  order = np.argsort(inverse, kind='stable')  # by class, TFDS order within each class
  rank = np.empty(len(labels), np.int64)
  rank[order] = np.arange(len(labels)) - np.repeat(np.cumsum(counts) - counts, counts)
  return np.flatnonzero(rank < quota[inverse])


def _one_range(builder, split) -> tuple[str, int, int]:
  """(split name, first index, end index) of a split expression of one range ('train[:90%]')."""
  num_examples(builder, split)  # a short message for a split that does not exist
  instructions = tfds.core.ReadInstruction.from_spec(split).to_absolute(builder.info.splits)
  if len(instructions) != 1:
    raise DatasetNotReadyError(
      f'config.data.train_fraction < 1 needs config.data.train_split to be one range of one split '
      f"(such as 'train' or 'train[:90%]'), not {split!r}."
    )
  (instruction,) = instructions
  end = instruction.to
  return (
    instruction.splitname,
    instruction.from_ or 0,
    builder.info.splits[instruction.splitname].num_examples if end is None else end,
  )


def train_subset(builder, config) -> tuple[str, np.ndarray]:
  """(split name, TFDS indices, ascending, of the examples of config.train_split that
  config.train_fraction keeps)."""
  name, first, end = _one_range(builder, config.train_split)
  labels = split_labels(builder, resolve_data_dir(config.data_dir), name, config.label_key)
  chosen = first + class_balanced_prefix(labels[first:end], train_fraction(config))
  if not len(chosen):
    raise DatasetNotReadyError(
      f'config.data.train_fraction={config.train_fraction} keeps no example of '
      f'{config.train_split!r}: every class has fewer than 1 / train_fraction examples; raise it.'
    )
  return name, chosen


@dataclasses.dataclass(frozen=True)
class SubsetShare:
  """One process's share of the train subset: read `split`, keep the records `keeps` says."""

  split: tfds.core.ReadInstruction  # the range of TFDS indices the share lies in
  num_examples: int
  keeps: Callable[[tf.Tensor], tf.Tensor]  # tfds_id -> bool


def train_subset_share(builder, config, process_index: int, process_count: int) -> SubsetShare:
  """Process `process_index`'s contiguous share of the subset's examples (sizes differ by at most
  one, as tfds.even_splits): only the range of records that holds it is read."""
  name, chosen = train_subset(builder, config)
  share = np.array_split(chosen, process_count)[process_index]
  if not len(share):
    raise DatasetNotReadyError(
      f'Process {process_index} of {process_count} gets no example of the '
      f'{len(chosen)} that config.data.train_fraction keeps; raise it.'
    )
  first, end = int(share[0]), int(share[-1]) + 1
  keep = np.zeros(end - first, bool)
  keep[share - first] = True
  offsets = _shard_offsets(builder, name)
  return SubsetShare(
    split=tfds.core.ReadInstruction(name, from_=first, to=end, unit='abs'),
    num_examples=len(share),
    keeps=lambda tfds_id: tf.gather(keep, record_positions(tfds_id, offsets) - first),
  )


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
      f'The global batch {global_batch_size} (config.batch_size, config.eval_batch_size) must be a '
      f'positive multiple of the number of processes ({process_count}): each process feeds '
      'batch / process_count examples.'
    )
  return global_batch_size // process_count


def process_splits(split: str, process_count: int) -> list[str]:
  """Contiguous, disjoint sub-splits covering `split`, one per process (sizes differ by at most 1)."""
  return tfds.even_splits(split, n=process_count, drop_remainder=False)


def eval_num_batches(builder, split: str, local_batch: int, process_count: int) -> int:
  """Batches every process yields for one eval pass: enough for the largest per-process share."""
  largest = max(num_examples(builder, s) for s in process_splits(split, process_count))
  return max(1, math.ceil(largest / local_batch))


__all__ = ['DatasetInfo', 'DatasetNotReadyError', 'get_builder', 'get_dataset_info', 'prepare']
