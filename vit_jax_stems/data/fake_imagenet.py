"""Writes a small ILSVRC2012 manual-download directory of generated JPEGs, for tests and the benchmark.

Same structure as the real download, so TFDS's own `imagenet2012` builder prepares it:
  ILSVRC2012_img_train.tar  - one tar per class, <wnid>.tar, holding <wnid>_<i>.JPEG
  ILSVRC2012_img_val.tar    - flat ILSVRC2012_val_%08d.JPEG; TFDS labels the sorted names with the
                              lines of its bundled validation_labels.txt, so image i gets line i.
Images are about ImageNet's size (500x375 by default) and JPEG quality 90, with content at several
scales so that they compress (and decode) like photos rather than like flat colour or pure noise.
"""

import io
import os
import tarfile

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from vit_jax_stems.data import tf_host  # noqa: F401  (GPUs hidden from TensorFlow before TFDS ops)


def _tfds_lines(name: str) -> list[str]:
  with open(os.fspath(tfds.core.tfds_path(f'datasets/imagenet2012/{name}'))) as f:
    return f.read().strip().splitlines()


def synthetic_photo(
  rng: np.random.RandomState, width: int, height: int, class_index: int
) -> np.ndarray:
  """uint8 (height, width, 3): class-tinted smooth blobs plus edges and fine texture."""
  image = np.zeros((height, width, 3), np.float32)
  for cells, amplitude in ((3, 90.0), (12, 45.0), (48, 25.0)):
    coarse = rng.uniform(-1, 1, (cells, max(2, cells * width // height), 3)).astype(np.float32)
    layer = Image.fromarray(((coarse + 1) * 127.5).astype(np.uint8)).resize(
      (width, height), Image.BICUBIC
    )
    image += (np.asarray(layer, np.float32) / 127.5 - 1) * amplitude
  tint = np.array(
    [(class_index * 97) % 256, (class_index * 57 + 80) % 256, (class_index * 31 + 160) % 256]
  )
  image += tint * 0.5 + 64 + rng.normal(0, 12, image.shape)
  return np.clip(image, 0, 255).astype(np.uint8)


def jpeg_bytes(image: np.ndarray, quality: int = 90) -> bytes:
  out = io.BytesIO()
  Image.fromarray(image).save(out, format='JPEG', quality=quality)
  return out.getvalue()


def _add(tar: tarfile.TarFile, name: str, payload: bytes):
  info = tarfile.TarInfo(name)
  info.size = len(payload)
  tar.addfile(info, io.BytesIO(payload))


def write_manual_dir(
  manual_dir: str,
  *,
  num_classes: int = 3,
  train_per_class: int = 4,
  num_val: int = 6,
  size: tuple[int, int] = (500, 375),
  quality: int = 90,
  seed: int = 0,
  corrupt_train: tuple[int, ...] = (),
  corrupt_val: tuple[int, ...] = (),
  num_train: int | None = None,
) -> dict:
  """Writes the two tars; returns {'train': {file_name: label}, 'validation': {file_name: label}}.

  Labels are indices into TFDS's labels.txt (the ClassLabel order). Train classes are those of the
  first num_val validation labels, topped up from labels.txt to num_classes. corrupt_train /
  corrupt_val: indices (in write order) of images written truncated to half their bytes.
  num_train: if given, overrides train_per_class to spread about this many images over the classes.
  """
  os.makedirs(manual_dir, exist_ok=True)
  rng = np.random.RandomState(seed)
  wnids = _tfds_lines('labels.txt')
  val_wnids = _tfds_lines('validation_labels.txt')[:num_val]
  classes = sorted(set(val_wnids))
  classes += [w for w in wnids if w not in classes][: max(0, num_classes - len(classes))]
  if num_train is not None:
    train_per_class = max(1, -(-num_train // len(classes)))

  def image_for(wnid: str, index: int, truncate: bool) -> bytes:
    width, height = (
      size if rng.rand() < 0.75 else size[::-1]
    )  # some portrait images, as in ImageNet
    payload = jpeg_bytes(synthetic_photo(rng, width, height, wnids.index(wnid)), quality)
    return payload[: len(payload) // 2] if truncate else payload

  labels = {'train': {}, 'validation': {}}
  counter = 0
  with tarfile.open(os.path.join(manual_dir, 'ILSVRC2012_img_train.tar'), 'w') as train_tar:
    for wnid in classes:
      inner = io.BytesIO()
      with tarfile.open(fileobj=inner, mode='w') as class_tar:
        for i in range(train_per_class):
          name = f'{wnid}_{i}.JPEG'
          _add(class_tar, name, image_for(wnid, i, counter in corrupt_train))
          labels['train'][name] = wnids.index(wnid)
          counter += 1
      _add(train_tar, f'{wnid}.tar', inner.getvalue())
  with tarfile.open(os.path.join(manual_dir, 'ILSVRC2012_img_val.tar'), 'w') as val_tar:
    for i, wnid in enumerate(val_wnids):
      name = f'ILSVRC2012_val_{i + 1:08d}.JPEG'
      _add(val_tar, name, image_for(wnid, i, i in corrupt_val))
      labels['validation'][name] = wnids.index(wnid)
  return labels


def prepare_imagenet(data_dir: str, manual_dir: str):
  """Runs TFDS's imagenet2012 builder on a manual dir (offline: nothing is downloaded)."""
  builder = tfds.builder('imagenet2012', data_dir=data_dir)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  return builder
