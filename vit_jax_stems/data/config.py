"""Data and augmentation configuration: one ConfigDict with every knob of the input pipeline.

`default_config()` trains on the embedded `mnist5k` dataset (no download, CPU-sized),
`cluttered_config()` on the embedded, harder `cluttered_mnist5k`;
`paper_recipe_config('vitc' | 'convit')` gives the ImageNet recipes of the two papers:
P1 = "Early Convolutions Help Transformers See Better" (pycls, vitconfigs branch),
P2 = ConViT (DeiT recipe, facebookresearch/convit `main.py` defaults on top of timm).
"""

import ml_collections
from ml_collections import config_dict

# ImageNet RGB mean/std on the [0, 1] scale, the one copy (the data pipeline and ModelSpec read it).
# Sources: pycls `pycls/datasets/imagenet.py` _MEAN/_STD (from fb.resnet.torch; stored there in BGR
# order because pycls decodes with OpenCV, the values are the same) and timm
# `timm/data/constants.py` IMAGENET_DEFAULT_MEAN/IMAGENET_DEFAULT_STD, used by DeiT/ConViT.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def default_augment_config() -> ml_collections.ConfigDict:
  """Per-example and per-batch training augmentations; every piece can be switched off."""
  return ml_collections.ConfigDict(
    dict(
      # Inception-style random resized crop, decoded fused with the crop for JPEGs
      # (area and aspect as fractions of the source image; P1 and P2 both use 0.08-1 and 3/4-4/3).
      random_resized_crop=True,
      area_min=0.08,
      area_max=1.0,
      aspect_min=3 / 4,
      aspect_max=4 / 3,
      flip=True,  # horizontal flip with probability 1/2
      autoaugment=False,  # pycls AutoAugment "policy v0" (P1)
      randaugment=config_dict.placeholder(
        str
      ),  # None or a timm string such as 'rand-m9-mstd0.5-inc1' (P2)
      # Colour that the geometric AutoAugment/RandAugment ops fill with, 0-255 RGB. None: pycls's
      # (128, 128, 128) for AutoAugment, round(255 * mean) for RandAugment as DeiT passes it to timm.
      augment_fill=config_dict.placeholder(tuple),
      pca_lighting_std=0.0,  # AlexNet PCA lighting noise std (pycls TRAIN.PCA_STD; P1 uses 0.1)
      random_erasing_prob=0.0,  # timm RandomErasing, mode 'pixel', one box (P2 uses 0.25)
      mixup_alpha=0.0,
      cutmix_alpha=0.0,
      mix_switch_prob=0.5,  # probability of CutMix when both alphas > 0 (timm `switch_prob`)
      # Examples that share one mixup/CutMix draw and pair up (the references' per-GPU batch); must
      # divide the per-step batch. Recipes set their reference's value.
      mix_group_size=64,
      label_smoothing=0.0,
      # Repeated augmentation (DeiT RASampler): each example appears this many times in a row with
      # different augmentations, the epoch keeps its length. 1 = off; P2 uses 3.
      repeated_augmentation=1,
    )
  )


def default_config() -> ml_collections.ConfigDict:
  """Defaults for the embedded 28x28 `mnist5k` digits, upscaled to 32x32: trains on a CPU in minutes."""
  config = ml_collections.ConfigDict(
    dict(
      name='mnist5k',  # any TFDS image classification dataset name, e.g. 'imagenet2012'
      data_dir=config_dict.placeholder(
        str
      ),  # None: $TFDS_DATA_DIR or ~/tensorflow_datasets; gs:// paths work
      manual_dir=config_dict.placeholder(
        str
      ),  # imagenet2012 only; None: <data_dir>/downloads/manual
      train_split='train',
      eval_split='test',
      # Train on a class-balanced subset: the first floor(n_c * f) examples of each class c of
      # train_split in its TFDS record order (P2 Table 2; vit_jax_stems/data/README.md). 1.0 = all.
      train_fraction=1.0,
      image_key='image',
      label_key='label',
      image_size=32,
      crop_pct=0.875,  # eval: resize shorter side to image_size / crop_pct, then centre crop
      interpolation='bilinear',  # 'bilinear' | 'bicubic' (resizes; AutoAugment warps are always bilinear)
      antialias=True,  # antialiased downscaling, as PIL (timm); pycls's cv2 resize does not
      mean=IMAGENET_MEAN,
      std=IMAGENET_STD,
      shuffle_buffer=10_000,  # examples (still JPEG bytes) in the per-epoch shuffle buffer
      cache=False,  # keep the encoded records in RAM after the first epoch
      prefetch=2,  # batches prepared ahead on the host
      augment=default_augment_config(),
    )
  )
  # Digits: mirrored digits are other symbols and a tight crop cuts strokes away.
  config.augment.flip = False
  config.augment.area_min = 0.6
  config.augment.label_smoothing = 0.1
  return config


