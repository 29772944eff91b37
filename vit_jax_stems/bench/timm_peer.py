"""The PyTorch peer: timm's VisionTransformer / ConVit with our shapes, trained the usual way.

Run as a subprocess by the benchmark (`python -m vit_jax_stems.bench.timm_peer --spec_json ...`),
so that torch never shares a process (or GPU memory, or threads) with JAX. Only this module
imports torch and timm; both are optional (requirements-reference.txt).

The peer step is the strong PyTorch recipe: bf16 autocast (fp32 master weights, as our bf16
compute with fp32 parameters), `torch.compile` of the model (falls back to eager with a note when
compilation fails), fused AdamW on CUDA (foreach on CPU), the same batch, synthetic data made on
the device, F.scaled_dot_product_attention inside timm's attention (flash / memory-efficient
kernels on GPU). Timing mirrors jax_bench: warmup, then windows of `steps` steps with one
synchronize at the end of each window.

Peers (shapes: docs/references.md#p1-models-pycls and docs/references.md#convit-and-gpsa):
  * pycls patchify ViT -> timm VisionTransformer(img_size, patch_size, embed_dim=hidden,
    depth, num_heads, mlp_ratio=mlp/hidden, qkv_bias, class_token=True, global_pool='token',
    pre-LN blocks, exact GELU, LayerNorm eps 1e-6): the same MACs as our model;
  * ConViT -> timm ConVit(embed_dim=hidden/heads (timm multiplies by heads), num_heads, depth,
    local_up_to_layer=num_gpsa_layers, mlp_ratio, locality_strength); timm convit_tiny /
    convit_small are these with the registered shapes.
No pretrained weights are downloaded: the models are built directly, randomly initialised.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from vit_jax_stems import timm_import

# The directory that holds this copy of the package (the repository root, or site-packages), so
# that the peer subprocess imports the same copy from any working directory.
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def available() -> bool:
  """torch and timm installed (checked without importing them)."""
  import importlib.util  # pylint: disable=g-import-not-at-top

  return all(importlib.util.find_spec(m) is not None for m in ('torch', 'timm'))


def run_subprocess(
  spec: dict,
  *,
  batch_size: int,
  steps: int,
  repeats: int,
  warmup: int,
  dtype: str,
  compile_model: bool,
  timeout_s: float | None = None,
) -> dict:
  """Runs the peer for `spec` (ModelSpec.to_dict()) in a fresh Python; returns its result row."""
  import tempfile  # pylint: disable=g-import-not-at-top

  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, 'peer.json')
    cmd = [
      sys.executable,
      '-m',
      'vit_jax_stems.bench.timm_peer',
      '--spec_json',
      json.dumps(spec),
      '--batch_size',
      str(batch_size),
      '--steps',
      str(steps),
      '--repeats',
      str(repeats),
      '--warmup',
      str(warmup),
      '--dtype',
      dtype,
      '--json',
      out,
    ]
    if not compile_model:
      cmd.append('--no_compile')
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(p for p in (_PACKAGE_PARENT, env.get('PYTHONPATH')) if p)
    try:
      proc = subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=timeout_s, check=False
      )
    except subprocess.TimeoutExpired:  # the table goes on without this peer
      return {'error': f'peer stopped after its time limit of {timeout_s:g} s (--peer_timeout_s)'}
    if proc.returncode != 0 or not os.path.exists(out):
      tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
      return {'error': f'peer exited with {proc.returncode}: ' + ' | '.join(tail)}
    with open(out) as f:
      return json.load(f)


# ------------------------------------------------------------------------------ torch side


def build_peer(spec: dict):
  """(torch module, description) of the timm model with the shapes of `spec`."""
  if spec['stem'] != 'patchify':
    raise ValueError(
      'timm has no conv-stem ViT; compare a conv-stem model with the peer of its '
      'equal-GF patchify twin (cases.peer_spec).'
    )
  hidden, heads, mlp = spec['hidden_size'], spec['num_heads'], spec['mlp_dim']
  mlp_ratio = mlp / hidden
  if int(hidden * mlp_ratio) != mlp:
    raise ValueError(f'mlp_dim={mlp} is not int(hidden*ratio) for any ratio timm can take.')
  with timm_import.without_torchvision():
    if spec['num_gpsa_layers']:
      from timm.models.convit import ConVit  # pylint: disable=g-import-not-at-top

      model = ConVit(
        img_size=spec['image_size'],
        patch_size=spec['patch_size'],
        num_classes=spec['num_classes'],
        embed_dim=hidden // heads,
        num_heads=heads,
        depth=spec['depth'],
        mlp_ratio=mlp_ratio,
        qkv_bias=spec['qkv_bias'],
        local_up_to_layer=spec['num_gpsa_layers'],
        locality_strength=spec['locality_strength'],
      )
      name = f'timm ConVit(D={hidden}, H={heads}, depth={spec["depth"]})'
    else:
      from timm.models.vision_transformer import VisionTransformer  # pylint: disable=g-import-not-at-top

      model = VisionTransformer(
        img_size=spec['image_size'],
        patch_size=spec['patch_size'],
        num_classes=spec['num_classes'],
        global_pool='token',
        embed_dim=hidden,
        depth=spec['depth'],
        num_heads=heads,
        mlp_ratio=mlp_ratio,
        qkv_bias=spec['qkv_bias'],
        class_token=True,
      )
      name = f'timm VisionTransformer(D={hidden}, H={heads}, depth={spec["depth"]})'
  return model, name


def run_peer(
  spec: dict,
  *,
  batch_size: int,
  steps: int,
  repeats: int,
  warmup: int,
  dtype: str,
  compile_model: bool,
) -> dict[str, Any]:
  import torch  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top

  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  torch.backends.cuda.matmul.allow_tf32 = True  # fp32 peers get TF32 like XLA's default
  torch.backends.cudnn.allow_tf32 = True
  torch.manual_seed(0)
  model, name = build_peer(spec)
  model = model.to(device).train()
  n_params = sum(p.numel() for p in model.parameters())
  decay = [p for p in model.parameters() if p.ndim > 1]
  no_decay = [p for p in model.parameters() if p.ndim <= 1]
  opt = torch.optim.AdamW(
    [{'params': decay, 'weight_decay': 0.05}, {'params': no_decay, 'weight_decay': 0.0}],
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    **({'fused': True} if device == 'cuda' else {'foreach': True}),
  )
  size = spec['image_size']
  images = torch.randn(batch_size, 3, size, size, device=device)
  labels = torch.randint(0, spec['num_classes'], (batch_size,), device=device)
  bf16 = dtype == 'bfloat16'
  notes = []

  def sync():
    if device == 'cuda':
      torch.cuda.synchronize()

  runner = model
  if compile_model:
    runner = torch.compile(model)

  def train_step(net):
    with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
      loss = F.cross_entropy(net(images), labels)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss

  # First step = compilation (torch.compile compiles lazily) + one step.
  start = time.perf_counter()
  try:
    train_step(runner)
    sync()
  except Exception as e:  # pylint: disable=broad-except
    if runner is model:
      raise
    notes.append(
      f'torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:160]}); eager fallback'
    )
    print('NOTE:', notes[-1], file=sys.stderr)
    runner = model
    opt.zero_grad(set_to_none=True)
    start = time.perf_counter()
    train_step(runner)
    sync()
  first_step_s = time.perf_counter() - start
  for _ in range(warmup):
    train_step(runner)
  sync()
  if device == 'cuda':
    torch.cuda.reset_peak_memory_stats()

  def windows(fn):
    out = []
    for _ in range(repeats):
      start = time.perf_counter()
      for _ in range(steps):
        fn()
      sync()
      out.append(time.perf_counter() - start)
    return out

  train_windows = windows(lambda: train_step(runner))
  train_step_s = statistics.median(train_windows) / steps
  peak = torch.cuda.max_memory_allocated() if device == 'cuda' else None
  final_loss = float(train_step(runner).detach())

  runner.eval()

  def infer():
    with (
      torch.inference_mode(),
      torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16),
    ):
      return runner(images)

  start = time.perf_counter()
  infer()
  sync()
  infer_first_s = time.perf_counter() - start
  for _ in range(warmup):
    infer()
  sync()
  infer_windows = windows(infer)
  infer_step_s = statistics.median(infer_windows) / steps

  return {
    'peer': name,
    'device': device,
    'device_name': torch.cuda.get_device_name() if device == 'cuda' else 'cpu',
    'torch': torch.__version__,
    'params': n_params,
    'batch_size': batch_size,
    'precision': 'bf16 autocast'
    if bf16
    else 'fp32' + (' (TF32 matmuls)' if device == 'cuda' else ''),
    'compiled': runner is not model,
    'notes': notes,
    'first_step_s': first_step_s,
    'train_window_s': train_windows,
    'train_step_s': train_step_s,
    'train_images_per_s': batch_size / train_step_s,
    'infer_first_s': infer_first_s,
    'infer_window_s': infer_windows,
    'infer_step_s': infer_step_s,
    'infer_images_per_s': batch_size / infer_step_s,
    'device_peak_bytes': peak,
    'final_loss': final_loss,
  }


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--spec_json', required=True, help='ModelSpec.to_dict() as JSON.')
  parser.add_argument('--batch_size', type=int, required=True)
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--dtype', choices=('float32', 'bfloat16'), default='bfloat16')
  parser.add_argument('--no_compile', dest='compile_model', action='store_false')
  parser.add_argument('--json', required=True)
  args = parser.parse_args(argv)
  row = run_peer(
    json.loads(args.spec_json),
    batch_size=args.batch_size,
    steps=args.steps,
    repeats=args.repeats,
    warmup=args.warmup,
    dtype=args.dtype,
    compile_model=args.compile_model,
  )
  with open(args.json, 'w') as f:
    json.dump(row, f, indent=1)


if __name__ == '__main__':
  main()
