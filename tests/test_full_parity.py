"""Full-size parity with timm ConViT and pycls ViT (slow; `pytest -m slow`).

Runs tools/full_parity.py in a subprocess for the models whose reference is present: timm's
convit_tiny / convit_small when torch and timm are installed (requirements-reference.txt),
pycls's vit_p_1gf / vit_c_1gf when PYCLS_ROOT points at a facebookresearch/pycls checkout (main).
"""

import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_full_size_parity_with_references():
  for package in ('torch', 'timm'):
    if importlib.util.find_spec(package) is None:
      pytest.skip(f'{package} is not installed (see requirements-reference.txt)')
  models = ['convit_ti', 'convit_s']
  pycls_root = os.environ.get('PYCLS_ROOT')
  if pycls_root and os.path.isfile(os.path.join(pycls_root, 'pycls', 'models', 'vit.py')):
    models += ['vit_p_1gf', 'vit_c_1gf']
  result = subprocess.run(
    [sys.executable, os.path.join(ROOT, 'tools', 'full_parity.py'), '--models', *models],
    cwd=ROOT,
    capture_output=True,
    text=True,
    env=dict(os.environ, JAX_PLATFORMS='cpu'),
  )
  print(result.stdout)
  assert result.returncode == 0, result.stdout + result.stderr
  assert result.stdout.count(' OK') == len(models)
