"""Model FLOPs utilisation: the dense peak of each accelerator and the 6 x MACs rule.

MFU = model FLOPs per second / the devices' dense peak for the compute dtype. Model FLOPs of a
train step = 6 x (pycls-counted multiply-adds per image, `models.complexity`) x images: 2 FLOPs
per multiply-add, and a backward pass worth two forwards (Kaplan et al. 2020, "Scaling Laws for
Neural Language Models", section 2.1; PaLM, Chowdhery et al. 2022, appendix B). Recomputation
(remat) and the attention softmax are not model FLOPs, so they lower MFU, as they should.

The one table of peaks: the trainer's `train/mfu` and the benchmark's MFU both read it.
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
    """The peak in `dtype`, a name of `models.COMPUTE_DTYPES` (the fields above)."""
    return getattr(self, dtype)


# Keyed by a substring of `jax.Device.device_kind`; the first match wins, so specific keys first.
# float32 on NVIDIA = the TF32 tensor-core peak: XLA's default precision for float32 matmuls on
# Ampere/Hopper uses TF32. On TPU, float32 matmuls run as bf16 passes at default precision, so we
# claim no float32 peak there. NVIDIA datasheets print the 2:4-sparsity figure; dense is half
# (the H100 architecture whitepaper, table 3, gives the dense figures to one decimal).
PEAKS: tuple[tuple[str, Peak], ...] = (
  ('H100 PCIe', Peak(756.0, 378.0, 'NVIDIA H100 PCIe datasheet, dense bf16 / TF32')),
  ('H100', Peak(989.4, 494.7, 'NVIDIA H100 SXM datasheet, dense bf16 / TF32')),
  ('H200', Peak(989.4, 494.7, 'NVIDIA H200 SXM datasheet (the H100 SXM core), dense bf16 / TF32')),
  ('A100', Peak(312.0, 156.0, 'NVIDIA A100 datasheet, dense bf16 / TF32')),
  ('TPU v3', Peak(61.5, None, 'Cloud TPU v3 docs: 123 bf16 per chip = 2 cores = 2 JAX devices')),
  ('TPU v4', Peak(275.0, None, 'Cloud TPU v4 docs: 275 bf16 per chip (megacore: 1 JAX device)')),
  ('TPU v5 lite', Peak(197.0, None, 'Cloud TPU v5e docs: 197 bf16 per chip (1 JAX device)')),
  ('TPU v5e', Peak(197.0, None, 'Cloud TPU v5e docs: 197 bf16 per chip (1 JAX device)')),
  ('TPU v5', Peak(459.0, None, 'Cloud TPU v5p docs: 459 bf16 per chip (1 JAX device)')),
  ('TPU v6 lite', Peak(918.0, None, 'Cloud TPU v6e (Trillium) docs: 918 bf16 per chip')),
  ('TPU v6e', Peak(918.0, None, 'Cloud TPU v6e (Trillium) docs: 918 bf16 per chip')),
)


def peak_for(
  device_kind: str, dtype: str, override_tflops: float | None = None
) -> tuple[float | None, str]:
  """(peak TFLOP/s of one device or None, where it came from) for `device_kind` in `dtype`."""
  if override_tflops is not None:
    return override_tflops, f'--peak_tflops {override_tflops:g} (given on the command line)'
  for key, peak in PEAKS:
    if key.lower() in device_kind.lower():
      value = peak.tflops(dtype)
      if value is None:
        return None, f'{peak.source}; no {dtype} peak claimed, MFU n/a'
      return value, peak.source
  return None, f'no peak known for device_kind={device_kind!r} (CPU or unlisted): MFU n/a'


def train_flops(macs_per_image: int, num_images: float) -> float:
  """6 x MACs x images: forward 2 FLOPs per multiply-add, backward twice the forward."""
  return 6 * macs_per_image * num_images


def inference_flops(macs_per_image: int, num_images: float) -> float:
  """2 x MACs x images."""
  return 2 * macs_per_image * num_images


def mfu(
  flops: float, seconds: float, peak_tflops: float | None, num_devices: int = 1
) -> float | None:
  """Fraction (0..1) of the dense peak of `num_devices` devices, or None when none is claimed."""
  if peak_tflops is None or seconds <= 0:
    return None
  return flops / seconds / (peak_tflops * 1e12 * num_devices)
