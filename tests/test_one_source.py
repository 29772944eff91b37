"""Facts stated once: the accelerator peaks and the 6 x MACs rule, the compute-dtype names, the
per-process-batch-to-global-array function and model initialisation each live in one module,
and every user reads that module (a second copy would be caught here)."""

import ast
import pathlib
import re

import jax.numpy as jnp
import pytest

from vit_jax_stems import mfu, models
from vit_jax_stems.bench import __main__ as bench_main
from vit_jax_stems.bench import report

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / 'vit_jax_stems'


def _sources():
  return {str(p.relative_to(PACKAGE)): p.read_text() for p in sorted(PACKAGE.rglob('*.py'))}


def _string_constants(source):
  return {
    node.value
    for node in ast.walk(ast.parse(source))
    if isinstance(node, ast.Constant) and isinstance(node.value, str)
  }


def _holders(pattern):
  """Modules of the package whose code (not prose) matches `pattern`."""
  out = []
  for name, source in _sources().items():
    code = '\n'.join(
      line.split('#')[0] for line in source.splitlines() if not line.lstrip().startswith('#')
    )
    code = re.sub(r'"""[\s\S]*?"""', '', code)  # docstrings
    if re.search(pattern, code):
      out.append(name)
  return out


def test_the_peak_table_is_stated_once():
  device_keys = {key for key, _ in mfu.PEAKS}
  holders = [n for n, s in _sources().items() if device_keys & _string_constants(s)]
  assert holders == ['mfu.py']
  assert _holders(r'\b(989|756|312|275|197|459|918)(\.\d)?\b') == ['mfu.py']


@pytest.mark.parametrize(
  'device_kind,tflops',
  [
    ('NVIDIA H100 80GB HBM3', 989.4),  # SXM
    ('NVIDIA H100 PCIe', 756.0),
    ('NVIDIA H200', 989.4),
    ('NVIDIA A100-SXM4-80GB', 312.0),
    ('TPU v4', 275.0),
    ('TPU v5 lite', 197.0),  # v5e
    ('TPU v5', 459.0),  # v5p
    ('TPU v6 lite', 918.0),  # v6e
  ],
)
def test_datasheet_peaks(device_kind, tflops):
  peak, source = mfu.peak_for(device_kind, 'bfloat16')
  assert peak == tflops and ('datasheet' in source or 'Cloud TPU' in source)


def test_six_macs_rule_is_stated_once_and_the_bench_uses_it(monkeypatch):
  assert _holders(r'(?<![\d.])6(\.0)?\s*\*\s*\w*mac') == ['mfu.py']
  calls = []
  monkeypatch.setattr(mfu, 'train_flops', lambda macs, n: calls.append((macs, n)) or 7.0)
  row = {'macs_per_image': 3, 'batch_size': 2, 'train_step_s': 1.0, 'infer_step_s': 1.0}
  report.add_mfu(row, 1.0)
  assert calls == [(3, 2)] and row['train_flops_per_step'] == 7.0


def test_one_global_batch_function():
  assert _holders(r'make_array_from_process_local_data') == ['train/sharding.py']


def test_model_variables_are_initialised_in_one_place():
  assert _holders(r'(?<!tx)\.init\(') == ['models/variables.py']


def test_compute_dtype_names_are_stated_once():
  both = {'float32', 'bfloat16'}
  holders = [
    n
    for n, s in _sources().items()
    for node in ast.walk(ast.parse(s))
    if isinstance(node, (ast.Dict, ast.Tuple, ast.List, ast.Set))
    and both
    <= {
      k.value
      for k in (node.keys if isinstance(node, ast.Dict) else node.elts)
      if isinstance(k, ast.Constant)
    }
  ]
  # bench/timm_peer.py is the PyTorch side, run in a process that must not import JAX.
  assert sorted(holders) == ['bench/timm_peer.py', 'models/registry.py']


def test_a_new_compute_dtype_reaches_models_config_checks_and_bench(monkeypatch):
  from configs import vitc
  from vit_jax_stems.train import config_checks

  c = vitc.get_config('demo')
  c.dtype = 'float16'
  with pytest.raises(ValueError, match=r"config\.dtype: 'float16' is not one of"):
    config_checks.check(c, num_devices=1, num_processes=1)
  with pytest.raises(SystemExit):
    bench_main.parse_args(['--models', 'vit_p_1gf', '--batch_size', '2', '--dtype', 'float16'])
  monkeypatch.setitem(models.COMPUTE_DTYPES, 'float16', jnp.float16)
  config_checks.check(c, num_devices=1, num_processes=1)
  assert bench_main.parse_args(['--models', 'x', '--batch_size', '2', '--dtype', 'float16']).dtype
  assert models.create_model('vit_p_1gf', dtype='float16').dtype == jnp.float16
