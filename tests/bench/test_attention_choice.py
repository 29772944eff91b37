"""The benchmark's attention choice and its fallback when a backend refuses cuDNN."""

import jax
import jax.numpy as jnp

from vit_jax_stems.bench import jax_bench


def test_cudnn_request_falls_back_to_xla_off_gpu_with_a_note():
  if jax.devices()[0].platform == 'gpu':
    return  # cuDNN may well work there
  q = jnp.ones((1, 4, 2, 8), jnp.bfloat16)
  row = {}
  build = lambda impl: jax.jit(lambda q: jax.nn.dot_product_attention(q, q, q, implementation=impl))
  compiled, timings, used = jax_bench._lower_and_compile(  # pylint: disable=protected-access
    build, (q,), 'cudnn', row
  )
  assert used == 'xla' and 'fell back to xla' in row['notes'][0]
  assert compiled(q).shape == q.shape and min(timings) >= 0


def test_resolve_attention():
  assert jax_bench.resolve_attention('auto', 'gpu', 'bfloat16') == 'cudnn'
  assert jax_bench.resolve_attention('auto', 'gpu', 'float32') == 'xla'
  assert jax_bench.resolve_attention('auto', 'cpu', 'bfloat16') == 'xla'
  assert jax_bench.resolve_attention('xla', 'gpu', 'bfloat16') == 'xla'
