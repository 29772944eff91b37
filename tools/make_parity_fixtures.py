"""Writes the small reference-parity fixtures of tests/fixtures/parity/ from timm and pycls.

Each fixture is a REDUCED-size reference model (same code path as the full model, fewer and
narrower layers, 32x32 inputs) built with fixed seeds, its weights moved off init
(`reference_models.perturb_parameters`; BN running stats set by a few train-mode forwards), and:
  NAME.safetensors  the torch state_dict, exactly as the reference names it
  NAME.npz          images (B,3,H,W) float32 NCHW and logits (B,C) float32 of the reference in
                    eval mode; ConViT fixtures also hold timm's GPSA local init of pos_proj
                    (`init_pos_proj_weight_{i}`, (H,3)) taken before the perturbation
  NAME.json         reference kwargs, format ('timm_convit' | 'pycls_vit'), and the vit_jax_stems
                    arch name + overrides that build the matching Flax model
and `timm_pos_embed_resample.npz`: random position embeddings and timm's
`resample_abs_pos_embed` of each (pycls's layout with a class-token slot, ConViT's without;
square and non-square grids, up and down; bicubic and bilinear, antialias off), with one
`case_{i}` JSON string per entry naming its grids, prefix slots and interpolation.

Command (from the repository root; needs requirements-reference.txt and a pycls checkout):
  .venv/bin/python tools/make_parity_fixtures.py --pycls_root /tmp/pycls --out tests/fixtures/parity \
      --pycls_revision 5719de641657c251f807c20a1fcf8ef6f4b60144
  (add --only timm_pos_embed_resample to write just that file; it needs timm, not pycls)
"""

import argparse
import json
import os
import subprocess

import numpy as np
import reference_models as ref
import torch
from safetensors.torch import save_file

from vit_jax_stems import timm_import

BATCH = 3

# (name, builder, kwargs). Shapes follow the full models (P1 Table 1, P2 Table 1), scaled down.
CASES = [
  # ViT_P-1GF shape: patchify stem, scaled to hidden 48, 3 heads, MLP 96; patch 8 on 32x32 -> 4x4.
  (
    'pycls_vit_p',
    'pycls',
    dict(
      arch='vit_p_1gf',
      image_size=32,
      patch_size=8,
      stem_type='patchify',
      n_layers=3,
      n_heads=3,
      hidden_d=48,
      mlp_d=96,
      num_classes=10,
    ),
  ),
  # ViT_C-1GF shape: 3x3 stride-2 convs + BN + ReLU, then a 1x1 conv to hidden; 8 = 2*2*2*1.
  (
    'pycls_vit_c',
    'pycls',
    dict(
      arch='vit_c_1gf',
      image_size=32,
      patch_size=8,
      stem_type='conv',
      n_layers=2,
      n_heads=3,
      hidden_d=48,
      mlp_d=96,
      num_classes=10,
      c_stem_kernels=(3, 3, 3, 1),
      c_stem_strides=(2, 2, 2, 1),
      c_stem_dims=(12, 24, 48, 48),
    ),
  ),
  # ConViT-Ti shape: 4 heads (k=2, even centre), 2 GPSA blocks then 1 MHSA block.
  (
    'timm_convit_4h',
    'timm',
    dict(
      arch='convit_ti',
      img_size=32,
      patch_size=8,
      embed_dim_per_head=12,
      num_heads=4,
      depth=3,
      local_up_to_layer=2,
      num_classes=10,
    ),
  ),
  # ConViT-S shape: 9 heads (k=3, odd centre), and a locality strength other than 1.
  (
    'timm_convit_9h',
    'timm',
    dict(
      arch='convit_s',
      img_size=32,
      patch_size=8,
      embed_dim_per_head=6,
      num_heads=9,
      depth=3,
      local_up_to_layer=2,
      num_classes=10,
      locality_strength=1.5,
    ),
  ),
  # 6 heads: k = int(sqrt(6)) = 2, so heads 4 and 5 keep their random pos_proj init in timm.
  (
    'timm_convit_6h',
    'timm',
    dict(
      arch='convit_ti',
      img_size=32,
      patch_size=8,
      embed_dim_per_head=6,
      num_heads=6,
      depth=2,
      local_up_to_layer=1,
      num_classes=10,
    ),
  ),
]


def _git_rev(root):
  try:
    return subprocess.run(
      ['git', '-C', root, 'rev-parse', 'HEAD'], capture_output=True, text=True, check=True
    ).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return None


