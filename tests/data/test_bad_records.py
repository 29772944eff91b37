"""Undecodable records keep their place in the stream and are flagged, in every position of a decode chunk."""

import numpy as np
import tensorflow as tf

from vit_jax_stems.data import pipeline


def test_every_bad_record_is_flagged_in_place_and_good_ones_decode_in_order():
  n = 2 * pipeline._DECODE_CHUNK + 7
  bad = set(range(pipeline._DECODE_CHUNK, 2 * pipeline._DECODE_CHUNK)) | {
    0,
    3,
    n - 1,
  }  # a whole chunk too
  images, labels = [], []
  for i in range(n):
    if i in bad:
      encoded = (
        b'\xff\xd8 not a jpeg'
        if i % 2
        else tf.io.encode_jpeg(np.full((8, 8, 3), 7, np.uint8)).numpy()[:40]
      )
    else:
      encoded = tf.io.encode_png(np.full((4, 4, 3), i, np.uint8)).numpy()
    images.append(encoded)
    labels.append(i)
  ds = tf.data.Dataset.from_tensor_slices({'image': images, 'label': labels})
  placeholder = tf.fill([4, 4, 3], tf.constant(255, tf.uint8))
  out = list(
    pipeline._decode_or_flag(
      ds,
      lambda ex: tf.io.decode_image(ex['image'], channels=3, expand_animations=False),
      placeholder,
    )
    .unbatch()
    .as_numpy_iterator()
  )
  assert [int(x['label']) for x in out] == list(range(n))  # nothing lost, order kept
  for i, x in enumerate(out):
    assert bool(x['ok']) == (i not in bad)
    np.testing.assert_array_equal(x['image'], np.full((4, 4, 3), 255 if i in bad else i, np.uint8))
