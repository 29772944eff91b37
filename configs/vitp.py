r"""ViT_P (patchify stem) with the P1 / pycls recipe; `demo` trains a small ViT_P on mnist5k.

Options after ':' as in configs/vitc.py: size=1gf|4gf|18gf|36gf|72gf, optimizer=adamw|sgd,
epochs=N (default 400), tuned, demo, dataset=mnist5k|cluttered_mnist5k (with demo; patch 8 on
cluttered_mnist5k's 64x64).

Paper recipe:
  python main.py --config configs/vitp.py:size=4gf --workdir gs://BUCKET/vitp4gf \
      --config.data.data_dir=gs://BUCKET/tensorflow_datasets
  Expected (P1 Table 2, 400 epochs, AdamW): ViT_P-1GF 72.3, 4GF 80.4, 18GF 82.1, 36GF 81.8.

Demo (same transformer as the ViT_C demo, patchify stem and one more block, as P1 pairs them):
  python main.py --config configs/vitp.py:demo --workdir workdirs/demo_vitp
  Measured (2-core dev CPU, 2026-12-01): 86.6% top-1 raw, 81.4% EMA (top-5 98.9) on the 1,000
  mnist5k test digits after 15 epochs; seeds 0-2: 86.6-88.2 raw, 81.4-84.5 EMA; 3m16s wall on
  a quiet machine (2026-11-21).
  python main.py --config configs/vitp.py:demo,dataset=cluttered_mnist5k --workdir workdirs/c_vitp
  Measured (2-core dev CPU, 2026-12-01, seed 0): 23.4% top-1 raw, 22.4% EMA after 15 epochs
  (ViT_C's demo: 44.8%); 3m40s wall, 3m08s user CPU.
"""

from configs import common


def get_config(arg=None):
  return common.pycls_family_config(
    arg, 'vit_p', lambda patch: dict(common.DEMO_TRANSFORMER, patch_size=patch, depth=5)
  )
