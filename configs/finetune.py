r"""Fine-tuning a trained model on any TFDS image dataset, at any resolution, or a linear probe.

  python main.py --config configs/finetune.py:init=SOURCE[,OPTIONS] --workdir DIR

SOURCE (required) is a weights directory (converted PyTorch weights, or
`python -m vit_jax_stems.export --workdir RUN --format weights`) or a training run directory (its
latest checkpoint, the EMA weights when the run kept them). The model is SOURCE's architecture,
read from its JSON; the head has the new dataset's classes (a new all-zero head when the count
differs, as pycls initialises its head; kept when it is the same) and a position embedding of
another token grid is resampled to the new image size (bicubic, as timm's
`resample_abs_pos_embed`; vit_jax_stems/train/pretrained.py). The starting weights are evaluated
before the first step (`config.eval_at_start`, step 0 of metrics.jsonl): the "before" of the run.

Options after ':' (comma-separated):
  init=SOURCE         see above.
  dataset=NAME        any TFDS image classification dataset (default imagenet2012); the embedded
                      mnist5k and cluttered_mnist5k use their own data configs
                      (vit_jax_stems/data/config.py).
  train_split=, eval_split=  default train and test (validation for imagenet2012).
  image_size=N        default: the dataset's own size for the embedded ones, else SOURCE's.
  probe               a linear probe: only the head trains (config.linear_probe: an optax mask
                      freezes the rest; the backbone runs in eval mode, BatchNorm frozen).
  epochs=N            default 20 (P1's fine-tuning length).
  lr=X                peak AdamW lr at batch 512, scaled linearly to config.batch_size; default
                      1e-4 for full fine-tuning, 1e-3 for a probe.
  recipe=p1_in21k | p1_384   the P1 fine-tuning recipes below (they set dataset and sizes).

Full fine-tuning trains every weight with AdamW at a lower lr than from scratch, weight decay 0
(P1's fine-tuning setting), a cosine schedule with one warmup epoch, no mixup, CutMix, AutoAugment
or label smoothing: a random resized crop and a flip (none for the digit datasets). The 1e-4 /
1e-3 learning rates at batch 512 are this project's defaults, not values of either paper.

The P1 recipes (P1 Sec. 4, Table 2 and App. C; docs/references.md#experiment-protocols and
#p1-results):
  recipe=p1_in21k   IN-21k -> IN-1k: the pre-trained model fine-tuned on imagenet2012 for 20 epochs
                    with weight decay 0, at 224 px and batch 2048, with the P1 data recipe minus
                    mixup/CutMix, EMA and precise BN as P1 trains. P1 does not state the
                    fine-tuning lr; this recipe uses 1/10 of the size's pre-training lr (a choice of
                    this project). Command (IN-21k weights converted with vit_jax_stems.convert):
      python main.py --config configs/finetune.py:init=weights/vit_c_18gf_in21k,recipe=p1_in21k \
          --workdir gs://BUCKET/ft --config.data.data_dir=gs://BUCKET/tensorflow_datasets
    Should reach (P1 Table 2, IN-21k -> IN-1k top-1): ViT_P-4GF 79.4, ViT_C-4GF 81.2,
    ViT_P-18GF 83.6, ViT_C-18GF 84.9, ViT_P-36GF 84.9, ViT_C-36GF 85.8; 72GF (P1 App. C):
    ViT_P 85.8, ViT_C 86.4. Not reproduced here (no ImageNet on this machine).
  recipe=p1_384     the 72GF models' fine-tune at 384 px (P1 App. C: ViT_C-72GF reaches 12.6% error,
                    87.4 top-1, against 13.6 at 224): p1_in21k at image_size 384. P1 gives the result,
                    not the schedule; this reuses p1_in21k's.

A demo on this CPU (README, "Fine-tuning"): the ViT_C demo run on mnist5k at 32 px, fine-tuned on
cluttered_mnist5k at 48 px (the position embedding resampled from 8x8 to 12x12 tokens):
  python main.py --config configs/finetune.py:init=workdirs/demo_vitc,dataset=cluttered_mnist5k,image_size=48,epochs=5,lr=2e-3 \
      --workdir workdirs/ft_vitc
  Measured (2-core dev CPU at load 4-5, 2026-12-02): top-1 16.2% before -> 28.3% after 5 epochs,
  4m46s wall; with `probe` (lr=1e-2) 16.2% -> 20.4%, 1m45s.
"""

import ml_collections

from configs import common
from vit_jax_stems import models
from vit_jax_stems.data import config as data_config
from vit_jax_stems.train import pretrained

# Peak AdamW lr at batch 512 (scaled linearly, config.optimizer.lr_base_batch): this project's
# defaults for a full fine-tune and for a linear probe.
FINETUNE_LR = 1e-4
PROBE_LR = 1e-3
LR_BASE_BATCH = 512

