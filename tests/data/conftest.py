"""Session fixtures for the data tests: the embedded mnist5k and cluttered_mnist5k and a small generated
ImageNet, prepared in tmp dirs."""

import os

import pytest

from vit_jax_stems import data
from vit_jax_stems.data import fake_imagenet

# Indices (in write order) of the truncated JPEGs in the generated ImageNet.
CORRUPT_TRAIN, CORRUPT_VAL = (5,), (2,)


@pytest.fixture(scope='session')
def mnist_dir(tmp_path_factory):
  """A data_dir where mnist5k has been prepared (by get_dataset_info, as a fresh machine would)."""
  data_dir = str(tmp_path_factory.mktemp('tfds_mnist'))
  config = data.default_config()
  config.data_dir = data_dir
  data.get_dataset_info(config)
  return data_dir


@pytest.fixture(scope='session')
def cluttered_dir(tmp_path_factory):
  """A data_dir where cluttered_mnist5k has been prepared (by get_dataset_info, on first use)."""
  data_dir = str(tmp_path_factory.mktemp('tfds_cluttered'))
  config = data.cluttered_config()
  config.data_dir = data_dir
  data.get_dataset_info(config)
  return data_dir


@pytest.fixture
def mnist_config(mnist_dir):
  config = data.default_config()
  config.data_dir = mnist_dir
  return config


@pytest.fixture(scope='session')
def imagenet(tmp_path_factory):
  """TFDS imagenet2012 prepared by TFDS's own builder from a generated ILSVRC2012 manual dir.

  6 classes x 3 train images, 8 validation images (labels from TFDS's validation_labels.txt), small
  JPEGs (80x60) to stay fast; one truncated JPEG in each split.
  """
  root = tmp_path_factory.mktemp('imagenet')
  manual_dir, data_dir = os.path.join(root, 'manual'), os.path.join(root, 'tfds')
  labels = fake_imagenet.write_manual_dir(
    manual_dir,
    num_classes=6,
    train_per_class=3,
    num_val=8,
    size=(80, 60),
    corrupt_train=CORRUPT_TRAIN,
    corrupt_val=CORRUPT_VAL,
  )
  fake_imagenet.prepare_imagenet(data_dir, manual_dir)
  return {'data_dir': data_dir, 'manual_dir': manual_dir, 'labels': labels}


@pytest.fixture
def imagenet_config(imagenet):
  config = data.paper_recipe_config('vitc')
  config.data_dir, config.manual_dir = imagenet['data_dir'], imagenet['manual_dir']
  config.image_size = 32
  config.shuffle_buffer = 64
  return config
