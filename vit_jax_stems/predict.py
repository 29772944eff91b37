"""Inference from a weights directory: top-k classes for image files or a preprocessed batch.

  python -m vit_jax_stems.predict --arch MODEL --weights DIR IMAGE [IMAGE ...] [--top_k 5]
  python -m vit_jax_stems.predict --arch MODEL --weights DIR --npy BATCH.npy [--save_logits OUT.npy]
  python -m vit_jax_stems.predict --arch MODEL --weights DIR IMAGE ... --features OUT.npy
      [--image_size N]

Image files get the model's eval preprocessing, the one its reference evaluates with (ModelSpec
fields): resize the shorter side to floor(image_size / eval_crop_pct) with the spec's interpolation
(pycls: 256 bilinear; timm ConViT: 256 bicubic, for 224), centre crop image_size, scale to [0, 1],
subtract mean and divide by std (ImageNet RGB). PIL and numpy only: no tensorflow, no torch.
`--npy` takes an already preprocessed float32 batch in NHWC layout.

Class names: the weights directory's labels.txt when present; otherwise, for 1000 classes, the
ImageNet-1k names of vit_jax_stems/imagenet_classes.txt (made by tools/make_imagenet_classes.py);
otherwise class indices.

`--features OUT.npy` also writes the pre-logit embeddings, (batch, hidden_size) float32 in the
input order: the final LayerNorm's output at the class token, the head's input (`out['pre_logits']`
of the model), for linear probes and retrieval outside this project. `--image_size` runs at
another input size, the position embedding resampled (`weights.load_weights`).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from vit_jax_stems import weights as weights_lib

IMAGENET_CLASSES = os.path.join(os.path.dirname(__file__), 'imagenet_classes.txt')
_PIL_INTERPOLATION = {'bilinear': Image.BILINEAR, 'bicubic': Image.BICUBIC}


def preprocess_image(image: Image.Image, spec) -> np.ndarray:
  """One PIL image -> (image_size, image_size, 3) float32, the spec's eval preprocessing."""
  size = spec.image_size
  scale = math.floor(size / spec.eval_crop_pct)  # timm transforms_factory; pycls 224 -> 256
  image = image.convert('RGB')
  width, height = image.size
  if width <= height:  # shorter side -> scale, keep the aspect ratio (torchvision Resize(int))
    new_size = (scale, int(scale * height / width))
  else:
    new_size = (int(scale * width / height), scale)
  if new_size != image.size:
    image = image.resize(new_size, _PIL_INTERPOLATION[spec.interpolation])
  width, height = image.size
  left = round((width - size) / 2.0)  # torchvision / timm CenterCrop rounding
  top = round((height - size) / 2.0)
  image = image.crop((left, top, left + size, top + size))
  x = np.asarray(image, dtype=np.float32) / 255.0
  return (x - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)


def load_images(paths: Sequence[str], spec) -> np.ndarray:
  batch = []
  for path in paths:
    with Image.open(path) as image:
      batch.append(preprocess_image(image, spec))
  return np.stack(batch)


def load_npy_batch(path: str, spec) -> np.ndarray:
  batch = np.load(path)
  size = spec.image_size
  if batch.ndim == 3:
    batch = batch[None]
  if batch.ndim != 4 or batch.shape[1:] != (size, size, 3):
    hint = (
      ' (that looks like NCHW; transpose to NHWC)'
      if batch.ndim == 4 and batch.shape[1] == 3
      else ''
    )
    raise ValueError(
      f'--npy {path!r} has shape {batch.shape}; this model wants a preprocessed NHWC float32 batch '
      f'of shape (batch, {size}, {size}, 3){hint}.'
    )
  return batch.astype(np.float32)


def class_names(weights_dir: str, num_classes: int) -> list[str] | None:
  names = weights_lib.read_class_names(weights_dir)
  if names is not None:
    return names
  if num_classes == 1000:
    with open(IMAGENET_CLASSES) as f:
      return [line.rstrip('\n').split('\t', 1)[1] for line in f]
  return None


def logits_for(model, variables, batch: np.ndarray, batch_size: int = 64) -> np.ndarray:
  """Eval-mode logits (float32) in chunks of `batch_size`; one compile per chunk shape."""
  return logits_and_features(model, variables, batch, batch_size)[0]


def logits_and_features(model, variables, batch: np.ndarray, batch_size: int = 64):
  """(logits (B, classes), pre-logit features (B, hidden_size)), float32, eval mode."""

  def forward(v, x):
    logits, out = model.apply(v, x, train=False)
    return logits, out['pre_logits'].astype(jnp.float32)

  apply = jax.jit(forward)
  chunks = [
    jax.device_get(apply(variables, jnp.asarray(batch[i : i + batch_size])))
    for i in range(0, len(batch), batch_size)
  ]
  logits, features = (np.concatenate(part).astype(np.float32) for part in zip(*chunks))
  return logits, features


def format_top_k(
  logits: np.ndarray, labels: Sequence[str], names: Sequence[str] | None, k: int
) -> str:
  probs = np.asarray(jax.nn.softmax(jnp.asarray(logits), axis=-1))
  k = min(k, logits.shape[-1])
  lines = []
  for label, p in zip(labels, probs):
    lines.append(f'{label}:')
    for rank, idx in enumerate(np.argsort(-p, kind='stable')[:k], 1):
      name = names[idx] if names is not None else f'class {idx}'
      lines.append(f'  {rank}. {p[idx]:.4f}  [{idx}] {name}')
  return '\n'.join(lines)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(
    prog='python -m vit_jax_stems.predict',
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument('--arch', required=True, help='model name; must match the weights directory')
  parser.add_argument(
    '--weights', required=True, help='directory written by convert / save_weights'
  )
  parser.add_argument('images', nargs='*', help='image files (any format PIL reads)')
  parser.add_argument('--npy', help='preprocessed NHWC float32 batch instead of image files')
  parser.add_argument('--top_k', type=int, default=5)
  parser.add_argument('--save_logits', help='write the (batch, classes) float32 logits here')
  parser.add_argument(
    '--features', help='write the (batch, hidden_size) float32 pre-logit embeddings here'
  )
  parser.add_argument('--batch_size', type=int, default=64)
  parser.add_argument(
    '--image_size',
    type=int,
    default=None,
    help="run at this input size (default: the weights'); the position embedding is resampled "
    'to its token grid (bicubic, as timm resample_abs_pos_embed)',
  )
  args = parser.parse_args(argv)
  if bool(args.images) == bool(args.npy):
    parser.error('give image files or --npy BATCH.npy (one of the two)')
  if args.top_k < 1:
    parser.error('--top_k must be at least 1')
  try:
    meta = weights_lib.read_model_json(args.weights)
    if meta['arch'] != args.arch:
      raise ValueError(f'--arch {args.arch} but {args.weights!r} holds {meta["arch"]} weights.')
    model, variables = weights_lib.load_weights(args.weights, image_size=args.image_size)
    if args.npy:
      batch = load_npy_batch(args.npy, model.spec)
      labels = [f'{args.npy}[{i}]' for i in range(len(batch))]
    else:
      batch, labels = load_images(args.images, model.spec), list(args.images)
  except (ValueError, FileNotFoundError, OSError) as e:
    sys.exit(f'predict: {e}')
  logits, features = logits_and_features(model, variables, batch, args.batch_size)
  if args.save_logits:
    np.save(args.save_logits, logits)
  if args.features:
    np.save(args.features, features)
  print(format_top_k(logits, labels, class_names(args.weights, model.spec.num_classes), args.top_k))


if __name__ == '__main__':
  main()
