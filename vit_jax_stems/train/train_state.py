"""The model of a training config, its initial variables, and the train state.

state = {'step': micro-steps done (= data position), 'rng': base PRNG key (per-step keys are
fold_in(rng, step), so no RNG state needs carrying), 'params', 'batch_stats' (conv-stem
BatchNorm running statistics; {} for other stems), 'opt_state', and with EMA
'ema': {'params', 'batch_stats'}}.

`model_from_config` and `initial_variables` are the one way to rebuild a run's model and its
step-0 weights from its config (a ConfigDict, or the dict of the run's config.json): the trainer
and the analysis both use them.
"""

import jax
import jax.numpy as jnp

from vit_jax_stems import models


def model_kwargs(config, num_classes):
  """`create_model` / `get_spec` overrides of a config: config.model, the dataset's classes and
  config.data.image_size."""
  return dict(
    num_classes=num_classes, image_size=config['data']['image_size'], **dict(config['model'])
  )


def spec_from_config(config, num_classes):
  """The ModelSpec of `config.model_name` with the config's overrides (validated)."""
  return models.get_spec(config['model_name'], **model_kwargs(config, num_classes))


def model_from_config(config, num_classes, *, dtype=None):
  """The flax module of a run; `dtype` (a name of models.COMPUTE_DTYPES) defaults to config.dtype."""
  return models.create_model(
    config['model_name'],
    dtype=config['dtype'] if dtype is None else dtype,
    **model_kwargs(config, num_classes),
  )


def split_init_rng(rng):
  """(params key, the state's base key): the trainer's one split of PRNGKey(config.seed)."""
  params_rng, state_rng = jax.random.split(rng)
  return params_rng, state_rng


def initial_variables(model, seed):
  """The variables the trainer starts a run of `config.seed = seed` with (jitted, as the trainer)."""
  params_rng, _ = split_init_rng(jax.random.PRNGKey(seed))
  return jax.jit(models.init_variables, static_argnums=0)(model, params_rng)


def make_init_fn(model, tx, *, with_ema):
  """init(rng) -> state; jit it with out_shardings to create the state sharded."""

  def init(rng):
    params_rng, rng = split_init_rng(rng)
    variables = models.init_variables(model, params_rng)
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
