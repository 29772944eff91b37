"""ModelSpec: the complete, validated description of one vision transformer.

Every model in the zoo is a `ModelSpec`; the Flax module, the complexity counter, the converter and
the configs all read the same object, so a shape can only be stated once. Validation happens here,
in plain Python, so a wrong stem or head count fails before anything is traced or compiled.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Iterable
from typing import Literal

from vit_jax_stems import overrides as overrides_lib
from vit_jax_stems.data.config import IMAGENET_MEAN, IMAGENET_STD  # imports no TensorFlow

Family = Literal['pycls', 'convit']
Stem = Literal['patchify', 'conv']


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """Architecture of a ViT_P / ViT_C (pycls family) or ConViT (convit family) model.

  `family` decides the class-token handling and the initialisers:
    * pycls: the class token is prepended before the first block and the position embedding has
      a slot for it (pycls `ViT.forward`);
    * convit: position embedding only over patches, the class token joins after the last GPSA
      block (`num_gpsa_layers`), as timm/convit `forward_features`.
  `stem` is independent of the family, which gives the ConViT-over-conv-stem models.

  `scan_layers` runs the blocks of each kind as one `nn.scan` over stacked parameters (pycls: one
  scan over all blocks; convit: one over the GPSA blocks, one over the rest), which compiles the
  block once instead of `depth` times. It changes the parameter layout, never the outputs:
    * False (the registered models, hence the parity tests and the bench's default): per block,
      `params['encoder']['block03']`;
    * True: stacked, `params['encoder']['blocks' | 'gpsa_blocks' | 'mhsa_blocks']` with a leading
      layer axis (vit_jax_stems/models/layers_layout.py).
  Per block is the external format: converters, weights directories, `config.init_weights` and
  the locality analysis speak it and convert at the edge; a trainer checkpoint keeps its run's own
  layout (config.json records the field). The trainer configs turn it on from 20 blocks on (the
  72GF models; configs/common.py `SCAN_LAYERS_MIN_DEPTH`, with the compile and step times that
  justify it).
  """

  family: Family
  stem: Stem
  hidden_size: int
  num_heads: int
  mlp_dim: int
  depth: int
  patch_size: int = 16
  # Conv stem (P1 section 3 / pycls ViTStemConv): all but the last conv are kxk, no bias, BN, ReLU;
  # the last one (1x1 in every paper model) has a bias and no norm or activation.
  stem_kernels: tuple[int, ...] = ()
  stem_strides: tuple[int, ...] = ()
  stem_channels: tuple[int, ...] = ()
  # ConViT: number of leading GPSA blocks (timm/convit `local_up_to_layer`, 10 in every P2 model).
  num_gpsa_layers: int = 0
  locality_strength: float = 1.0  # P2 alpha, timm default 1.0
  qkv_bias: bool = True  # pycls uses torch MHA (biases); ConViT qkv_bias=False
  layer_norm_eps: float = (
    1e-6  # pycls cfg.LN.EPS in vitconfigs yaml; timm/convit LayerNorm eps 1e-6
  )
  batch_norm_eps: float = 1e-5  # pycls cfg.BN.EPS default (torch BN default)
  batch_norm_momentum: float = 0.9  # Flax convention; = torch/pycls momentum 0.1
  image_size: int = 224
  num_classes: int = 1000
  drop_path_rate: float = 0.0  # off by default, as in both references' model code
  dropout_rate: float = 0.0
  # Eval preprocessing of the published weights: pycls resizes 256 -> crop 224 bilinear;
  # timm convit default_cfg crop_pct 0.875, bicubic.
  eval_crop_pct: float = 0.875
  interpolation: Literal['bilinear', 'bicubic'] = 'bilinear'
  mean: tuple[float, float, float] = IMAGENET_MEAN
  std: tuple[float, float, float] = IMAGENET_STD
  scan_layers: bool = False

  def __post_init__(self):
    # Coerce lists (from configs / JSON) into tuples so specs stay hashable.
    for name in ('stem_kernels', 'stem_strides', 'stem_channels', 'mean', 'std'):
      object.__setattr__(self, name, tuple(getattr(self, name)))
    self.validate()

  # ---------------------------------------------------------------- validation
  def validate(self) -> None:
    """Raises ValueError naming the field to change when the spec cannot form a model."""
    if self.family not in ('pycls', 'convit'):
      raise ValueError(f"family={self.family!r}: use 'pycls' or 'convit'.")
    if self.stem not in ('patchify', 'conv'):
      raise ValueError(f"stem={self.stem!r}: use 'patchify' or 'conv'.")
    for name in (
      'hidden_size',
      'num_heads',
      'mlp_dim',
      'depth',
      'patch_size',
      'image_size',
      'num_classes',
    ):
      if int(getattr(self, name)) <= 0:
        raise ValueError(f'{name}={getattr(self, name)} must be a positive integer.')
    if self.hidden_size % self.num_heads:
      raise ValueError(
        f'hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}; '
        'choose a hidden size that is a multiple of the head count.'
      )
    if self.image_size % self.patch_size:
      raise ValueError(
        f'image_size={self.image_size} is not divisible by patch_size={self.patch_size}; '
        'the token grid would drop pixels (pycls asserts the same).'
      )
    if self.stem == 'conv':
      self._validate_conv_stem()
    if self.family == 'convit':
      if not 0 < self.num_gpsa_layers < self.depth:
        raise ValueError(
          f'num_gpsa_layers={self.num_gpsa_layers} must be in [1, depth-1={self.depth - 1}]: '
          'ConViT adds the class token after the last GPSA block, so at least one plain block '
          'must follow.'
        )
    elif self.num_gpsa_layers:
      raise ValueError("num_gpsa_layers>0 needs family='convit' (its class-token handling).")
    for name in ('drop_path_rate', 'dropout_rate'):
      if not 0.0 <= getattr(self, name) < 1.0:
        raise ValueError(f'{name}={getattr(self, name)} must be in [0, 1).')
    if not 0.0 < self.eval_crop_pct <= 1.0:
      raise ValueError(f'eval_crop_pct={self.eval_crop_pct} must be in (0, 1].')

  def _validate_conv_stem(self) -> None:
    ks, ss, cs = self.stem_kernels, self.stem_strides, self.stem_channels
    if not (len(ks) == len(ss) == len(cs)) or len(ks) < 2:
      raise ValueError(
        'Conv stem needs stem_kernels, stem_strides and stem_channels of the same length >= 2; '
        f'got {len(ks)}, {len(ss)}, {len(cs)}.'
      )
    if any(k % 2 == 0 or k < 1 for k in ks):
      raise ValueError(f'stem_kernels={ks}: use odd sizes (padding (k-1)//2, as pycls conv2d).')
    if math.prod(ss) != self.patch_size:
      raise ValueError(
        f'Conv stem strides {ss} multiply to {math.prod(ss)}, but patch_size={self.patch_size}: '
        'the stem must downsample by exactly the patch size (P1 section 3).'
      )
    if cs[-1] != self.hidden_size:
      raise ValueError(
        f'The last stem width stem_channels[-1]={cs[-1]} must equal hidden_size='
        f"{self.hidden_size}: the stem's last 1x1 conv produces the tokens."
      )

  # ---------------------------------------------------------------- derived shapes
  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads

  def grid_size(self, image_size: int | None = None) -> tuple[int, int]:
    """Token grid (rows, cols) the stem produces for a square image of `image_size`."""
    size = self.image_size if image_size is None else image_size
    if self.stem == 'patchify':
      return size // self.patch_size, size // self.patch_size
    for s in self.stem_strides:  # conv output size (h-1)//s+1 with padding (k-1)//2
      size = (size - 1) // s + 1
    return size, size

  def replace(self, **overrides) -> ModelSpec:
    unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
    if unknown:
      raise ValueError(
        f'Unknown model field(s) {sorted(unknown)}; valid fields: '
        f'{sorted(f.name for f in dataclasses.fields(self))}.'
      )
    return dataclasses.replace(self, **overrides)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def parse_overrides(cls, items: Iterable[str]) -> dict:
    """`--override` strings to typed fields: ['depth=2', 'stem_strides=2,2,1'] ->
    {'depth': 2, 'stem_strides': (2, 2, 1)} (syntax: vit_jax_stems/overrides.py)."""
    return overrides_lib.parse(items, typing.get_type_hints(cls), what='--override')
