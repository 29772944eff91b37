"""The two ways a ViT turns pixels into tokens: the patchify stem and the convolutional stem.

P1's thesis is that this choice alone changes how a ViT optimises: the patchify stem is one
stride-p pxp convolution; the conv stem ("ViT_C") is a few stride-2 3x3 convolutions with
BatchNorm and ReLU, closed by a 1x1 convolution to the hidden size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

Initializer = Callable[..., Any]


def pycls_patchify_init(patch_size: int, in_channels: int = 3) -> Initializer:
  """pycls `init_weights_vit`: trunc_normal_(std=sqrt(1/fan_in)) for the patchify conv.

  torch's trunc_normal_ cuts at absolute +-2, i.e. at hundreds of standard deviations for this
  std, so it is a plain normal in effect (docs/references.md#p1-initialisation-pycls).
  """
  return nn.initializers.normal(stddev=math.sqrt(1.0 / (in_channels * patch_size * patch_size)))


# torch.nn.Conv2d / Linear default init: kaiming_uniform(a=sqrt(5)) -> U(+-1/sqrt(fan_in)), and the
# same bound for the bias. Used for ConViT's patch embedding, which timm/convit leave at the default.
torch_default_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')


def torch_default_bias_init(fan_in: int) -> Initializer:
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return nn.initializers.uniform(2 * bound)(key, shape, dtype) - bound

  return init


class PatchifyStem(nn.Module):
  """One pxp convolution with stride p and a bias (ViT; pycls `ViTStemPatchify`)."""

  hidden_size: int
  patch_size: int
  kernel_init: Initializer
  bias_init: Initializer = nn.initializers.zeros
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jnp.ndarray) -> jnp.ndarray:
    p = self.patch_size
    return nn.Conv(
      self.hidden_size,
      (p, p),
      strides=(p, p),
      padding='VALID',
      use_bias=True,
      kernel_init=self.kernel_init,
      bias_init=self.bias_init,
      dtype=self.dtype,
      name='patchify',
    )(images)


class ConvStem(nn.Module):
  """ViT_C stem (P1 section 3, pycls `ViTStemConv`).

  Every conv but the last: kxk, stride s, padding (k-1)//2, no bias, BatchNorm, ReLU. The last:
  its own kernel size (1 in all paper models), with bias, no norm or activation.
  Inits (pycls main `init_weights_vit`): kxk convs normal(std=sqrt(2/C_out)); the last conv
  normal(std=sqrt(1/C_out)) with zero bias; BatchNorm scale 1, bias 0.
  """

  kernels: Sequence[int]
  strides: Sequence[int]
  channels: Sequence[int]
  batch_norm_eps: float = 1e-5
  batch_norm_momentum: float = 0.9
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    x = images
    last = len(self.kernels) - 1
    for i, (k, s, c) in enumerate(zip(self.kernels, self.strides, self.channels)):
      pad = (k - 1) // 2
      if i < last:
        x = nn.Conv(
          c,
          (k, k),
          strides=(s, s),
          padding=((pad, pad), (pad, pad)),
          use_bias=False,
          kernel_init=nn.initializers.normal(stddev=math.sqrt(2.0 / c)),
          dtype=self.dtype,
          name=f'conv{i}',
        )(x)
        x = nn.BatchNorm(
          use_running_average=not train,
          momentum=self.batch_norm_momentum,
          epsilon=self.batch_norm_eps,
          dtype=self.dtype,
          name=f'bn{i}',
        )(x)
        x = nn.relu(x)
      else:
        x = nn.Conv(
          c,
          (k, k),
          strides=(s, s),
          padding=((pad, pad), (pad, pad)),
          use_bias=True,
          kernel_init=nn.initializers.normal(stddev=math.sqrt(1.0 / c)),
          bias_init=nn.initializers.zeros,
          dtype=self.dtype,
          name='conv_last',
        )(x)
    return x
