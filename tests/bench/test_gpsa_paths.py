"""The fast GPSA path (fused attention + batch-shared positional attention) computes the same
function as the explicit one that materialises the weights as the references do."""

import pytest

from vit_jax_stems import models
from vit_jax_stems.bench import gpsa_paths

TINY_CONVIT = dict(
  hidden_size=32,
  num_heads=4,
  mlp_dim=64,
  depth=2,
  num_gpsa_layers=1,
  patch_size=4,
  image_size=16,
  num_classes=10,
)


def test_fast_and_explicit_gpsa_agree_float32():
  got = gpsa_paths.compare_paths(
    models.get_spec('convit_ti', **TINY_CONVIT), dtype='float32', batch_size=2
  )
  assert got['max_abs_logits'] > 0.1  # perturbed weights: logits are not trivially zero
  assert got['max_abs_diff_logits'] <= 1e-5 * max(1.0, got['max_abs_logits'])
  assert got['max_abs_diff_pre_logits'] <= 1e-5


@pytest.mark.slow  # three more compilations; the float32 test is the correctness check
def test_fast_and_explicit_gpsa_agree_bfloat16():
  got = gpsa_paths.compare_paths(
    models.get_spec('convit_ti', **TINY_CONVIT), dtype='bfloat16', batch_size=2
  )
  # bf16 has an 8-bit mantissa; the two paths round in different places.
  assert got['max_abs_diff_logits'] <= 0.05 * max(1.0, got['max_abs_logits'])
