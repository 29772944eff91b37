"""cluttered_mnist5k: deterministic bytes, mnist5k's split and labels, clutter from the same split."""

import os

import numpy as np
import tensorflow_datasets as tfds

from vit_jax_stems import data
from vit_jax_stems.data import cluttered_mnist5k, datasets, mnist5k


def _examples(data_dir, split):
  builder = tfds.builder('cluttered_mnist5k', data_dir=data_dir)
  return list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)))


def test_two_preparations_write_the_same_bytes(cluttered_dir, tmp_path):
  datasets.prepare('cluttered_mnist5k', str(tmp_path))
  for split in ('train', 'test'):
    name = f'cluttered_mnist5k-{split}.tfrecord-00000-of-00001'
    first, second = (
      open(os.path.join(d, 'cluttered_mnist5k', '1.0.0', name), 'rb').read()
      for d in (cluttered_dir, str(tmp_path))
    )
    assert len(first) > 1_000_000 and first == second


def test_images_are_the_composed_digits_with_their_labels(cluttered_dir):
  config = data.cluttered_config()
  config.data_dir = cluttered_dir
  info = data.get_dataset_info(config)
  assert (info.num_classes, info.num_train_examples, info.num_eval_examples) == (10, 4000, 1000)
  digits, labels = mnist5k.load_digits()
  for split, indices in mnist5k.split_indices().items():
    # Every example is compose(i) of one digit i of the split, labelled as that digit.
    expected = {}
    for i in indices:
      expected[cluttered_mnist5k.compose(i, indices, digits)[0].tobytes()] = int(labels[i])
    examples = _examples(cluttered_dir, split)
    assert len(examples) == len(indices) == len(expected)
    for ex in examples:
      image = ex['image']
      assert image.shape == (64, 64, 3) and image.dtype == np.uint8
      np.testing.assert_array_equal(image[..., 0], image[..., 1])  # grey replicated to RGB
      assert expected.pop(image[..., 0].tobytes()) == int(ex['label'])
    assert not expected


def test_clutter_comes_from_other_digits_of_the_same_split():
  digits, _ = mnist5k.load_digits()
  split = mnist5k.split_indices()
  for name, indices in split.items():
    members = set(indices.tolist())
    for i in indices:
      image, parts = cluttered_mnist5k.compose(i, indices, digits)
      digit, *clutter = parts
      assert digit['source'] == i and len(clutter) == cluttered_mnist5k.NUM_CLUTTER
      sources = {p['source'] for p in clutter}
      assert i not in sources and sources <= members, name  # never a test digit in train
      for part in parts:  # every part lies inside the canvas
        assert all(0 <= a and a + part['side'] <= 64 for a in part['at'])
      assert image.max() > 0


def test_the_digit_is_placed_whole_at_a_random_size_and_position():
  digits, _ = mnist5k.load_digits()
  indices = mnist5k.split_indices()['train'][:200]
  placed = [cluttered_mnist5k.compose(i, indices, digits)[1][0] for i in indices]
  sides = {p['side'] for p in placed}
  corners = {p['at'] for p in placed}
  assert min(sides) == 24 and max(sides) == 32 and len(corners) > 150
  # Resizing to 28 is the identity; bilinear keeps a constant image constant.
  np.testing.assert_array_equal(cluttered_mnist5k.resize_bilinear(digits[0], 28), digits[0])
  flat = np.full((28, 28), 200, np.uint8)
  assert (cluttered_mnist5k.resize_bilinear(flat, 24) == 200).all()
