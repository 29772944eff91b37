r"""ViT_C (conv stem) with the P1 / pycls recipe; `demo` trains a small ViT_C on mnist5k on a CPU.

Options after ':' (comma-separated): size=1gf|4gf|18gf|36gf|72gf (default 1gf),
optimizer=adamw|sgd (with demo: the demos' SGD, configs/common.py DEMO_SGD), epochs=N (P1: 100,
200 or 400; default 400), tuned (P1 Table 4 lr/wd, the 50-epoch tuning values, instead of the
400-epoch recipe), demo, and with demo dataset=mnist5k|cluttered_mnist5k (default mnist5k;
cluttered_mnist5k: 64x64 canvases, patch 8 and a stem of three stride-2 convs, the same 8x8
tokens; vit_jax_stems/data/README.md).

Paper recipe (ImageNet-1k prepared for TFDS, see the README):
  python main.py --config configs/vitc.py:size=4gf --workdir gs://BUCKET/vitc4gf \
      --config.data.data_dir=gs://BUCKET/tensorflow_datasets
  Expected (P1 Table 2, 400 epochs, AdamW): ViT_C-1GF 75.3, 4GF 81.4, 18GF 83.0, 36GF 83.2
  top-1. P1 trained 4GF on 64 V100s; not reproduced here.

Demo (this repo's CPU check):
  python main.py --config configs/vitc.py:demo --workdir workdirs/demo_vitc
  Measured (2-core dev CPU, 2026-12-01): 94.8% top-1 raw, 93.4% EMA (top-5 99.6 / 99.2) on the
  1,000 mnist5k test digits after 15 epochs (465 steps); seeds 0-2 (--config.seed=N): 93.9-95.5
  raw, 93.4-94.6 EMA. 3m00s wall on a quiet machine (2026-11-21) plus a separate `--mode eval`.
  Epoch 5: 79.5%, epoch 10: 92.1% raw.
  python main.py --config configs/vitc.py:demo,dataset=cluttered_mnist5k --workdir workdirs/c_vitc
  Measured (2-core dev CPU shared with other jobs, 2026-12-01): 44.8% top-1 raw, 41.8% EMA after
  15 epochs (epoch 5: 21.1%, epoch 10: 42.0% raw; 73% train accuracy); 11m04s wall, 3m23s user CPU.
"""

from configs import common

# Demo conv stems, P1's shape (3x3 stride-2 convs doubling the width, then a 1x1 to the hidden
# size): two stride-2 convs for patch 4 (mnist5k, 32x32), three for patch 8 (cluttered_mnist5k,
# 64x64). Each costs about one transformer block, so the demo has one block fewer than ViT_P's.
DEMO_STEMS = {
  4: dict(stem_kernels=(3, 3, 1), stem_strides=(2, 2, 1), stem_channels=(16, 32, 64)),
  8: dict(stem_kernels=(3, 3, 3, 1), stem_strides=(2, 2, 2, 1), stem_channels=(16, 32, 64, 64)),
}


def get_config(arg=None):
  return common.pycls_family_config(
    arg,
    'vit_c',
    lambda patch: dict(common.DEMO_TRANSFORMER, patch_size=patch, depth=4, **DEMO_STEMS[patch]),
  )
