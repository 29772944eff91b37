"""predict CLI on tiny weights: --npy and image inputs, top-k output, --save_logits, class names."""

import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from vit_jax_stems import models, predict, weights

TINY = dict(hidden_size=16, num_heads=2, mlp_dim=32, depth=1, patch_size=4, image_size=16)


def make_weights(path, num_classes, arch='vit_p_1gf', class_names=None, **overrides):
  """Random (not init) variables, so every logit differs; no init compile needed."""
  overrides = dict(TINY, num_classes=num_classes, **overrides)
  model = models.create_model(arch, **overrides)
  abstract = models.abstract_variables(model)
  rng = np.random.default_rng(0)
  variables = jax.tree_util.tree_map(
    lambda s: rng.normal(scale=0.5, size=s.shape).astype(np.float32), abstract
  )
  weights.save_weights(str(path), arch, variables, overrides=overrides, class_names=class_names)
  return model, variables


def direct_logits(model, variables, batch):
  return np.asarray(
    jax.jit(lambda v, x: model.apply(v, x, train=False)[0])(variables, jnp.asarray(batch))
  )


def top_k_rows(output):
  """[(idx, name), ...] per input from the printed top-k lists."""
  rows = []
  for line in output.splitlines():
    if not line.startswith('  '):
      rows.append([])
      continue
    m = re.fullmatch(r'  \d+\. [0-9.]+  \[(\d+)\] (.*)', line)
    assert m, line
    rows[-1].append((int(m[1]), m[2]))
  return rows


def test_npy_batch_top_k_and_saved_logits(tmp_path, capsys):
  model, variables = make_weights(tmp_path / 'w', 1000)
  batch = np.random.default_rng(1).normal(size=(3, 16, 16, 3)).astype(np.float32)
  np.save(tmp_path / 'batch.npy', batch)
  predict.main(
    [
      '--arch',
      'vit_p_1gf',
      '--weights',
      str(tmp_path / 'w'),
      '--npy',
      str(tmp_path / 'batch.npy'),
      '--top_k',
      '3',
      '--save_logits',
      str(tmp_path / 'out.npy'),
    ]
  )
  expected = direct_logits(model, variables, batch)
  saved = np.load(tmp_path / 'out.npy')
  assert saved.shape == (3, 1000) and saved.dtype == np.float32
  np.testing.assert_allclose(saved, expected, rtol=1e-6, atol=1e-6)
  with open(predict.IMAGENET_CLASSES) as f:
    imagenet = [line.rstrip('\n').split('\t')[1] for line in f]
  rows = top_k_rows(capsys.readouterr().out)
  assert len(rows) == 3
  for row, logits in zip(rows, expected):
    assert [idx for idx, _ in row] == list(np.argsort(-logits)[:3])
    assert [name for _, name in row] == [imagenet[idx] for idx, _ in row]


def test_image_files_get_eval_preprocessing(tmp_path, capsys):
  """A constant-colour image preprocesses to ((c/255 - mean)/std) whatever the resize; logits follow."""
  model, variables = make_weights(tmp_path / 'w', 5)
  colours = [(200, 30, 90), (10, 240, 128)]
  paths = []
  for i, colour in enumerate(colours):
    path = tmp_path / f'img{i}.png'
    Image.new('RGB', (40 + 13 * i, 23), colour).save(path)
    paths.append(str(path))
  predict.main(
    [
      '--arch',
      'vit_p_1gf',
      '--weights',
      str(tmp_path / 'w'),
      *paths,
      '--top_k',
      '2',
      '--save_logits',
      str(tmp_path / 'out.npy'),
    ]
  )
  spec = model.spec
  expected_batch = np.stack(
    [
      np.broadcast_to(
        (np.array(c, np.float32) / 255 - np.array(spec.mean, np.float32))
        / np.array(spec.std, np.float32),
        (16, 16, 3),
      )
      for c in colours
    ]
  )
  np.testing.assert_allclose(
    np.load(tmp_path / 'out.npy'),
    direct_logits(model, variables, expected_batch),
    rtol=1e-5,
    atol=1e-5,
  )
  rows = top_k_rows(capsys.readouterr().out)
  assert [len(r) for r in rows] == [2, 2]
  assert all(
    name == f'class {idx}' for row in rows for idx, name in row
  )  # 5 classes, no labels.txt


