"""The training config's fields and their defaults: every config in configs/ starts from
`base_config()`, and `config_checks` accepts exactly the fields defined here.

Fields (all overridable as --config.a.b=value):
  model_name            registered model (vit_jax_stems.models.list_models()).
  model                 ModelSpec overrides (e.g. depth, drop_path_rate); num_classes comes from
                        the dataset, image_size from data.image_size.
  dtype                 compute dtype: 'bfloat16' (accelerators; the papers used fp16 AMP) or
                        'float32'. Parameters and optimizer state are always float32.
  init_weights          weights to start from (fine-tuning): a weights directory (converted
                        PyTorch weights, `export --format weights`) or a training run directory
                        (its latest checkpoint); vit_jax_stems/train/pretrained.py.
  linear_probe          train only the classifier head (params/head): the optimizer leaves every
                        other parameter where it is (optax.multi_transform with set_to_zero, so
                        neither weight decay nor momentum moves it) and the step runs the backbone
                        in eval mode (BatchNorm statistics frozen, no drop path), gradients stopped
                        at the pre-logits.
  eval_at_start         evaluate the starting weights before the first step of a fresh run (the
                        "before" of a fine-tuning run), logged at step 0.
  data                  vit_jax_stems.data config (dataset, image size, augmentations, mixup,
                        label smoothing; train_fraction in (0, 1]: a class-balanced subset of
                        the train split, steps per epoch follow; vit_jax_stems/data/README.md).
  batch_size            global batch per optimizer update (split over every device).
  eval_batch_size       global eval batch.
  evals                 evaluators besides data.eval_split, each (dataset, split, name) or
                        (dataset, split, name, data_dir), e.g. (('imagenet_v2', 'test', 'v2'),);
                        reported as eval/<name>/top1 (vit_jax_stems/train/evaluate.py).
  total_{epochs|steps|examples}  training length (exactly one).
  optimizer             name adamw|sgd, lr (peak), lr_base_batch (lr scales by batch/this; None
                        = no scaling), weight_decay, wd_mask pycls|deit|all|none, b1 b2 eps,
                        momentum nesterov (sgd), grad_clip_norm (None = off), accum_steps.
  schedule              name pycls_cosine|timm_cosine|constant, per_epoch (lr set once per
                        epoch), warmup_{epochs|steps|examples}, warmup_factor + min_lr_factor
                        (pycls, relative), warmup_lr + min_lr (timm, absolute).
  ema                   enabled, period (iterations), alpha (pycls OPTIM.EMA_ALPHA).
  num_devices           use only the first N devices (single process; tests); None = all.
  mesh, sharding_rules, min_size_to_shard_mb  see vit_jax_stems/train/sharding.py.
  log_every_steps, eval_every_{epochs|steps}, checkpoint_every_{epochs|steps},
  keep_checkpoints, async_checkpoints, profile_first_step (None = no profile),
  profile_num_steps, seed.
  precise_bn_samples    recompute BatchNorm statistics over this many training samples before
                        each eval (pycls precise BN; 0 = off; only models with BN, i.e. ViT_C).
"""

import ml_collections
from ml_collections import config_dict

from vit_jax_stems.data import config as data_config


def base_config():
  c = ml_collections.ConfigDict()
  c.model_name = ''
  c.model = ml_collections.ConfigDict()
  c.dtype = 'bfloat16'
  c.init_weights = config_dict.placeholder(str)
  c.linear_probe = False
  c.eval_at_start = False
  c.seed = 0
  c.data = data_config.default_config()
  c.batch_size = 2048
  c.eval_batch_size = 1024
  c.evals = ()
  c.num_devices = config_dict.placeholder(int)  # None: every device of every process
  c.total_epochs = config_dict.placeholder(float)
  c.total_steps = config_dict.placeholder(int)
  c.total_examples = config_dict.placeholder(int)
  c.optimizer = ml_collections.ConfigDict(
    dict(
      name='adamw',
      lr=1e-3,
      lr_base_batch=config_dict.placeholder(int),
      weight_decay=0.05,
      wd_mask='pycls',
      b1=0.9,
      b2=0.999,
      eps=1e-8,
      momentum=0.9,
      nesterov=True,
      grad_clip_norm=config_dict.placeholder(float),
      accum_steps=1,
    )
  )
  c.schedule = ml_collections.ConfigDict(
    dict(
      name='pycls_cosine',
      per_epoch=True,
      warmup_epochs=config_dict.placeholder(float),
      warmup_steps=config_dict.placeholder(int),
      warmup_examples=config_dict.placeholder(int),
      warmup_factor=0.1,
      min_lr_factor=0.005,
      warmup_lr=1e-6,
      min_lr=1e-5,
    )
  )
  c.ema = ml_collections.ConfigDict(dict(enabled=False, period=32, alpha=1e-5))
  c.mesh = (('data', -1), ('fsdp', 1))
  c.sharding_rules = (('.*', 'fsdp'),)  # with fsdp size 1 this is plain data parallelism
  # big_vision `big_vision/sharding.py` fsdp(min_size_to_shard_mb=4): smaller leaves replicate.
  c.min_size_to_shard_mb = 4.0
  c.log_every_steps = 100
  c.eval_every_epochs = config_dict.placeholder(float)
  c.eval_every_steps = config_dict.placeholder(int)
  c.checkpoint_every_epochs = config_dict.placeholder(float)
  c.checkpoint_every_steps = config_dict.placeholder(int)
  c.keep_checkpoints = 3
  c.async_checkpoints = True
  c.profile_first_step = config_dict.placeholder(int)
  c.profile_num_steps = 5
  c.precise_bn_samples = 0
  return c
