"""Writes a small ILSVRC2012 manual-download directory of generated JPEGs, for tests and the benchmark.

Same structure as the real download, so TFDS's own `imagenet2012` builder prepares it:
  ILSVRC2012_img_train.tar  - one tar per class, <wnid>.tar, holding <wnid>_<i>.JPEG
  ILSVRC2012_img_val.tar    - flat ILSVRC2012_val_%08d.JPEG; TFDS labels the sorted names with the
                              lines of its bundled validation_labels.txt, so image i gets line i.
Images are about ImageNet's size (500x375 by default) and JPEG quality 90, with content at several
scales so that they compress (and decode) like photos rather than like flat colour or pure noise.

ImageNet's variants (`prepare_imagenet2012_real`, `prepare_variant`) are prepared by their own
TFDS builders too, offline: the builder's download is answered with generated files in the layout
of the archive it would fetch.
"""

import io
import json
import os
import tarfile
import zipfile
from unittest import mock

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


def prepare_imagenet2012_real(data_dir: str, manual_dir: str, real_labels: list[list[int]]):
  """TFDS's imagenet2012_real builder on the ILSVRC2012_img_val.tar of `manual_dir`
  (write_manual_dir) with `real_labels`, one list of ImageNet-1k indices per validation image in
  file-name order (the format of reassessed-imagenet's real.json; a list may be empty)."""
  path = os.path.join(manual_dir, 'real.json')
  with open(path, 'w') as f:
    json.dump(real_labels, f)
  with mock.patch.object(tfds.download.DownloadManager, 'download', lambda self, url: path):
    builder = tfds.builder('imagenet2012_real', data_dir=data_dir)
    builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
    )
  return builder


# Folder of the downloaded archive that each variant's TFDS builder reads, per class:
# '{wnid}' or '{index}' (its ImageNet-1k index); see each builder's _generate_examples.
_VARIANT_LAYOUTS = {
  'imagenet_a': 'imagenet-a/{wnid}',
  'imagenet_r': 'imagenet-r/{wnid}',
  'imagenet_v2': 'imagenetv2-matched-frequency-format-val/{index}',  # its default config
  'imagenet_sketch': 'sketch/{wnid}',  # inside a zip that the builder iterates
}


def prepare_variant(
  name: str,
  data_dir: str,
  root: str,
  classes: list[int],
  *,
  per_class: int = 2,
  size: tuple[int, int] = (40, 30),
  seed: int = 0,
):
  """TFDS's own builder of `name` (a key of _VARIANT_LAYOUTS) on `per_class` generated JPEGs of
  each of `classes` (ImageNet-1k indices), written under `root` as the downloaded archive holds
  them. Returns the builder."""
  rng = np.random.RandomState(seed)
  wnids = _tfds_lines('labels.txt')
  files = {}
  for index in classes:
    folder = _VARIANT_LAYOUTS[name].format(wnid=wnids[index], index=index)
    for i in range(per_class):  # unique file names: imagenet_a keys examples by file name
      image = synthetic_photo(rng, size[0], size[1], index)
      files[f'{folder}/{wnids[index]}_{i}.JPEG'] = jpeg_bytes(image)
  if name == 'imagenet_sketch':
    path = os.path.join(root, 'ImageNet-Sketch.zip')
    os.makedirs(root, exist_ok=True)
    with zipfile.ZipFile(path, 'w') as archive:
      for file_name, payload in files.items():
        archive.writestr(file_name, payload)
    method = 'download'
  else:
    for file_name, payload in files.items():
      os.makedirs(os.path.dirname(os.path.join(root, file_name)), exist_ok=True)
      with open(os.path.join(root, file_name), 'wb') as f:
        f.write(payload)
    path, method = root, 'download_and_extract'
  with mock.patch.object(tfds.download.DownloadManager, method, lambda self, url: path):
    builder = tfds.builder(name, data_dir=data_dir)
    builder.download_and_prepare()
  return builder