def test_resize_and_centre_crop_geometry():
  """Shorter side to floor(size/crop_pct), then the centre crop, on an image that encodes x and y."""
  spec = models.get_spec(
    'vit_p_1gf', **dict(TINY, eval_crop_pct=0.5, mean=(0, 0, 0), std=(1, 1, 1))
  )
  # 64x32 image (w x h): shorter side already 32 = floor(16 / 0.5), so no resampling, crop only.
  x, y = np.meshgrid(np.arange(64), np.arange(32))
  pixels = np.stack([x * 3, y * 7, np.zeros_like(x)], -1).astype(np.uint8)
  out = predict.preprocess_image(Image.fromarray(pixels), spec)
  np.testing.assert_allclose(out * 255, pixels[8:24, 24:40], atol=1e-3)
  # 100x50 -> resized to 64x32 (shorter side 32), then the same crop window.
  out = predict.preprocess_image(Image.fromarray(pixels).resize((100, 50)), spec)
  assert out.shape == (16, 16, 3)


def test_labels_file_in_weights_dir_is_used(tmp_path, capsys):
  names = ['cat', 'dog', 'eel']
  make_weights(tmp_path / 'w', 3, class_names=names)
  np.save(tmp_path / 'b.npy', np.zeros((16, 16, 3), np.float32))  # one unbatched example
  predict.main(
    ['--arch', 'vit_p_1gf', '--weights', str(tmp_path / 'w'), '--npy', str(tmp_path / 'b.npy')]
  )
  rows = top_k_rows(capsys.readouterr().out)
  assert len(rows) == 1 and len(rows[0]) == 3  # top-k capped at the number of classes
  assert sorted(name for _, name in rows[0]) == sorted(names)
  assert all(names[idx] == name for idx, name in rows[0])


def test_bad_inputs_fail_early_with_a_clear_message(tmp_path):
  make_weights(tmp_path / 'w', 3)
  np.save(tmp_path / 'nchw.npy', np.zeros((2, 3, 16, 16), np.float32))
  with pytest.raises(SystemExit, match='NHWC'):
    predict.main(
      ['--arch', 'vit_p_1gf', '--weights', str(tmp_path / 'w'), '--npy', str(tmp_path / 'nchw.npy')]
    )
  with pytest.raises(SystemExit, match='holds vit_p_1gf'):
    predict.main(
      ['--arch', 'convit_ti', '--weights', str(tmp_path / 'w'), '--npy', str(tmp_path / 'nchw.npy')]
    )
  with pytest.raises(SystemExit, match='not a weights directory'):
    predict.main(
      ['--arch', 'vit_p_1gf', '--weights', str(tmp_path), '--npy', str(tmp_path / 'nchw.npy')]
    )


def test_predict_imports_neither_tensorflow_nor_torch():
  code = (
    'import sys, vit_jax_stems.predict, vit_jax_stems.convert; '
    "print(sorted(m for m in ('tensorflow', 'torch', 'timm') if m in sys.modules))"
  )
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run(
    [sys.executable, '-c', code],
    capture_output=True,
    text=True,
    check=True,
    cwd=root,
    env=dict(os.environ, JAX_PLATFORMS='cpu'),
  ).stdout
  assert out.strip() == '[]'


def test_features_are_the_heads_input_in_input_order(tmp_path):
  """The saved embeddings are what the head maps to the logits: logits = features @ W + b."""
  model, variables = make_weights(tmp_path / 'w', 7)
  batch = np.random.default_rng(2).normal(size=(5, 16, 16, 3)).astype(np.float32)
  np.save(tmp_path / 'batch.npy', batch)
  common = ['--arch', 'vit_p_1gf', '--weights', str(tmp_path / 'w'), '--batch_size', '2']
  predict.main(
    [*common, '--npy', str(tmp_path / 'batch.npy'), '--features', str(tmp_path / 'f.npy')]
  )
  features = np.load(tmp_path / 'f.npy')
  assert features.shape == (5, TINY['hidden_size']) and features.dtype == np.float32
  head = variables['params']['head']
  np.testing.assert_allclose(
    features @ head['kernel'] + head['bias'], direct_logits(model, variables, batch), atol=1e-5
  )
  _, out = model.apply(variables, jnp.asarray(batch[3:4]), train=False)
  np.testing.assert_allclose(features[3], np.asarray(out['pre_logits'])[0], atol=1e-6)


def test_predict_runs_at_another_image_size(tmp_path, capsys):
  make_weights(tmp_path / 'w', 7)
  np.save(tmp_path / 'big.npy', np.zeros((2, 32, 32, 3), np.float32))
  common = ['--arch', 'vit_p_1gf', '--weights', str(tmp_path / 'w'), '--npy']
  predict.main([*common, str(tmp_path / 'big.npy'), '--image_size', '32'])
  assert len(top_k_rows(capsys.readouterr().out)) == 2
  with pytest.raises(SystemExit, match=r'\(batch, 16, 16, 3\)'):  # the weights' own size
    predict.main([*common, str(tmp_path / 'big.npy')])
