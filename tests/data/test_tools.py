"""The visual check and the benchmark run end to end (slow: many pipelines are traced)."""

import numpy as np
import pytest
from PIL import Image

from vit_jax_stems.data import visualize


@pytest.mark.slow
def test_visualize_writes_a_grid(mnist_config, tmp_path):
  mnist_config.image_size = 32
  grid = visualize.make_grid(mnist_config, cols=4)
  path = tmp_path / 'grid.png'
  grid.save(path)
  image = np.asarray(Image.open(path))
  assert image.shape[0] == 7 * (32 + 18) and image.std() > 10