# The embedded datasets bring their own data config (size, crop, augmentation).
EMBEDDED = {
  'mnist5k': data_config.default_config,
  'cluttered_mnist5k': data_config.cluttered_config,
}

RECIPES = ('none', 'p1_in21k', 'p1_384')


def get_config(arg=None):
  opts = common.parse_options(
    arg,
    init='',
    dataset='imagenet2012',
    train_split='train',
    eval_split='',
    image_size=0,
    probe=False,
    epochs=20,
    lr=0.0,
    recipe='none',
  )
  if not opts['init']:
    raise ValueError(
      'configs/finetune.py needs init=SOURCE: a weights directory or a training run directory '
      '(e.g. configs/finetune.py:init=workdirs/demo_vitc,dataset=cluttered_mnist5k).'
    )
  if opts['recipe'] not in RECIPES:
    raise ValueError(f'recipe={opts["recipe"]!r}: choose one of {", ".join(RECIPES)}.')
  arch, overrides, source_size = pretrained.architecture(opts['init'])

  c = common.base_config()
  c.model_name = arch
  c.model = ml_collections.ConfigDict(overrides)
  if 'scan_layers' not in c.model:  # converted weights say nothing: the trainer configs' rule
    c.model.scan_layers = common.scan_layers_pays(models.get_spec(arch, **overrides).depth)
  c.init_weights = opts['init']
  c.eval_at_start = True
  c.linear_probe = opts['probe']
  c.dtype = 'float32' if opts['dataset'] in EMBEDDED else 'bfloat16'
  c.data = data_of(opts['dataset'], source_size)
  c.data.train_split = opts['train_split']
  c.data.eval_split = opts['eval_split'] or (
    'validation' if opts['dataset'] == 'imagenet2012' else 'test'
  )
  if opts['image_size']:
    c.data.image_size = opts['image_size']
  c.batch_size = 512 if opts['dataset'] not in EMBEDDED else 128
  c.eval_batch_size = 1024 if opts['dataset'] not in EMBEDDED else 200
  c.total_epochs = float(opts['epochs'])
  c.optimizer.update(
    dict(
      name='adamw',
      lr=opts['lr'] or (PROBE_LR if opts['probe'] else FINETUNE_LR),
      lr_base_batch=LR_BASE_BATCH,
      weight_decay=0.0,  # P1 fine-tunes with weight decay 0
      wd_mask='pycls',
    )
  )
  c.schedule.update(
    dict(name='pycls_cosine', per_epoch=False, warmup_epochs=1.0, warmup_factor=0.1)
  )
  c.log_every_steps = 50
  c.eval_every_epochs = 5.0  # and at the start and the end
  c.checkpoint_every_epochs = 1.0
  c.keep_checkpoints = 2
  if opts['recipe'] != 'none':
    p1_recipe(c, arch, opts)
  return c


def data_of(dataset, source_size):
  """The embedded datasets' own data config; for any other TFDS dataset a transfer config at
  SOURCE's size: random resized crop and flip, nothing stronger."""
  if dataset in EMBEDDED:
    return EMBEDDED[dataset]()
  data = data_config.default_config()
  data.name = dataset
  data.image_size = source_size
  data.augment = data_config.default_augment_config()  # crop 0.08-1, flip; no mixup
  return data


def p1_recipe(c, arch, opts):
  """P1's IN-21k -> IN-1k fine-tune (`p1_in21k`) and its 384-px variant (`p1_384`); module doc."""
  if opts['dataset'] != 'imagenet2012':
    raise ValueError(f'recipe={opts["recipe"]} fine-tunes on imagenet2012; drop dataset=.')
  size = arch.rsplit('_', 1)[-1]
  if not arch.startswith(('vit_p_', 'vit_c_')) or size not in common.PYCLS_SIZES:
    raise ValueError(f"recipe={opts['recipe']} is P1's, for vit_p_* / vit_c_*; init is a {arch}.")
  image_size = 384 if opts['recipe'] == 'p1_384' else 224
  c.data = data_config.paper_recipe_config('vitc')
  c.data.augment.mixup_alpha = c.data.augment.cutmix_alpha = 0.0
  c.data.image_size = opts['image_size'] or image_size
  c.batch_size = 2048
  pretrain_lr = common.P1_ADAMW[size][0]
  c.optimizer.update(
    dict(lr=opts['lr'] or pretrain_lr / 10, lr_base_batch=None, b1=0.9, b2=0.999, eps=1e-8)
  )
  c.schedule.update(dict(per_epoch=True, warmup_epochs=1.0, min_lr_factor=0.005))
  c.ema.update(dict(enabled=True, period=32, alpha=1e-5))
  c.precise_bn_samples = 0 if c.linear_probe else 8192
  c.log_every_steps = 100
