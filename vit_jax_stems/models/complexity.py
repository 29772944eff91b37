"""Parameters, FLOPs and activations of a ModelSpec, counted the way pycls counts them.

pycls rules (`pycls/models/blocks.py` *_cx functions): "flops" are multiply-adds;
conv k^2*Cin*Cout*H*W (+Cout*H*W with bias); linear in*out*L (+out*L with bias); attention
H*L^2*dh for q k^T and again for A v; nothing for softmax, norms, activations and residuals.
Params: LN/BN 2*w (no running stats), position embedding, class token. Acts: the output size of
every conv and linear, plus H*L^2 attention logits and d*L for A v. The expected totals:
docs/references.md#pycls-complexity-counting.

ConViT is counted with the same rules. GPSA's positional attention softmax(pos_proj(r_ij)) does
not depend on the input: it is computed once per layer and step and shared by the whole batch
(models/attention.py), so its N^2*(3H+H) MACs are not a per-image cost and are left out (its
parameters are counted). With this, P2 Table 1's MACs are reproduced within 0.5%
(tests/models/test_complexity.py); counting them per image would put ConViT-Ti 0.5% above P2.
"""

from __future__ import annotations

import dataclasses

from vit_jax_stems.models.spec import ModelSpec


@dataclasses.dataclass
class _Counter:
  flops: int = 0
  params: int = 0
  acts: int = 0

  def linear(self, w_in: int, w_out: int, *, bias: bool, locations: int = 1) -> None:
    self.flops += w_in * w_out * locations + (w_out * locations if bias else 0)
    self.params += w_in * w_out + (w_out if bias else 0)
    self.acts += w_out * locations

  def conv(self, w_in: int, w_out: int, k: int, h: int, w: int, *, bias: bool) -> None:
    """A conv whose OUTPUT is h x w."""
    self.linear(k * k * w_in, w_out, bias=bias, locations=h * w)

  def norm(self, width: int) -> None:
    self.params += 2 * width

  def attention_core(self, heads: int, head_dim: int, length: int) -> None:
    self.flops += 2 * heads * length * length * head_dim  # q k^T and A v
    self.acts += heads * length * length + heads * head_dim * length


def _stem(c: _Counter, spec: ModelSpec, size: int) -> None:
  if spec.stem == 'patchify':
    g = size // spec.patch_size
    c.conv(3, spec.hidden_size, spec.patch_size, g, g, bias=True)
    return
  w_in, h = 3, size
  last = len(spec.stem_kernels) - 1
  for i, (k, s, w_out) in enumerate(zip(spec.stem_kernels, spec.stem_strides, spec.stem_channels)):
    h = (h - 1) // s + 1
    c.conv(w_in, w_out, k, h, h, bias=i == last)
    if i < last:
      c.norm(w_out)  # BatchNorm
    w_in = w_out


def _mhsa(c: _Counter, spec: ModelSpec, length: int) -> None:
  d = spec.hidden_size
  c.linear(d, 3 * d, bias=spec.qkv_bias, locations=length)
  c.attention_core(spec.num_heads, spec.head_dim, length)
  c.linear(d, d, bias=True, locations=length)


def _gpsa(c: _Counter, spec: ModelSpec, length: int) -> None:
  d, heads = spec.hidden_size, spec.num_heads
  c.linear(d, 2 * d, bias=spec.qkv_bias, locations=length)  # qk
  c.linear(d, d, bias=spec.qkv_bias, locations=length)  # v
  c.params += 3 * heads + heads + heads  # pos_proj kernel and bias, gating_param (batch-shared)
  c.attention_core(heads, spec.head_dim, length)
  c.linear(d, d, bias=True, locations=length)  # proj


def count(spec: ModelSpec, image_size: int | None = None) -> dict[str, int]:
  """{'flops': multiply-adds, 'params', 'acts'} of one image's forward pass."""
  size = spec.image_size if image_size is None else image_size
  spec = spec.replace(image_size=size) if size != spec.image_size else spec  # validates
  c = _Counter()
  _stem(c, spec, size)
  rows, cols = spec.grid_size(size)
  patches = rows * cols
  d = spec.hidden_size
  c.params += d  # class token
  c.params += (patches + (1 if spec.family == 'pycls' else 0)) * d  # position embedding
  for i in range(spec.depth):
    gpsa = i < spec.num_gpsa_layers
    length = patches if gpsa else patches + 1
    c.norm(d)
    (_gpsa if gpsa else _mhsa)(c, spec, length)
    c.norm(d)
    c.linear(d, spec.mlp_dim, bias=True, locations=length)
    c.linear(spec.mlp_dim, d, bias=True, locations=length)
  c.norm(d)  # final LayerNorm
  c.linear(d, spec.num_classes, bias=True)  # head
  return {'flops': c.flops, 'params': c.params, 'acts': c.acts}