def make_fixture(name, family, kwargs, seed, pycls_root):
  torch.manual_seed(seed)
  if family == 'pycls':
    model, ref_kwargs, arch, overrides = ref.build_pycls_vit(pycls_root, **kwargs)
    fmt = 'pycls_vit'
  else:
    model, ref_kwargs, arch, overrides = ref.build_timm_convit(**kwargs)
    fmt = 'timm_convit'
  extra = {}
  if family == 'timm':
    for i, blk in enumerate(model.blocks):
      if hasattr(blk.attn, 'pos_proj'):
        extra[f'init_pos_proj_weight_{i}'] = blk.attn.pos_proj.weight.detach().numpy().copy()
  gen = torch.Generator().manual_seed(seed + 1)
  ref.perturb_parameters(model, gen)
  if family == 'pycls' and kwargs['stem_type'] == 'conv':
    ref.set_bn_running_stats(model, gen, kwargs['image_size'])
  model.eval()
  image_size = overrides['image_size']
  images = ref.random_images(seed + 2, BATCH, image_size)
  logits = ref.reference_logits(model, images)
  state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
  meta = {
    'format': fmt,
    'arch': arch,
    'overrides': overrides,
    'reference_kwargs': ref_kwargs,
    'seed': seed,
    'input_layout': 'NCHW',
    'torch': torch.__version__,
  }
  return state, images, logits, extra, meta


# (prefix slots, old grid, new grid): pycls 224 -> 384 px at patch 16 (14x14 -> 24x24, class
# slot), ConViT down (14x14 -> 7x7, no slot), non-square grids both ways, a 1x1 grid.
POS_EMBED_CASES = [
  (1, (14, 14), (24, 24)),
  (0, (14, 14), (7, 7)),
  (1, (4, 4), (3, 5)),
  (0, (8, 8), (8, 12)),
  (1, (2, 3), (5, 2)),
  (0, (1, 1), (3, 3)),
]
POS_EMBED_FIXTURE = 'timm_pos_embed_resample'


def make_pos_embed_fixture(path, seed=7):
  """timm's resample_abs_pos_embed on random embeddings (antialias off, its default align_corners)."""
  with timm_import.without_torchvision():
    from timm.layers.pos_embed import resample_abs_pos_embed
  rng = np.random.default_rng(seed)
  arrays = {}
  cases = [(*case, interp) for case in POS_EMBED_CASES for interp in ('bicubic', 'bilinear')]
  for i, (prefix, old, new, interpolation) in enumerate(cases):
    x = rng.standard_normal((1, prefix + old[0] * old[1], 16)).astype(np.float32)
    y = resample_abs_pos_embed(
      torch.from_numpy(x),
      list(new),
      old_size=list(old),
      num_prefix_tokens=prefix,
      interpolation=interpolation,
      antialias=False,
    )
    case = dict(num_prefix_tokens=prefix, old_grid=old, new_grid=new, interpolation=interpolation)
    arrays.update({f'input_{i}': x, f'output_{i}': y.numpy(), f'case_{i}': json.dumps(case)})
  np.savez(path, **arrays)
  return len(arrays) // 3


def main():
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument(
    '--pycls_root', default=None, help='checkout of facebookresearch/pycls, branch main'
  )
  parser.add_argument(
    '--pycls_revision',
    default=None,
    help='pycls commit to record in the JSON when --pycls_root is not a git work tree',
  )
  parser.add_argument('--out', default='tests/fixtures/parity')
  parser.add_argument('--only', default=None, help='comma-separated fixture names to write')
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)
  only = set(args.only.split(',')) if args.only else None
  if only is None or POS_EMBED_FIXTURE in only:
    n = make_pos_embed_fixture(os.path.join(args.out, f'{POS_EMBED_FIXTURE}.npz'))
    print(f'{POS_EMBED_FIXTURE}: {n} resampled embeddings')
  if only is not None and not only - {POS_EMBED_FIXTURE}:
    return
  if args.pycls_root is None:
    parser.error('--pycls_root DIR is needed for the model fixtures (or pass --only NAME,...)')
  convit = ref.import_timm_convit()
  import timm

  pycls_rev = args.pycls_revision or _git_rev(args.pycls_root)
  for seed, (name, family, kwargs) in enumerate(CASES):
    if only is not None and name not in only:
      continue
    state, images, logits, extra, meta = make_fixture(
      name, family, kwargs, 1000 * (seed + 1), args.pycls_root
    )
    meta['reference'] = (
      f'timm {timm.__version__} {convit.__name__}.ConVit'
      if family == 'timm'
      else f'pycls main {pycls_rev or "(unknown revision)"} pycls.models.vit.ViT'
    )
    save_file(state, os.path.join(args.out, f'{name}.safetensors'))
    np.savez(os.path.join(args.out, f'{name}.npz'), images=images, logits=logits, **extra)
    with open(os.path.join(args.out, f'{name}.json'), 'w') as f:
      json.dump(meta, f, indent=1, sort_keys=True)
      f.write('\n')
    print(
      f'{name}: {len(state)} tensors, logits {logits.shape}, |logits| max {np.abs(logits).max():.3f}'
    )


if __name__ == '__main__':
  main()
