"""Pieces shared by the configs: option parsing and the two paper recipes.

Every config starts from `base_config()`, defined with the meaning of each field in
vit_jax_stems/train/config_schema.py (the trainer's checks accept exactly those fields).
"""

import ml_collections

from vit_jax_stems import models, overrides
from vit_jax_stems.data import config as data_config
from vit_jax_stems.train.config_schema import base_config


def parse_options(arg, **defaults):
  """'size=4gf,tuned=false' or 'demo' -> dict over `defaults`, each value typed by its default.

  Syntax (strict booleans, a bare name for true): vit_jax_stems/overrides.py. Unknown names and
  values of the wrong type are errors naming the option.
  """
  items = filter(None, (arg or '').split(','))
  kinds = {key: type(default) for key, default in defaults.items()}
  return {**defaults, **overrides.parse(items, kinds, what='config option')}


# P1 Table 4 (50-epoch tuning): (AdamW lr, wd), (SGD lr, wd) per model. Sizes not in the table
# (36gf, 72gf) use the vitconfigs / P1 400-epoch AdamW values and have no SGD setting.
P1_TUNED = {
  'vit_p_1gf': ((2e-3, 0.20), (1.9, 1.3e-5)),
  'vit_p_4gf': ((2e-3, 0.20), (1.9, 1.3e-5)),
  'vit_p_18gf': ((1e-3, 0.24), (1.1, 1.2e-5)),
  'vit_c_1gf': ((2.5e-3, 0.19), (1.9, 1.3e-5)),
  'vit_c_4gf': ((1e-3, 0.24), (1.3, 2.2e-5)),
  'vit_c_18gf': ((1e-3, 0.24), (1.1, 2.7e-5)),
}
# P1 / pycls vitconfigs 400-epoch AdamW recipe: lr 1e-3, wd 0.24 for 1/4/18GF; 36GF configs
# 7e-4 / 0.24 (P1 text says 6e-4 / 0.28; we follow the released configs).
P1_ADAMW = {
  '1gf': (1e-3, 0.24),
  '4gf': (1e-3, 0.24),
  '18gf': (1e-3, 0.24),
  '36gf': (7e-4, 0.24),
  '72gf': (1e-3, 0.24),
}


PYCLS_SIZES = ('1gf', '4gf', '18gf', '36gf', '72gf')

# Scanned layers (ModelSpec.scan_layers, config.model.scan_layers) from this many blocks on, where
# they pay. Measured on the project's shared 2-core CPU, one XLA thread, train step at batch 2 and
# 224 px, process CPU time (benchmarks/NOTES.md "Scanned layers: compile time"): vit_c_72gf (21
# blocks) compiles in 0.61x the unrolled time; the 11-12-block vit_p_18gf, vit_c_18gf and convit_b
# in 0.96x, 1.09x and 1.52x, so they stay unrolled. The scanned train step took 0.90x to 1.12x the
# unrolled one (median 1.06x over six model and batch pairs) and, at batch 8, half the temporary
# memory. To revisit with the GPU check's `--scan_study` rows.
SCAN_LAYERS_MIN_DEPTH = 20


def scan_layers_pays(depth):
  return depth >= SCAN_LAYERS_MIN_DEPTH


def pycls_family_config(arg, prefix, demo_overrides):
  """Config of `{prefix}_{size}` (vit_p / vit_c) from options 'size=..,optimizer=..,epochs=..,
  tuned,demo,dataset=..'; the demo trains `{prefix}_1gf` with the ModelSpec overrides
  `demo_overrides(patch_size)` on an embedded dataset."""
  opts = parse_options(
    arg, size='1gf', optimizer='adamw', epochs=400, tuned=False, demo=False, dataset='mnist5k'
  )
  c = base_config()
  if opts['demo']:
    demo(c, f'{prefix}_1gf', demo_overrides, opts['optimizer'], opts['dataset'])
    return c
  no_demo_dataset(opts['dataset'])
  if opts['size'] not in PYCLS_SIZES:
    raise ValueError(f'size={opts["size"]!r}: choose one of {PYCLS_SIZES}.')
  pycls_recipe(
    c,
    f'{prefix}_{opts["size"]}',
    opts['size'],
    opts['optimizer'],
    opts['epochs'],
    opts['tuned'],
  )
  return c


