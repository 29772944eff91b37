"""`DatasetInfo`, in a module of its own so that it imports no TensorFlow: `datasets` fills it
from TFDS, and a benchmark on synthetic batches (`python -m vit_jax_stems.sweep.bench
--num_classes`) states one without reading any dataset, as on an accelerator image without
TensorFlow."""

import dataclasses


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
