r"""ConViT with the DeiT recipe of P2 (facebookresearch/convit main.py defaults); `demo` on mnist5k.

Options after ':': size=ti|ti_plus|s|s_plus|b|b_plus (default ti), stem=patchify|conv
(conv: GPSA over a ViT_C conv stem, the models convit_c_*; only ti, s, b), demo,
optimizer=adamw|sgd (sgd with demo only: the demos' SGD, configs/common.py DEMO_SGD).
dataset=mnist5k|cluttered_mnist5k (with demo; patch 8 on cluttered_mnist5k's 64x64).

Recipe: AdamW (eps 1e-8), lr 5e-4 * batch / 512 with batch 1024 ("+" models: 4e-4, batch 512),
wd 0.05 not applied to 1-D parameters, biases, pos_embedding and cls_token; 300 epochs; warmup
5 epochs linear from 1e-6; cosine to 1e-5, set per epoch (timm scheduler); drop path 0.1;
RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25, mixup 0.8 / CutMix 1.0, label smoothing
0.1, repeated augmentation x3; no EMA.

  python main.py --config configs/convit.py:size=s --workdir gs://BUCKET/convit_s \
      --config.data.data_dir=gs://BUCKET/tensorflow_datasets
  Expected (P2 Table 1): ConViT-Ti 73.1, Ti+ 76.7, S 81.3, S+ 82.2, B 82.4, B+ 82.5 top-1.

Demo (same width as the ViT demos; 3 GPSA blocks then 2 MHSA blocks; EMA as the ViT demos so
the three runs differ only by the model):
  python main.py --config configs/convit.py:demo --workdir workdirs/demo_convit
  Measured (2-core dev CPU, 2026-12-01): 86.7% top-1 raw, 80.0% EMA (top-5 99.7) on the 1,000
  mnist5k test digits after 15 epochs; seeds 0-2: 83.9-86.7 raw, 79.1-81.2 EMA; 3m12s wall on
  a quiet machine (2026-11-21).
  python main.py --config configs/convit.py:demo,dataset=cluttered_mnist5k --workdir workdirs/c_convit
  Measured (2-core dev CPU, 2026-12-01, seed 0): 32.4% top-1 raw, 30.4% EMA after 15 epochs
  (ViT_C's demo: 44.8%, ViT_P's: 23.4%); 2m35s wall, 2m58s user CPU.
"""

from configs import common

SIZES = ('ti', 'ti_plus', 's', 's_plus', 'b', 'b_plus')


def get_config(arg=None):
  opts = common.parse_options(
    arg, size='ti', stem='patchify', optimizer='adamw', demo=False, dataset='mnist5k'
  )
  c = common.base_config()
  if opts['demo']:
    demo_model = dict(common.DEMO_TRANSFORMER, depth=5, num_gpsa_layers=3)
    common.demo(
      c,
      'convit_ti',
      lambda patch: dict(demo_model, patch_size=patch),
      opts['optimizer'],
      opts['dataset'],
    )
    return c
  common.no_demo_dataset(opts['dataset'])
  if opts['optimizer'] != 'adamw':
    raise ValueError(f'optimizer={opts["optimizer"]}: the DeiT recipe is AdamW only (SGD: demo).')
  size, stem = opts['size'], opts['stem']
  if size not in SIZES:
    raise ValueError(f'size={size!r}: choose one of {SIZES}.')
  if stem not in ('patchify', 'conv'):
    raise ValueError(f'stem={stem!r}: choose patchify or conv.')
  if stem == 'conv' and size.endswith('_plus'):
    raise ValueError(f'stem=conv exists for ti, s and b only (convit_c_*), not {size}.')
  c.model_name = ('convit_c_' if stem == 'conv' else 'convit_') + size
  c.model.drop_path_rate = 0.1
  c.model.scan_layers = common.scan_layers_pays(common.models.get_spec(c.model_name).depth)
  c.data = common.data_config.paper_recipe_config('convit')
  plus = size.endswith('_plus')
  c.batch_size = 512 if plus else 1024
  c.total_epochs = 300.0
  c.optimizer.update(
    dict(
      name='adamw',
      lr=4e-4 if plus else 5e-4,
      lr_base_batch=512,
      weight_decay=0.05,
      wd_mask='deit',
      b1=0.9,
      b2=0.999,
      eps=1e-8,
    )
  )
  c.schedule.update(
    dict(name='timm_cosine', per_epoch=True, warmup_epochs=5.0, warmup_lr=1e-6, min_lr=1e-5)
  )
  c.ema.enabled = False
  c.eval_every_epochs = 10.0
  c.checkpoint_every_epochs = 1.0
  return c