def cluttered_config() -> ml_collections.ConfigDict:
  """The embedded `cluttered_mnist5k` at its own 64x64: the whole canvas at train and eval.

  The digit may sit at the canvas edge, so neither a random crop (it could cut the digit out and
  leave the label wrong) nor an eval centre crop (crop_pct < 1 trims the border) is used; the
  random placement in the dataset is the variation.
  """
  config = default_config()
  config.name = 'cluttered_mnist5k'
  config.image_size = 64
  config.crop_pct = 1.0
  config.augment.random_resized_crop = False
  return config


def train_fraction_problem(value) -> str | None:
  """What is wrong with `config.data.train_fraction` (None if nothing); one statement of its range
  for the config checks and for the data pipeline used on its own."""
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
    return (
      f'config.data.train_fraction must be in (0, 1] (1.0 = the whole train split), got {value!r}.'
    )
  return None


def paper_recipe_config(recipe: str) -> ml_collections.ConfigDict:
  """ImageNet-1k data recipe of P1 ('vitc', also right for ViT_P) or P2 ('convit').

  Sources: docs/references.md#p1-training-recipe and docs/references.md#convit-recipe-deit.
  """
  config = default_config()
  config.name = 'imagenet2012'
  config.train_split = 'train'
  config.eval_split = 'validation'
  config.image_size = 224
  config.crop_pct = 224 / 256  # both papers: resize 256, centre crop 224
  config.shuffle_buffer = 32_768  # ~3.6 GB of ImageNet JPEG bytes per host
  aug = default_augment_config()
  aug.area_min, aug.area_max = 0.08, 1.0
  aug.aspect_min, aug.aspect_max = 3 / 4, 4 / 3
  aug.flip = True
  aug.mixup_alpha, aug.cutmix_alpha, aug.mix_switch_prob = 0.8, 1.0, 0.5
  aug.label_smoothing = 0.1
  if recipe == 'vitc':
    # pycls vitconfigs ViT-*_adamw yaml: TRAIN.AUGMENT AutoAugment, MIXUP_ALPHA 0.8, CUTMIX_ALPHA 1.0,
    # LABEL_SMOOTHING 0.1; pycls config.py TRAIN.PCA_STD 0.1; pycls net.py picks mixup or cutmix 50/50.
    # pycls resizes with cv2 INTER_LINEAR (transforms.py), which does not antialias.
    config.interpolation = 'bilinear'
    config.antialias = False
    aug.autoaugment = True
    aug.pca_lighting_std = 0.1
    # pycls vitconv_baselines ViT-C-4.0GF_adamw_8gpus.yaml: batch 2048 over 8 GPUs, mixed per GPU.
    aug.mix_group_size = 256
  elif recipe == 'convit':
    # facebookresearch/convit main.py defaults (DeiT): --aa rand-m9-mstd0.5-inc1, --reprob 0.25,
    # --mixup 0.8 --cutmix 1.0 --mixup-switch-prob 0.5, --smoothing 0.1, bicubic, repeated aug (3 repeats).
    # Colour jitter 0.4 is a DeiT flag too, but timm skips colour jitter when RandAugment is on.
    config.interpolation = 'bicubic'
    config.antialias = True
    aug.randaugment = 'rand-m9-mstd0.5-inc1'
    aug.random_erasing_prob = 0.25
    aug.repeated_augmentation = 3
    aug.mix_group_size = 64  # convit main.py --batch-size 64 per GPU (timm Mixup per GPU batch)
  else:
    raise ValueError(f"Unknown recipe {recipe!r}: use 'vitc' (P1, pycls) or 'convit' (P2, DeiT).")
  config.augment = aug
  return config
