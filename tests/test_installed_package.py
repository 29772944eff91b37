"""The package works when installed (`pip install .`): every module imports from an installed copy
in a directory outside the repository, so nothing in it may import `configs` or `tools` (which only
the repository root provides), and the data files it reads at run time come with it."""

import ast
import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
REPO_ROOT_ONLY = {'configs', 'tools', 'tests', 'main'}

CHECK = """
import importlib, importlib.util, os, pkgutil, sys
site = os.path.realpath(sys.argv[1])
import vit_jax_stems
assert os.path.realpath(vit_jax_stems.__file__).startswith(site), vit_jax_stems.__file__
for name in ('configs', 'tools'):
  assert importlib.util.find_spec(name) is None, f'{name} is importable here: not a clean test'
names = ['vit_jax_stems']
names += [m.name for m in pkgutil.walk_packages(vit_jax_stems.__path__, 'vit_jax_stems.')]
from absl import flags
for name in names:
  importlib.import_module(name)
  # Commands define absl flags on import (data.prepare and data.visualize both define --name);
  # forget them, as each command runs in its own process.
  for flag in flags.FLAGS.flags_by_module_dict().pop(name, []):
    delattr(flags.FLAGS, flag.name)
from vit_jax_stems import predict
assert os.path.realpath(predict.IMAGENET_CLASSES).startswith(site)
assert len(predict.class_names(site, 1000)) == 1000
print('\\n'.join(sorted(names)))
"""


def _source_modules():
  package = ROOT / 'vit_jax_stems'
  names = set()
  for path in package.rglob('*.py'):
    parts = path.relative_to(ROOT).with_suffix('').parts
    names.add('.'.join(parts[:-1] if parts[-1] == '__init__' else parts))
  return names


def test_every_module_imports_from_an_installed_copy(tmp_path):
  source = tmp_path / 'source'  # a copy, so that the build leaves nothing in the repository
  shutil.copytree(
    ROOT / 'vit_jax_stems',
    source / 'vit_jax_stems',
    ignore=shutil.ignore_patterns('__pycache__'),
  )
  for name in ('pyproject.toml', 'requirements.txt'):
    shutil.copy(ROOT / name, source / name)
  site = tmp_path / 'site'
  install = [sys.executable, '-m', 'pip', 'install', '--no-deps', '--no-build-isolation']
  subprocess.run(
    [*install, '--no-index', '--quiet', '--target', str(site), str(source)],
    check=True,
    timeout=600,
  )
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  env.update(PYTHONPATH=str(site), JAX_PLATFORMS='cpu')
  elsewhere = tmp_path / 'elsewhere'
  elsewhere.mkdir()
  proc = subprocess.run(
    [sys.executable, '-c', CHECK, str(site)],
    cwd=elsewhere,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert set(proc.stdout.split()) == _source_modules()


def test_the_package_imports_nothing_from_the_repository_root():
  """Also the imports inside functions, which importing a module does not run."""
  found = []
  for path in sorted((ROOT / 'vit_jax_stems').rglob('*.py')):
    text = path.read_text()
    for node in ast.walk(ast.parse(text, str(path))):
      if isinstance(node, ast.Import):
        tops = [alias.name.split('.')[0] for alias in node.names]
      elif isinstance(node, ast.ImportFrom) and node.level == 0:
        tops = [node.module.split('.')[0]]
      else:
        continue
      found += [f'{path.relative_to(ROOT)}:{node.lineno} {t}' for t in tops if t in REPO_ROOT_ONLY]
    if 'sys.path' in text:
      found.append(f'{path.relative_to(ROOT)}: changes sys.path')
  assert not found
