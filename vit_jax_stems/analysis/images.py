"""Images to analyse: a dataset's eval split, an image file, or an array.

Each source returns `Images(model_input, display)`: `model_input` normalised as the model was
trained ((x/255 - mean) / std, NHWC float32) and `display` the same pixels in [0, 1] for plots.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np


@dataclasses.dataclass
class Images:
  model_input: np.ndarray  # (B, S, S, 3) float32, normalised
  display: np.ndarray  # (B, S, S, 3) float32 in [0, 1]
  source: str


def normalise(images01: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
  return (np.asarray(images01, np.float32) - np.asarray(mean, np.float32)) / np.asarray(
    std, np.float32
  )


def from_array(
  images, mean: Sequence[float], std: Sequence[float], source: str = 'array'
) -> Images:
  """uint8 images (0-255) or floats in [0, 1], (B, S, S, 3) or (B, S, S, 1) grey."""
  images = np.asarray(images)
  if images.ndim == 3:
    images = images[None]
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f'images must be (batch, size, size, 3 or 1); got {images.shape}.')
  if images.shape[-1] == 1:
    images = np.repeat(images, 3, axis=-1)
  display = (
    images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
  )
  return Images(normalise(display, mean, std), display, source)


def from_file(
  path: str,
  image_size: int,
  mean: Sequence[float],
  std: Sequence[float],
  *,
  crop_pct: float = 0.875,
) -> Images:
  """One image file, resized as the eval pipeline does: shorter side to image_size / crop_pct
  (bicubic, antialiased), centre crop image_size."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  with Image.open(path) as img:
    img = img.convert('RGB')
    short = round(image_size / crop_pct)
    w, h = img.size
    scale = short / min(w, h)
    img = img.resize(
      (max(image_size, round(w * scale)), max(image_size, round(h * scale))), Image.BICUBIC
    )
    w, h = img.size
    left, top = (w - image_size) // 2, (h - image_size) // 2
    img = img.crop((left, top, left + image_size, top + image_size))
    pixels = np.asarray(img, np.uint8)
  return from_array(pixels, mean, std, source=path)


def from_eval_split(data_config, num_images: int) -> Images:
  """The first `num_images` examples of the config's eval split (the trainer's eval pipeline)."""
  from vit_jax_stems import data  # pylint: disable=g-import-not-at-top  (imports tensorflow)

  iterator = data.make_eval_iterator(
    data_config, global_batch_size=num_images, process_index=0, process_count=1
  )
  batch = next(iter(iterator))
  images = batch['image'][batch['mask']]  # uint8, normalised here as the eval step does
  if len(images) == 0:
    raise ValueError(f'The eval split of {data_config.name!r} gave no images.')
  return from_array(
    images,
    data_config.mean,
    data_config.std,
    source=f'{data_config.name}:{data_config.eval_split}[:{len(images)}]',
  )
