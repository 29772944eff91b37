"""TFDS imagenet2012 built by TFDS's own builder from a generated ILSVRC2012 tar layout, read through the pipeline;
truncated JPEGs are skipped, counted and named."""

import numpy as np
import tensorflow_datasets as tfds

from tests.data.conftest import CORRUPT_TRAIN, CORRUPT_VAL
from vit_jax_stems import data


def _ids_by_file_name(data_dir, split):
  builder = tfds.builder('imagenet2012', data_dir=data_dir)
  ds = builder.as_dataset(
    split=split,
    decoders={'image': tfds.decode.SkipDecoding()},
    read_config=tfds.ReadConfig(add_tfds_id=True),
  )
  return {
    ex['file_name'].decode(): (ex['tfds_id'].decode(), int(ex['label'])) for ex in tfds.as_numpy(ds)
  }


def test_tfds_labels_follow_the_tar_layout(imagenet, imagenet_config):
  info = data.get_dataset_info(imagenet_config)
  assert (info.num_classes, info.num_train_examples, info.num_eval_examples) == (
    1000,
    len(imagenet['labels']['train']),
    8,
  )
  for split in ('train', 'validation'):
    found = _ids_by_file_name(imagenet['data_dir'], split)
    assert {name: label for name, (_, label) in found.items()} == imagenet['labels'][split]


def test_eval_counts_good_images_and_names_the_truncated_one(imagenet, imagenet_config):
  bad_name = sorted(imagenet['labels']['validation'])[CORRUPT_VAL[0]]
  bad_id = _ids_by_file_name(imagenet['data_dir'], 'validation')[bad_name][0]
  for process_count, global_batch in ((1, 3), (2, 4)):
    counted, labels, bad = 0, [], []
    for p in range(process_count):
      it = data.make_eval_iterator(
        imagenet_config,
        global_batch_size=global_batch,
        process_index=p,
        process_count=process_count,
      )
      for batch in it:
        assert batch['image'].shape == (global_batch // process_count, 32, 32, 3)
        counted += int(batch['mask'].sum())
        labels += list(batch['label'][batch['mask']])
      bad += it.bad_record_ids
    assert counted == 7 and bad == [bad_id]
    expected = sorted(v for k, v in imagenet['labels']['validation'].items() if k != bad_name)
    assert sorted(labels) == expected


def test_train_skips_and_counts_the_truncated_image(imagenet, imagenet_config):
  names = sorted(
    imagenet['labels']['train'], key=lambda n: (n.split('_')[0], int(n.split('_')[1].split('.')[0]))
  )
  bad_id = _ids_by_file_name(imagenet['data_dir'], 'train')[names[CORRUPT_TRAIN[0]]][0]
  imagenet_config.augment.mixup_alpha = imagenet_config.augment.cutmix_alpha = 0.0
  imagenet_config.augment.autoaugment = False
  it = data.make_train_iterator(
    imagenet_config, global_batch_size=6, seed=0, process_index=0, process_count=1
  )
  n = len(names)
  assert n % 6 == 0
  batches = [next(it) for _ in range(n // 6)]  # one epoch
  assert it.num_bad_records == 1 and it.bad_record_ids == [bad_id]
  # The bad slot holds a copy of a good example of its batch, so shapes and the stream position stay fixed.
  images = np.concatenate([b['image'] for b in batches])
  assert images.dtype == np.uint8 and len({img.tobytes() for img in images}) == n - 1
  assert all(b['label'].shape == (6,) for b in batches)


def test_paper_recipes_run_on_imagenet(imagenet, imagenet_config):
  for recipe in ('vitc', 'convit'):
    config = data.paper_recipe_config(recipe)
    config.data_dir, config.image_size, config.shuffle_buffer = imagenet['data_dir'], 32, 32
    [batch] = [
      next(
        data.make_train_iterator(
          config, global_batch_size=8, seed=1, process_index=0, process_count=1
        )
      )
    ]
    assert batch['image'].shape == (8, 32, 32, 3) and batch['image'].dtype == np.uint8
    assert batch['image'].std() > 5 and ((0 <= batch['label']) & (batch['label'] < 1000)).all()
