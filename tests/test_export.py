"""Weights back to PyTorch: `vit_jax_stems.export` writes the reference code's state dict.

Against the committed parity fixtures (tests/fixtures/parity/, made from timm and pycls by
tools/make_parity_fixtures.py): PyTorch -> ours -> PyTorch gives back every tensor exactly, and
timm's ConVit (where torch and timm are installed) or pycls's ViT (where PYCLS_ROOT names a
checkout) loads the export with strict=True and gives the reference logits.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file

from tests.test_convert import NAMES, TOLERANCE, load_fixture
from vit_jax_stems import convert, export, models, weights


def _weights_dir(name, tmp_path):
  meta, arrays, src = load_fixture(name)
  model = models.create_model(meta['arch'], **meta['overrides'])
  variables = convert.convert_state_dict(model, convert.load_state_dict(src))
  directory = str(tmp_path / name)
  weights.save_weights(directory, meta['arch'], variables, overrides=meta['overrides'])
  return meta, arrays, src, directory


def _format_of(meta):
  return 'timm' if meta['format'] == 'timm_convit' else 'pycls'


@pytest.mark.parametrize('name', NAMES)
def test_pytorch_to_ours_to_pytorch_gives_back_every_tensor_exactly(name, tmp_path):
  meta, _, src, directory = _weights_dir(name, tmp_path)
  dst = str(tmp_path / f'{name}.safetensors')
  export.main(['--weights', directory, '--format', _format_of(meta), '--dst', dst])
  original, exported = load_file(src), load_file(dst)
  assert set(exported) == set(original) - {k for k in original if k.endswith('.rel_indices')}
  for key, value in original.items():
    if key.endswith('.num_batches_tracked'):
      assert exported[key].shape == value.shape and exported[key] == 0  # not kept (module doc)
    elif key in exported:
      assert exported[key].dtype == value.dtype == np.float32, key
      np.testing.assert_array_equal(exported[key], value, err_msg=key)


def test_timms_convit_loads_the_export_strictly_and_gives_the_reference_logits(tmp_path):
  torch = pytest.importorskip('torch')
  from vit_jax_stems import timm_import

  try:
    with timm_import.without_torchvision():
      from timm.models import convit
  except ImportError:
    pytest.skip('timm is not installed (requirements-reference.txt)')

  meta, arrays, _, directory = _weights_dir('timm_convit_9h', tmp_path)
  dst = str(tmp_path / 'convit.pth')
  export.main(['--weights', directory, '--format', 'timm', '--dst', dst])
  reference = convit.ConVit(**meta['reference_kwargs']).eval()
  reference.load_state_dict(torch.load(dst, weights_only=True), strict=True)
  with torch.no_grad():
    logits = reference(torch.from_numpy(arrays['images'])).numpy()
  assert np.abs(logits - arrays['logits']).max() <= TOLERANCE


@pytest.mark.skipif(not os.environ.get('PYCLS_ROOT'), reason='PYCLS_ROOT names no pycls checkout')
@pytest.mark.parametrize('name', ['pycls_vit_p', 'pycls_vit_c'])
def test_pyclss_vit_loads_the_export_strictly_and_gives_the_reference_logits(name, tmp_path):
  torch = pytest.importorskip('torch')
  from tools import reference_models

  meta, arrays, _, directory = _weights_dir(name, tmp_path)
  dst = str(tmp_path / f'{name}.pth')
  export.main(['--weights', directory, '--format', 'pycls', '--dst', dst])
  kwargs = meta['reference_kwargs']
  build = ('image_size', 'patch_size', 'stem_type', 'n_layers', 'n_heads', 'hidden_d', 'mlp_d')
  reference, *_ = reference_models.build_pycls_vit(
    os.environ['PYCLS_ROOT'],
    arch=meta['arch'],
    num_classes=kwargs['num_classes'],
    c_stem_kernels=kwargs['c_stem_kernels'],
    c_stem_strides=kwargs['c_stem_strides'],
    c_stem_dims=kwargs['c_stem_dims'],
    **{k: kwargs[k] for k in build},
  )
  reference.load_state_dict(torch.load(dst, weights_only=True), strict=True)
  logits = reference_models.reference_logits(reference, arrays['images'])
  assert np.abs(logits - arrays['logits']).max() <= TOLERANCE


def test_a_format_of_the_other_family_is_one_line_naming_the_right_one(tmp_path):
  _, _, _, directory = _weights_dir('pycls_vit_p', tmp_path)
  dst = tmp_path / 'out.safetensors'
  with pytest.raises(SystemExit) as e:
    export.main(['--weights', directory, '--format', 'timm', '--dst', str(dst)])
  assert str(e.value).startswith('export: ') and '--format pycls' in str(e.value)
  assert '\n' not in str(e.value) and not dst.exists()
  with pytest.raises(SystemExit) as e:
    export.main(['--weights', directory, '--format', 'pycls', '--dst', str(tmp_path / 'x.npz')])
  assert '.safetensors or .pth' in str(e.value)


def test_the_exported_names_are_the_converters_and_the_json_records_the_reference():
  """The fixture's JSON names the reference each format describes (the strict-load tests above)."""
  for name in NAMES:
    meta, _, _ = load_fixture(name)
    assert ('ConVit' in meta['reference']) == (_format_of(meta) == 'timm')
    assert json.dumps(meta['reference_kwargs'])


