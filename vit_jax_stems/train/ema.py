"""Exponential moving average of the weights, as pycls defines it (pycls `core/net.py`
`update_model_ema`, P1 Sec. 5): every `period` iterations of an epoch (iteration index within
the epoch divisible by the period), ema <- (1 - a) * ema + a * w with
a = min(1, alpha * batch_size / epochs * period); during the warmup epochs a = 1 (the weights
are copied). Like pycls (state_dict, 'not just named parameters') the average covers the
BatchNorm running statistics too. The EMA starts as a copy of the initial weights.
"""

import jax
import jax.numpy as jnp


def ema_rate(*, alpha, batch_size, total_epochs, period):
  """pycls: 'Adjust alpha to be fairly independent of other parameters'."""
  return min(1.0, alpha * batch_size / total_epochs * period)


def update(ema_tree, new_tree, *, opt_step, steps_per_epoch, warmup_epochs, rate, period):
  """Returns the EMA after optimizer update number `opt_step` (0-based, traced int).

  `warmup_epochs` is compared with the integer epoch as in pycls (cur_epoch < WARMUP_EPOCHS).
  """
  epoch = opt_step // steps_per_epoch
  it = opt_step % steps_per_epoch
  a = jnp.where(epoch < warmup_epochs, 1.0, rate)
  do = (it % period) == 0
  a = jnp.where(do, a, 0.0)
  return jax.tree_util.tree_map(
    lambda e, w: (e * (1.0 - a) + w * a).astype(e.dtype), ema_tree, new_tree
  )
