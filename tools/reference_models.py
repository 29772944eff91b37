"""Builds the PyTorch reference models (timm ConViT, pycls ViT) for parity checks.

Only the parity tools import this file; torch, timm and pycls are optional for the project
(see requirements-reference.txt). Nothing here is copied from the references: the models are
imported from the installed timm and from a pycls checkout given on the command line.

Two import details, both chosen to load as little of the references as possible:
- timm's package import reaches torchvision, which `timm/models/convit.py` does not need and which
  would pull a CUDA build of torch: `import_timm_convit` imports it under
  `vit_jax_stems.timm_import.without_torchvision` (a placeholder torchvision).
- pycls's `pycls/models/__init__.py` imports the whole model zoo and its training stack
  (submitit, ...). `import_pycls_vit` registers `pycls.models` as a bare package so that only
  `pycls/models/vit.py`, `pycls/models/blocks.py` and `pycls/core/config.py` (yacs, iopath) load.
"""

import os
import sys
import types

import numpy as np
import torch

from vit_jax_stems import timm_import


def import_timm_convit():
  """Returns the `timm.models.convit` module (needs timm installed, torchvision not needed)."""
  with timm_import.without_torchvision():
    import timm.models.convit as convit
  return convit


def import_pycls_vit(pycls_root):
  """Returns (pycls.models.vit module, pycls cfg) from a checkout of facebookresearch/pycls (main)."""
  pkg = os.path.join(pycls_root, 'pycls')
  if not os.path.isfile(os.path.join(pkg, 'models', 'vit.py')):
    raise FileNotFoundError(
      f'--pycls_root {pycls_root!r} has no pycls/models/vit.py; point it at a checkout of '
      'facebookresearch/pycls, branch main'
    )
  if pycls_root not in sys.path:
    sys.path.insert(0, pycls_root)
  import pycls  # noqa: F401

  if 'pycls.models' not in sys.modules:
    models_pkg = types.ModuleType('pycls.models')
    models_pkg.__path__ = [os.path.join(pkg, 'models')]
    sys.modules['pycls.models'] = models_pkg
  import pycls.models.vit as vit
  from pycls.core.config import cfg

  return vit, cfg


# ------------------------------------------------------------------------------------------------
# Builders. Each returns (torch model in eval mode, reference kwargs, our arch name, our overrides).
# ------------------------------------------------------------------------------------------------


def build_pycls_vit(
  pycls_root,
  *,
  arch,
  image_size,
  patch_size,
  stem_type,
  n_layers,
  n_heads,
  hidden_d,
  mlp_d,
  num_classes,
  c_stem_kernels=(),
  c_stem_strides=(),
  c_stem_dims=(),
):
  """pycls `ViT(params)` with the LN eps of the vitconfigs yaml files (LN.EPS: 1e-6).

  pycls main sizes the position embedding from `cfg.VIT.PATCH_SIZE`, not from `params`
  (pycls/models/vit.py, `ViT.__init__`), so the global cfg is set to the same patch size.
  """
  vit, cfg = import_pycls_vit(pycls_root)
  cfg.defrost()
  cfg.VIT.PATCH_SIZE = patch_size
  cfg.LN.EPS = (
    1e-6  # pycls vitconfigs configs/vitconv_baselines/vit/*.yaml (main's default is 1e-5)
  )
  cfg.BN.EPS = 1e-5  # pycls main default
  cfg.BN.MOM = 0.1  # pycls main default
  params = {
    'image_size': image_size,
    'patch_size': patch_size,
    'stem_type': stem_type,
    'c_stem_kernels': list(c_stem_kernels),
    'c_stem_strides': list(c_stem_strides),
    'c_stem_dims': list(c_stem_dims),
    'n_layers': n_layers,
    'n_heads': n_heads,
    'hidden_d': hidden_d,
    'mlp_d': mlp_d,
    'cls_type': 'token',
    'num_classes': num_classes,
  }
  model = vit.ViT(params)
  overrides = {
    'hidden_size': hidden_d,
    'num_heads': n_heads,
    'mlp_dim': mlp_d,
    'depth': n_layers,
    'patch_size': patch_size,
    'image_size': image_size,
    'num_classes': num_classes,
  }
  if stem_type == 'conv':
    overrides.update(
      stem_kernels=list(c_stem_kernels),
      stem_strides=list(c_stem_strides),
      stem_channels=list(c_stem_dims),
    )
  kwargs = dict(params, ln_eps=1e-6, bn_eps=1e-5, bn_momentum=0.1)
  return model, kwargs, arch, overrides


def build_timm_convit(
  *,
  arch,
  img_size,
  patch_size,
  embed_dim_per_head,
  num_heads,
  depth,
  local_up_to_layer,
  num_classes,
  locality_strength=1.0,
  mlp_ratio=4.0,
):
  """timm `ConVit`; note timm multiplies `embed_dim` by `num_heads` (timm/models/convit.py)."""
  convit = import_timm_convit()
  kwargs = dict(
    img_size=img_size,
    patch_size=patch_size,
    num_classes=num_classes,
    embed_dim=embed_dim_per_head,
    num_heads=num_heads,
    depth=depth,
    local_up_to_layer=local_up_to_layer,
    locality_strength=locality_strength,
    mlp_ratio=mlp_ratio,
  )
  model = convit.ConVit(**kwargs)
  hidden = embed_dim_per_head * num_heads
  overrides = {
    'hidden_size': hidden,
    'num_heads': num_heads,
    'mlp_dim': int(hidden * mlp_ratio),
    'depth': depth,
    'num_gpsa_layers': local_up_to_layer,
    'patch_size': patch_size,
    'image_size': img_size,
    'num_classes': num_classes,
    'locality_strength': locality_strength,
  }
  return model, kwargs, arch, overrides


@torch.no_grad()
def perturb_parameters(model, generator, scale=0.05):
  """Moves every parameter off its init so that parity is sensitive to each one.

  At init many tensors are constants (pycls: zero head, zero class token, zero attention biases;
  timm: LayerNorm ones/zeros, gating ones, identity v weight, which is its own transpose). Adding
  noise to every float parameter makes a dropped, swapped or untransposed tensor change the logits.
  Gating params get noise of std 1 so that both attention terms matter.
  """
  for name, p in model.named_parameters():
    std = 1.0 if name.endswith('gating_param') else scale
    p.add_(torch.randn(p.shape, generator=generator) * std)


@torch.no_grad()
def set_bn_running_stats(model, generator, image_size, steps=3, batch=8):
  """A few train-mode forwards on shifted, scaled noise so BN running stats are far from (0, 1)."""
  model.train()
  for _ in range(steps):
    x = torch.randn(batch, 3, image_size, image_size, generator=generator) * 1.7 + 0.3
    model(x)
  model.eval()


def random_images(seed, batch, image_size):
  """NCHW float32 inputs, from numpy so that the same batch can be rebuilt without torch."""
  rng = np.random.default_rng(seed)
  return rng.standard_normal((batch, 3, image_size, image_size)).astype(np.float32)


@torch.no_grad()
def reference_logits(model, images_nchw):
  model.eval()
  return model(torch.from_numpy(images_nchw)).numpy().astype(np.float32)
