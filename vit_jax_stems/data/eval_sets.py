"""Evaluation sets besides the run's own split (`config.evals`), ImageNet's variants among them.

Each evaluation set reads with the run's data config (image size, crop, mean/std,
interpolation) and its own dataset, split and data_dir. How a set is scored follows from its
TFDS builder (docs/references.md#imagenets-variants):
  * the label feature: a ClassLabel (one class per image), or a Sequence of ClassLabel, a set
    of correct classes per image (`imagenet2012_real`'s `real_label`): top-1 is correct when the
    argmax is in the set, and images with an empty set are not counted (Beyer et al. 2020);
  * the classes predicted among: all of them, or for ImageNet-A and ImageNet-R only the 200
    classes their split holds (their labels are ImageNet-1k indices; Hendrycks et al. score the
    argmax over those classes' logits).
"""

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from vit_jax_stems.data import datasets


@dataclasses.dataclass(frozen=True)
class Variant:
  """How one of ImageNet's variants stores its labels (its TFDS builder's features)."""

  image_key: str = 'image'
  label_key: str = 'label'
  # Scored over the classes that occur in its split: the builders label each image with the
  # ImageNet-1k index of its folder's WordNet id, one folder per class of the 200.
  classes_of_split: bool = False


# TFDS builder name -> Variant. The builders' features and splits: docs/references.md#imagenets-variants.
VARIANTS = {
  'imagenet_v2': Variant(),
  'imagenet2012_real': Variant(label_key='real_label'),
  'imagenet_a': Variant(classes_of_split=True),
  'imagenet_r': Variant(classes_of_split=True),
  'imagenet_sketch': Variant(),
}


@dataclasses.dataclass(frozen=True)
class EvalSetInfo:
  """What an evaluator needs to know before it compiles its step."""

  name: str  # the TFDS builder
  split: str
  num_classes: int
  num_examples: int
  classes: tuple[int, ...] | None  # the classes predicted among; None: all of them


def eval_data_config(data_cfg, *, dataset: str, split: str, data_dir: str | None = None):
  """A copy of the run's data config that reads `split` of `dataset` (from `data_dir`, else the
  run's data_dir) with a variant's own features; everything else is the run's."""
  config = data_cfg.copy_and_resolve_references()
  config.name, config.eval_split = dataset, split
  if data_dir:
    config.data_dir = data_dir
  variant = VARIANTS.get(datasets.base_name(dataset))
  if variant:
    config.image_key, config.label_key = variant.image_key, variant.label_key
  return config


def get_eval_set_info(config, *, where: str, name_field: str, data_dir_field: str) -> EvalSetInfo:
  """Checks that `config` (from eval_data_config) names a prepared dataset with its split and
  label; `where` names the config entry in the messages, the *_field what the user sets to
  change its dataset or data_dir. Call it before compiling anything."""
  data_dir = datasets.resolve_data_dir(config.data_dir)
  try:
    builder = datasets.get_builder(config, name_field=name_field, data_dir_field=data_dir_field)
    num_classes = datasets.check_features(builder, config, allow_label_sets=True)
  except datasets.DatasetNotReadyError as e:
    raise datasets.DatasetNotReadyError(f'{where}: {e}') from None
  try:
    num_examples = builder.info.splits[config.eval_split].num_examples
  except (KeyError, ValueError, AssertionError):
    num_examples = None
  if not num_examples:
    raise datasets.DatasetNotReadyError(
      f'{where}: split {config.eval_split!r} of dataset {builder.name!r} in '
      f'data_dir={data_dir!r} is missing or empty; its splits: '
      f'{sorted(builder.info.splits.keys())}.'
    )
  classes = None
  if VARIANTS.get(builder.name, Variant()).classes_of_split:
    classes = tuple(int(c) for c in classes_of_split(builder, config))
  return EvalSetInfo(
    name=builder.name,
    split=config.eval_split,
    num_classes=num_classes,
    num_examples=num_examples,
    classes=classes,
  )


def classes_of_split(builder, config) -> np.ndarray:
  """The classes that occur in the whole split(s) that config.eval_split reads ('test' for
  'test[:100]'), ascending: one pass over the labels, cached in <data_dir>/.label_cache/."""
  instructions = tfds.core.ReadInstruction.from_spec(config.eval_split)
  names = sorted({i.splitname for i in instructions.to_absolute(builder.info.splits)})
  data_dir = datasets.resolve_data_dir(config.data_dir)
  labels = [datasets.split_labels(builder, data_dir, n, config.label_key) for n in names]
  return np.unique(np.concatenate(labels))
