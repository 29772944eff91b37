"""Writes a PNG grid of augmented training images so a person can check the augmentations by eye.

  python -m vit_jax_stems.data.visualize --out grid.png [--name=mnist5k --data_dir=...] [--image_size=64]
  python -m vit_jax_stems.data.visualize --out grid.png --name=cluttered_mnist5k  # its first row: the raw 64x64 canvases

Training rows go through both halves of the augmentation: the host pipeline (uint8) and then the
train step's device half (`vit_jax_stems.data.device_augment`, run here on the CPU with JAX).

One row per setting, the same examples in every column (same seed): eval preprocessing; random
resized crop + flip; + RandAugment (rand-m9-mstd0.5-inc1); + AutoAugment v0; mixup only; CutMix only;
the full ConViT/DeiT recipe (with random erasing). Under each tile, the two largest target classes.
"""

import jax
import numpy as np
from absl import app, flags
from PIL import Image, ImageDraw

from vit_jax_stems import data
from vit_jax_stems.data import datasets, device_augment

_OUT = flags.DEFINE_string('out', 'grid.png', 'PNG file to write.')
_NAME = flags.DEFINE_string('name', 'mnist5k', 'TFDS dataset.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data_dir.')
_SIZE = flags.DEFINE_integer('image_size', 64, 'Image size.')
_COLS = flags.DEFINE_integer('cols', 8, 'Examples per row.')


def rows_of_configs(base):
  """(title, config, is_eval) per row."""

  def variant(title, **aug):
    config = base.copy_and_resolve_references()
    for key, value in aug.items():
      config.augment[key] = value
    return title, config, False

  plain = dict(
    flip=True,
    randaugment=None,
    autoaugment=False,
    mixup_alpha=0.0,
    cutmix_alpha=0.0,
    random_erasing_prob=0.0,
    pca_lighting_std=0.0,
    label_smoothing=0.0,
    area_min=0.25,
  )
  recipe = data.paper_recipe_config('convit').augment
  return [
    ('eval (resize + centre crop)', base, True),
    variant('crop + flip', **plain),
    variant('+ RandAugment m9 mstd0.5 inc1', **{**plain, 'randaugment': 'rand-m9-mstd0.5-inc1'}),
    variant(
      '+ AutoAugment v0 + PCA lighting', **{**plain, 'autoaugment': True, 'pca_lighting_std': 0.1}
    ),
    variant('mixup 0.8 only', **{**plain, 'mixup_alpha': 0.8}),
    variant('CutMix 1.0 only', **{**plain, 'cutmix_alpha': 1.0}),
    variant(
      'full ConViT recipe (+ erasing 0.25)',
      **{**{k: recipe[k] for k in recipe if k != 'repeated_augmentation'}, 'area_min': 0.25},
    ),
  ]


def to_uint8(images, config):
  """Normalised float images back to displayable uint8."""
  images = np.asarray(images) * np.array(config.std) + np.array(config.mean)
  return (np.clip(images, 0, 1) * 255).astype(np.uint8)


def train_batch(config, cols: int):
  """A training batch after the host and the device halves of the augmentation: (uint8 images, soft targets)."""
  batch = next(
    data.make_train_iterator(
      config, global_batch_size=cols, seed=0, process_index=0, process_count=1
    )
  )
  config = config.copy_and_resolve_references()
  config.augment.mix_group_size = cols
  augment = device_augment.DeviceAugment.from_config(
    config, num_classes=data.get_dataset_info(config).num_classes
  )
  images, targets = jax.jit(augment)(batch['image'], batch['label'], jax.random.key(0))
  return to_uint8(images, config), np.asarray(targets)


def make_grid(base, cols: int) -> Image.Image:
  size, label_h, title_w = base.image_size, 12, 200
  rows = rows_of_configs(base)
  grid = Image.new('RGB', (title_w + cols * (size + 4), len(rows) * (size + label_h + 6)), 'white')
  draw = ImageDraw.Draw(grid)
  for r, (title, config, is_eval) in enumerate(rows):
    y = r * (size + label_h + 6)
    draw.text((4, y + size // 2), title, fill='black')
    if is_eval:
      batch = next(
        data.make_eval_iterator(config, global_batch_size=cols, process_index=0, process_count=1)
      )
      images, labels = batch['image'], [f'{label}' for label in batch['label']]
    else:
      images, targets = train_batch(config, cols)
      labels = []
      for target in targets:
        top = np.argsort(-target)[:2]
        labels.append(' '.join(f'{c}:{target[c]:.2f}' for c in top))
    for c, image in enumerate(images):
      x = title_w + c * (size + 4)
      grid.paste(Image.fromarray(image), (x, y))
      draw.text((x, y + size), labels[c], fill='black')
  return grid


def main(argv):
  del argv
  # The embedded datasets' own settings (cluttered_mnist5k: the whole canvas, no crop).
  config = data.cluttered_config() if _NAME.value == 'cluttered_mnist5k' else data.default_config()
  config.name, config.data_dir, config.image_size = _NAME.value, _DATA_DIR.value, _SIZE.value
  if config.name not in datasets.EMBEDDED_DATASETS:
    config.eval_split = 'validation'
  data.get_dataset_info(config)
  make_grid(config, _COLS.value).save(_OUT.value)
  print(f'wrote {_OUT.value}')


if __name__ == '__main__':
  app.run(main)