def pycls_recipe(c, model_name, size, optimizer, epochs, tuned):
  """P1 / pycls vitconfigs recipe on ImageNet-1k (docs/references.md#p1-training-recipe)."""
  c.model_name = model_name
  c.model.scan_layers = scan_layers_pays(models.get_spec(model_name).depth)
  c.data = data_config.paper_recipe_config('vitc')
  c.batch_size = 2048
  c.total_epochs = float(epochs)
  c.optimizer.wd_mask = 'pycls'  # norms and biases not decayed; cls token, pos embed decayed
  if optimizer == 'adamw':
    lr, wd = P1_TUNED[model_name][0] if tuned else P1_ADAMW[size]
    c.optimizer.update(dict(name='adamw', lr=lr, weight_decay=wd, b1=0.9, b2=0.999, eps=1e-8))
  elif optimizer == 'sgd':
    if model_name not in P1_TUNED:
      raise ValueError(f'P1 Table 4 has no SGD setting for {model_name}; sizes: 1gf, 4gf, 18gf.')
    lr, wd = P1_TUNED[model_name][1]
    c.optimizer.update(dict(name='sgd', lr=lr, weight_decay=wd, momentum=0.9, nesterov=True))
  else:
    raise ValueError(f'optimizer={optimizer!r}: use adamw or sgd.')
  c.schedule.update(
    dict(
      name='pycls_cosine', per_epoch=True, warmup_epochs=5.0, warmup_factor=0.1, min_lr_factor=0.005
    )
  )
  c.ema.update(dict(enabled=True, period=32, alpha=1e-5))
  c.precise_bn_samples = (
    8192  # pycls `pycls/core/config.py` BN.USE_PRECISE_STATS, BN.NUM_SAMPLES_PRECISE
  )
  c.eval_every_epochs = 10.0
  c.checkpoint_every_epochs = 1.0
  c.log_every_steps = 100


# The demos' SGD (option optimizer=sgd; also the base point of a sweep's SGD trials): P1 Table 4
# ViT_C-1GF and ViT_P-1GF SGD lr 1.9 at batch 2048, scaled linearly to the demo batch of 128
# (1.9 * 128 / 2048 = 0.119, rounded), and their weight decay 1.3e-5; nesterov momentum 0.9.
DEMO_SGD = dict(name='sgd', lr=0.12, weight_decay=1.3e-5, momentum=0.9, nesterov=True)

# The demos' datasets (option dataset=...): the data config, and the patch size that gives both
# the same 8x8 tokens, so that the transformer costs the same on either.
DEMO_DATASETS = {
  'mnist5k': (data_config.default_config, 4),  # 28x28 digits upscaled to 32x32
  'cluttered_mnist5k': (data_config.cluttered_config, 8),  # 64x64 canvas
}


def demo(c, model_name, model_overrides, optimizer='adamw', dataset='mnist5k'):
  """A scaled-down model on an embedded dataset (`DEMO_DATASETS`), sized for a 2-core CPU.

  model_overrides(patch_size) -> the ModelSpec overrides. AdamW (or SGD: `DEMO_SGD`) with the
  pycls weight-decay mask and schedule shape (per-step lr for so short a run), EMA with a rate
  raised so that a 15-epoch run averages over about the last epoch.
  """
  if dataset not in DEMO_DATASETS:
    raise ValueError(f'dataset={dataset!r}: choose one of {", ".join(DEMO_DATASETS)}.')
  data_fn, patch_size = DEMO_DATASETS[dataset]
  c.model_name = model_name
  model = model_overrides(patch_size)
  c.model = ml_collections.ConfigDict(dict(model, scan_layers=scan_layers_pays(model['depth'])))
  c.dtype = 'float32'
  c.data = data_fn()
  c.batch_size = 128
  c.eval_batch_size = 200
  c.total_epochs = 15.0
  if optimizer == 'adamw':
    c.optimizer.update(dict(name='adamw', lr=2e-3, weight_decay=0.05, wd_mask='pycls'))
  elif optimizer == 'sgd':
    c.optimizer.update(dict(DEMO_SGD, wd_mask='pycls'))
  else:
    raise ValueError(f'optimizer={optimizer!r}: use adamw or sgd.')
  c.schedule.update(
    dict(
      name='pycls_cosine',
      per_epoch=False,
      warmup_epochs=1.0,
      warmup_factor=0.1,
      min_lr_factor=0.005,
    )
  )
  c.ema.update(dict(enabled=True, period=1, alpha=1e-3))
  c.log_every_steps = 50
  c.eval_every_epochs = 5.0
  c.checkpoint_every_epochs = 5.0
  c.keep_checkpoints = 2


def no_demo_dataset(dataset):
  """The paper recipes train on ImageNet: the option dataset= belongs to the demo."""
  if dataset != 'mnist5k':
    raise ValueError(f'dataset={dataset}: a demo option; add demo (e.g. demo,dataset={dataset}).')


# One small transformer for every demo so the three families compare at equal width (the patch
# size comes with the dataset, DEMO_DATASETS).
DEMO_TRANSFORMER = dict(hidden_size=64, num_heads=4, mlp_dim=128)