# ----------------------------------------------------------------------------- from a trainer run
from tests.analysis import conftest as tiny_run  # noqa: E402  (its tiny trainer-layout run)

STEPS = tiny_run.STEPS


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
  state0 = tiny_run.make_tiny_run_state0()
  return tiny_run.write_tiny_run(str(tmp_path_factory.mktemp('run')), state0)


def _checkpoint(workdir, step, which):
  from vit_jax_stems.analysis import sources

  return jax.device_get(sources.from_checkpoint(workdir, step, which=which).variables)


def test_a_run_becomes_a_weights_directory_of_the_weights_its_recipe_evaluates(run_dir, tmp_path):
  """The tiny ConViT demo run keeps an EMA (config.ema.enabled), which `auto` picks."""
  latest = str(tmp_path / 'latest')
  export.main(['--workdir', run_dir, '--format', 'weights', '--dst', latest])
  model, variables = weights.load_weights(latest)
  expected = _checkpoint(run_dir, STEPS[-1], 'ema')
  jax.tree_util.tree_map(np.testing.assert_array_equal, expected, jax.device_get(variables))
  raw = _checkpoint(run_dir, STEPS[-1], 'params')
  assert not np.array_equal(raw['params']['head']['bias'], expected['params']['head']['bias'])
  logits, _ = model.apply(variables, jnp.zeros((1, *[model.spec.image_size] * 2, 3)), train=False)
  assert logits.shape == (1, model.spec.num_classes)

  early = str(tmp_path / 'early')
  export.main(['--workdir', run_dir, '--format', 'weights', '--dst', early, '--step',
               str(STEPS[0]), '--which', 'params'])  # fmt: skip
  _, variables = weights.load_weights(early)
  jax.tree_util.tree_map(
    np.testing.assert_array_equal, _checkpoint(run_dir, STEPS[0], 'params'), variables
  )


def test_a_run_goes_to_pytorch_in_one_command_as_through_its_weights_directory(run_dir, tmp_path):
  direct = str(tmp_path / 'direct.safetensors')
  export.main(['--workdir', run_dir, '--format', 'timm', '--dst', direct])
  export.main(['--workdir', run_dir, '--format', 'weights', '--dst', str(tmp_path / 'w')])
  via = str(tmp_path / 'via.safetensors')
  export.main(['--weights', str(tmp_path / 'w'), '--format', 'timm', '--dst', via])
  a, b = load_file(direct), load_file(via)
  assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_a_missing_step_is_one_line_naming_the_steps_and_writes_nothing(run_dir, tmp_path):
  dst = tmp_path / 'out'
  with pytest.raises(SystemExit) as e:
    export.main(['--workdir', run_dir, '--format', 'weights', '--dst', str(dst), '--step', '3'])
  assert 'No checkpoint step 3' in str(e.value) and str(list(STEPS)) in str(e.value)
  assert '\n' not in str(e.value) and not dst.exists()


def test_a_step_or_which_without_a_run_says_to_pass_the_run():
  with pytest.raises(ValueError, match='--workdir RUN'):
    export.export('timm', 'x.safetensors', weights_dir='W', which='ema')
  with pytest.raises(ValueError, match='--workdir RUN'):
    export.export('weights', 'DIR', weights_dir='W')


def test_a_scanned_model_exports_the_same_state_dict(tmp_path):
  """Weights of a scanned model (stacked blocks) give the per-block names and tensors."""
  meta, _, src = load_fixture('timm_convit_4h')
  overrides = dict(meta['overrides'], scan_layers=True)
  model = models.create_model(meta['arch'], **overrides)
  variables = convert.convert_state_dict(model, convert.load_state_dict(src))
  assert 'gpsa_blocks' in variables['params']['encoder']
  weights.save_weights(str(tmp_path / 'w'), meta['arch'], variables, overrides=overrides)
  dst = str(tmp_path / 'scanned.safetensors')
  export.main(['--weights', str(tmp_path / 'w'), '--format', 'timm', '--dst', dst])
  original, exported = load_file(src), load_file(dst)
  for key, value in exported.items():
    np.testing.assert_array_equal(value, original[key], err_msg=key)
