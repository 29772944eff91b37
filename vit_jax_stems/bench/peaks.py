"""Dense peak FLOP/s of the devices we run on, and the MFU arithmetic of SPEC section 4.

MFU = model FLOPs per second / the device's dense peak for the compute dtype, with model FLOPs per
train step = 6 x (pycls-counted multiply-adds per image) x batch: 2 FLOPs per multiply-add, and a
backward pass worth two forwards (SPEC section 4). Recomputation (remat) and the attention softmax
are not model FLOPs, so they lower MFU, as they should.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Peak:
  """Dense (no 2:4 sparsity) peak of ONE JAX device, in TFLOP/s; None where we do not claim one."""

  bfloat16: float | None
  float32: float | None
  source: str

  def tflops(self, dtype: str) -> float | None:
    return {'bfloat16': self.bfloat16, 'float32': self.float32}[dtype]


# Keyed by a substring of `jax.Device.device_kind`; the first match wins, so specific keys first.
# float32 on NVIDIA = TF32 tensor-core peak: XLA's default precision for f32 matmuls on
# Ampere/Hopper uses TF32. On TPU, f32 matmuls run as bf16 passes at default precision, so we
# claim no f32 peak there.
PEAKS: tuple[tuple[str, Peak], ...] = (
  ('H100 PCIe', Peak(756.0, 378.0, 'NVIDIA H100 PCIe datasheet, dense bf16 / TF32')),
  (
    'H100',
    Peak(
      989.4,
      494.7,
      'NVIDIA H100 SXM datasheet, dense bf16 / TF32 (SPEC section 4: about 790 '
      'measured on a large bf16 matmul)',
    ),
  ),
  ('H200', Peak(989.4, 494.7, 'NVIDIA H200 datasheet: the H100 SXM chip, dense bf16 / TF32')),
  ('A100', Peak(312.0, 156.0, 'NVIDIA A100 datasheet, dense bf16 / TF32')),
  ('TPU v5 lite', Peak(197.0, None, 'Google Cloud TPU v5e docs, bf16 per chip (= 1 device)')),
  ('TPU v5e', Peak(197.0, None, 'Google Cloud TPU v5e docs, bf16 per chip (= 1 device)')),
  ('TPU v4', Peak(275.0, None, 'Google Cloud TPU v4 docs, bf16 per chip (= 1 device, megacore)')),
  (
    'TPU v3',
    Peak(61.5, None, 'Google Cloud TPU v3 docs: 123 bf16 per chip = 2 cores = 2 JAX devices'),
  ),
)


def peak_for(
  device_kind: str, dtype: str, override_tflops: float | None = None
) -> tuple[float | None, str]:
  """(peak TFLOP/s or None, where it came from) for one device of `device_kind` in `dtype`."""
  if override_tflops is not None:
    return override_tflops, f'--peak_tflops {override_tflops:g} (given on the command line)'
  for key, peak in PEAKS:
    if key.lower() in device_kind.lower():
      value = peak.tflops(dtype)
      if value is None:
        return None, f'{peak.source}; no {dtype} peak claimed, MFU n/a'
      return value, peak.source
  return None, (
    f'no peak known for device_kind={device_kind!r} (CPU or unlisted); MFU n/a, '
    'pass --peak_tflops to state a nominal one'
  )


def train_flops_per_step(macs_per_image: int, batch_size: int) -> int:
  """6 x MACs x batch (SPEC section 4)."""
  return 6 * macs_per_image * batch_size


def inference_flops_per_step(macs_per_image: int, batch_size: int) -> int:
  """2 x MACs x batch."""
  return 2 * macs_per_image * batch_size


def mfu(flops_per_step: int, step_seconds: float, peak_tflops: float | None) -> float | None:
  """Fraction of the dense peak (0..1), or None when no peak is claimed."""
  if peak_tflops is None or step_seconds <= 0:
    return None
  return flops_per_step / step_seconds / (peak_tflops * 1e12)
