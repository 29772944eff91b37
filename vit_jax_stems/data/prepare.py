"""Prepares a TFDS dataset once, before training (training itself never downloads).

  python -m vit_jax_stems.data.prepare --name=imagenet2012 --data_dir=~/tensorflow_datasets \
      --manual_dir=~/tensorflow_datasets/downloads/manual
  python -m vit_jax_stems.data.prepare --name=mnist5k   # embedded, offline
Other TFDS datasets (cifar10, ...) are downloaded by TFDS here, so run it where there is network.
"""

import tensorflow_datasets as tfds
from absl import app, flags

from vit_jax_stems.data import config as data_config
from vit_jax_stems.data import datasets

_NAME = flags.DEFINE_string('name', 'mnist5k', 'TFDS dataset name, e.g. imagenet2012.')
_DATA_DIR = flags.DEFINE_string(
  'data_dir', None, 'Where to write the records (default $TFDS_DATA_DIR or ~/tensorflow_datasets).'
)
_MANUAL_DIR = flags.DEFINE_string(
  'manual_dir', None, 'imagenet2012: dir holding ILSVRC2012_img_{train,val}.tar.'
)


def main(argv):
  del argv
  config = data_config.default_config()
  config.name, config.data_dir, config.manual_dir = _NAME.value, _DATA_DIR.value, _MANUAL_DIR.value
  data_dir = datasets.resolve_data_dir(config.data_dir)
  download_config = tfds.download.DownloadConfig(manual_dir=datasets.imagenet_manual_dir(config))
  builder = datasets.prepare(config.name, data_dir, download_config, name_field='--name')
  splits = ', '.join(f'{k} {v.num_examples}' for k, v in sorted(builder.info.splits.items()))
  print(f'{builder.name} {builder.version} prepared in {data_dir}: {splits} examples.')


if __name__ == '__main__':
  app.run(main)
