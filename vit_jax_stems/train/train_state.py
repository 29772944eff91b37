"""The model from the config and the train state: one pytree, created already sharded.

state = {'step': micro-steps done (= data position), 'rng': base PRNG key (per-step keys are
fold_in(rng, step), so no RNG state needs carrying), 'params', 'batch_stats' (conv-stem
BatchNorm running statistics; {} for other stems), 'opt_state', and with EMA
'ema': {'params', 'batch_stats'}}.
"""

import jax
import jax.numpy as jnp

from vit_jax_stems import models

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def model_kwargs(config, num_classes):
  return dict(num_classes=num_classes, image_size=config.data.image_size, **dict(config.model))


def build_model(config, num_classes):
  """(flax module, ModelSpec) for `config.model_name` with the `config.model` overrides."""
  kwargs = model_kwargs(config, num_classes)
  spec = models.get_spec(config.model_name, **kwargs)
  model = models.create_model(config.model_name, dtype=DTYPES[config.dtype], **kwargs)
  return model, spec


def make_init_fn(model, tx, *, image_size, with_ema):
  """init(rng) -> state; jit it with out_shardings to create the state sharded."""

  def init(rng):
    params_rng, rng = jax.random.split(rng)
    dummy = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    variables = model.init({'params': params_rng}, dummy, train=False)
    params = variables['params']
    batch_stats = variables.get('batch_stats', {})
    state = {
      'step': jnp.zeros((), jnp.int32),
      'rng': rng,
      'params': params,
      'batch_stats': batch_stats,
      'opt_state': tx.init(params),
    }
    if with_ema:
      state['ema'] = {'params': params, 'batch_stats': batch_stats}
    return state

  return init


def variables_of(state, which='params'):
  """Flax variables of the raw ('params') or EMA ('ema') weights, for model.apply."""
  src = state if which == 'params' else state['ema']
  variables = {'params': src['params']}
  if src['batch_stats']:
    variables['batch_stats'] = src['batch_stats']
  return variables
