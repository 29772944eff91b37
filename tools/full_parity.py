"""Full-size parity: our Flax models vs timm ConViT and pycls ViT, same weights, same input.

Builds timm `convit_tiny` / `convit_small` (timm's own registered configs, random init, no
download) and pycls `ViT` with the vit_p_1gf / vit_c_1gf shapes of the pycls vitconfigs yaml files
at 224x224, moves every parameter off init (BN running stats by a few train-mode forwards),
converts the state dict with vit_jax_stems.convert and compares eval-mode logits in float32.
Prints the max abs difference per model; exits 1 if any exceeds the tolerance (1e-4).

Slow (minutes on CPU). Needs requirements-reference.txt and, for the pycls models, a checkout of
facebookresearch/pycls (branch main):
  .venv/bin/python tools/full_parity.py --pycls_root /tmp/pycls
  .venv/bin/python tools/full_parity.py --models convit_ti convit_s      # timm only
"""

import argparse
import os
import sys
import time

import numpy as np
import torch

# The repository root, for vit_jax_stems; reference_models sits beside this script.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import reference_models as ref

# vit_p_1gf / vit_c_1gf as in pycls vitconfigs configs/vitconv_baselines/vit/ViT-{P,C}-1.0GF_*.yaml.
PYCLS_1GF = dict(
  image_size=224, patch_size=16, n_heads=3, hidden_d=192, mlp_d=576, num_classes=1000
)
PYCLS_MODELS = {
  'vit_p_1gf': dict(PYCLS_1GF, stem_type='patchify', n_layers=12),
  'vit_c_1gf': dict(
    PYCLS_1GF,
    stem_type='conv',
    n_layers=11,
    c_stem_kernels=(3, 3, 3, 3, 1),
    c_stem_strides=(2, 2, 2, 2, 1),
    c_stem_dims=(24, 48, 96, 192, 192),
  ),
}
TIMM_MODELS = {'convit_ti': 'convit_tiny', 'convit_s': 'convit_small'}


def reference_model(arch, pycls_root):
  """(torch model, family) with random, perturbed weights."""
  if arch in TIMM_MODELS:
    convit = ref.import_timm_convit()
    return getattr(convit, TIMM_MODELS[arch])(pretrained=False), 'timm'
  if pycls_root is None:
    raise SystemExit(
      f'{arch} needs --pycls_root (a checkout of facebookresearch/pycls, branch main)'
    )
  model, _, _, _ = ref.build_pycls_vit(pycls_root, arch=arch, **PYCLS_MODELS[arch])
  return model, 'pycls'


def run(arch, pycls_root, batch, seed):
  import jax
  import jax.numpy as jnp

  from vit_jax_stems import convert, models

  torch.manual_seed(seed)
  model, _family = reference_model(arch, pycls_root)
  gen = torch.Generator().manual_seed(seed + 1)
  ref.perturb_parameters(model, gen, scale=0.02)
  if arch.startswith('vit_c'):
    ref.set_bn_running_stats(model, gen, 224, steps=2, batch=4)
  images = ref.random_images(seed + 2, batch, 224)
  start = time.time()
  expected = ref.reference_logits(model, images)
  torch_s = time.time() - start
  state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
  ours = models.create_model(arch, dtype=jnp.float32)
  variables = convert.convert_state_dict(ours, state)
  apply = jax.jit(lambda v, x: ours.apply(v, x, train=False)[0])
  start = time.time()
  got = np.asarray(apply(variables, jnp.asarray(images.transpose(0, 2, 3, 1))))
  jax_s = time.time() - start
  return float(np.abs(got - expected).max()), float(np.abs(expected).max()), torch_s, jax_s


def main():
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument('--pycls_root', default=os.environ.get('PYCLS_ROOT'))
  parser.add_argument(
    '--models',
    nargs='+',
    default=[*TIMM_MODELS, *PYCLS_MODELS],
    choices=[*TIMM_MODELS, *PYCLS_MODELS],
  )
  parser.add_argument('--batch', type=int, default=2)
  parser.add_argument('--tolerance', type=float, default=1e-4)
  args = parser.parse_args()
  failed = []
  for i, arch in enumerate(args.models):
    diff, scale, torch_s, jax_s = run(arch, args.pycls_root, args.batch, seed=100 * (i + 1))
    ok = diff <= args.tolerance
    print(
      f'{arch:10s} max abs logit diff {diff:.2e} (max |logit| {scale:.2f}; torch {torch_s:.1f}s, '
      f'jax compile+run {jax_s:.1f}s) {"OK" if ok else "FAIL"}',
      flush=True,
    )
    if not ok:
      failed.append(arch)
  if failed:
    sys.exit(f'parity above {args.tolerance}: {", ".join(failed)}')


if __name__ == '__main__':
  main()
