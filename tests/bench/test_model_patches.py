"""The benchmark's scoped stand-ins for the attention-implementation and remat model hooks."""

import jax
import jax.numpy as jnp
import numpy as np

from vit_jax_stems import models
from vit_jax_stems.bench import jax_bench, model_patches

TINY = dict(hidden_size=16, num_heads=2, mlp_dim=32, depth=2, patch_size=4, image_size=8,
            num_classes=3)


def test_cudnn_request_falls_back_to_xla_off_gpu_with_a_note():
  if jax.devices()[0].platform == "gpu":
    return  # cuDNN may well work there
  q = jnp.ones((1, 4, 2, 8), jnp.bfloat16)
  row = {}
  compiled, timings, used = jax_bench._lower_and_compile(  # pylint: disable=protected-access
      jax.jit(lambda q: jax.nn.dot_product_attention(q, q, q)), (q,), "cudnn", "none", row)
  assert used == "xla" and "fell back to xla" in row["notes"][0]
  assert compiled(q).shape == q.shape and min(timings) >= 0
  assert jax.nn.dot_product_attention.__name__ == "dot_product_attention"  # restored


def test_resolve_attention():
  assert model_patches.resolve_attention("auto", "gpu", "bfloat16") == "cudnn"
  assert model_patches.resolve_attention("auto", "gpu", "float32") == "xla"
  assert model_patches.resolve_attention("auto", "cpu", "bfloat16") == "xla"
  assert model_patches.resolve_attention("xla", "gpu", "bfloat16") == "xla"


def test_block_remat_keeps_parameters_and_adds_checkpoints():
  model = models.create_model("convit_ti", num_gpsa_layers=1, **TINY)
  images = jnp.ones((1, 8, 8, 3))
  plain = jax.eval_shape(lambda: model.init({"params": jax.random.key(0)}, images))
  with model_patches.block_remat("block"):
    remat = jax.eval_shape(lambda: model.init({"params": jax.random.key(0)}, images))

    def loss(params):
      return model.apply({"params": params}, images, train=True)[0].sum()
    params = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), remat["params"])
    jaxpr = str(jax.make_jaxpr(jax.grad(loss))(params))
  assert jax.tree.structure(plain) == jax.tree.structure(remat)
  assert all(jax.tree.leaves(jax.tree.map(lambda a, b: a.shape == b.shape, plain, remat)))
  assert "checkpoint" in jaxpr or "remat" in jaxpr
  from vit_jax_stems.models import vit  # restored after the block
  assert vit.EncoderBlock.__name__ == "EncoderBlock"
