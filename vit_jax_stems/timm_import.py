"""Imports timm's model files without torchvision, for the timm benchmark peer and parity tools.

timm's package import reaches torchvision (`timm/layers/create_norm.py` imports
`torchvision.ops.misc.FrozenBatchNorm2d`, `timm/data` imports torchvision transforms), but
`timm/models/convit.py` and `timm/models/vision_transformer.py` themselves only need torch.
Installing torchvision would pull a CUDA build of torch, so `without_torchvision()` puts a
placeholder `torchvision` module in front of the import system for the duration of an import; any
use of it fails loudly. A real torchvision, where one is installed, is used as is.

Neither torch nor timm is imported here; both are optional (requirements-reference.txt).
"""

import contextlib
import importlib.abc
import importlib.machinery
import sys
import types


class _Placeholder(type):
  """A class whose attributes are more placeholder classes, so `from x import Y` succeeds."""

  def __getattr__(cls, name):
    if name.startswith('__'):
      raise AttributeError(name)
    return _Placeholder(name, (), {})

  def __call__(cls, *args, **kwargs):
    raise RuntimeError(
      f'torchvision placeholder {cls.__name__!r} used; torchvision is not installed'
    )


class _PlaceholderModule(types.ModuleType):
  __path__ = []

  def __getattr__(self, name):
    if name.startswith('__'):
      raise AttributeError(name)
    return _Placeholder(name, (), {})


class _TorchvisionPlaceholderFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
  def find_spec(self, fullname, path, target=None):
    if fullname == 'torchvision' or fullname.startswith('torchvision.'):
      return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
    return None

  def create_module(self, spec):
    return _PlaceholderModule(spec.name)

  def exec_module(self, module):
    pass


@contextlib.contextmanager
def without_torchvision():
  """Within this block `import timm...` works whether or not torchvision is installed."""
  try:
    import torchvision  # noqa: F401  # a real one, if someone installed it, is used as is.

    yield
    return
  except ImportError:
    pass
  finder = _TorchvisionPlaceholderFinder()
  sys.meta_path.insert(0, finder)
  try:
    yield
  finally:
    sys.meta_path.remove(finder)
