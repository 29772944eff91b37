"""Optimizers of the two reference recipes as optax transformations, with their lr schedules
and weight-decay masks.

- pycls (P1; pycls `core/optimizer.py`): AdamW or SGD (momentum, nesterov, L2 weight decay as
  torch.optim.SGD applies it); lr(e) = base * ((1 - m) * 0.5 * (1 + cos(pi * e / E)) + m) for
  epoch e of E, multiplied during warmup by the factor f * (1 - e / W) + e / W; the lr is set
  once per epoch (e is an integer). Norm parameters and biases are not decayed; the class token
  and the position embedding are.
- timm/DeiT (P2; convit `main.py` uses timm `create_scheduler` and `add_weight_decay`): AdamW,
  linear warmup from an absolute lr w0 to the base lr over W epochs, then
  min + 0.5 * (base - min) * (1 + cos(pi * e / E)); stepped once per epoch. Parameters with
  ndim <= 1, biases, `pos_embedding` and `cls_token` are not decayed. ndim is a weight's own: the
  layer axis of stacked blocks (spec.scan_layers, models/layers_layout.py) does not count.

The schedule counts optimizer updates, so with gradient accumulation (optax.MultiSteps) it is
still a function of the optimizer step, not of the micro-batch.
"""

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from vit_jax_stems.models import layers_layout

SCHEDULES = ('pycls_cosine', 'timm_cosine', 'constant')
WD_MASKS = ('pycls', 'deit', 'all', 'none')
OPTIMIZERS = ('adamw', 'sgd')


def base_lr(opt_cfg, batch_size):
  """The peak lr; `lr_base_batch` scales it linearly with the global batch (DeiT: lr*batch/512)."""
  if opt_cfg.get('lr_base_batch'):
    return opt_cfg.lr * batch_size / opt_cfg.lr_base_batch
  return opt_cfg.lr


def make_lr_schedule(sched_cfg, *, peak_lr, steps_per_epoch, total_steps, warmup_steps):
  """Returns `lr(count)` for the optimizer-step count `count` (jnp-traceable)."""
  spe = float(steps_per_epoch)
  total_epochs = total_steps / spe
  warmup_epochs = warmup_steps / spe
  name = sched_cfg.name

  def schedule(count):
    e = count / spe
    if sched_cfg.per_epoch:
      e = jnp.floor(e)
    cosine = 0.5 * (1.0 + jnp.cos(jnp.pi * e / total_epochs))
    if name == 'constant':
      return jnp.full_like(e, peak_lr, dtype=jnp.float32)
    if name == 'pycls_cosine':
      m = sched_cfg.min_lr_factor
      lr = peak_lr * ((1.0 - m) * cosine + m)
      if warmup_epochs > 0:
        a = e / warmup_epochs
        factor = sched_cfg.warmup_factor * (1.0 - a) + a
        lr = jnp.where(e < warmup_epochs, lr * factor, lr)
      return lr.astype(jnp.float32)
    if name == 'timm_cosine':
      lr = sched_cfg.min_lr + (peak_lr - sched_cfg.min_lr) * cosine
      if warmup_epochs > 0:
        w0 = sched_cfg.warmup_lr
        warm = w0 + e * (peak_lr - w0) / warmup_epochs
        lr = jnp.where(e < warmup_epochs, warm, lr)
      return lr.astype(jnp.float32)
    raise ValueError(f'config.schedule.name={name!r} is not one of {SCHEDULES}.')

  return schedule


def weight_decay_mask(kind, params):
  """A pytree of bools: True where weight decay applies, per recipe `kind` (see module doc)."""
  flat = traverse_util.flatten_dict(params)

  def decays(path, leaf):
    name = path[-1]
    if kind == 'all':
      return True
    if kind == 'none':
      return False
    if kind == 'pycls':
      # pycls: BN/LN weights and all biases use wd 0 (OPTIM.BIAS/BN custom weight decay);
      # the only `scale` parameters of our models are norm scales.
      return name not in ('bias', 'scale')
    if kind == 'deit':
      # timm add_weight_decay: ndim <= 1 or '.bias' or in model.no_weight_decay() (ConViT:
      # pos_embed, cls_token).
      ndim = jnp.ndim(leaf) - layers_layout.layer_axes(path)
      return ndim > 1 and name not in ('bias', 'pos_embedding', 'cls_token')
    raise ValueError(f'config.optimizer.wd_mask={kind!r} is not one of {WD_MASKS}.')

  return traverse_util.unflatten_dict({p: decays(p, v) for p, v in flat.items()})


HEAD = 'head'  # the classifier's parameters, params/head (models/vit.py)


def head_only_labels(params):
  """'train' for the classifier head's leaves, 'frozen' for every other leaf (linear probe)."""
  return {
    name: jax.tree_util.tree_map(
      lambda _, label=('train' if name == HEAD else 'frozen'): label, tree
    )
    for name, tree in params.items()
  }


def make_optimizer(opt_cfg, lr_schedule, *, weight_decay=None, head_only=False):
  """Returns the optax transformation: [clip] -> AdamW | (L2 + SGD) [-> MultiSteps].

  `weight_decay` (a float or a traced scalar) replaces `opt_cfg.weight_decay` when given.
  `head_only` (config.linear_probe): only params/head is updated; every other leaf gets
  `optax.set_to_zero` (no decay, no momentum, no optimizer state).
  """
  if weight_decay is None:
    weight_decay = opt_cfg.weight_decay
  mask = lambda params: weight_decay_mask(opt_cfg.wd_mask, params)
  if opt_cfg.name == 'adamw':
    tx = optax.adamw(
      lr_schedule,
      b1=opt_cfg.b1,
      b2=opt_cfg.b2,
      eps=opt_cfg.eps,
      weight_decay=weight_decay,
      mask=mask,
    )
  elif opt_cfg.name == 'sgd':
    # torch.optim.SGD adds wd * p to the gradient before momentum (coupled L2), as pycls uses it.
    tx = optax.chain(
      optax.add_decayed_weights(weight_decay, mask=mask),
      optax.sgd(lr_schedule, momentum=opt_cfg.momentum, nesterov=opt_cfg.nesterov),
    )
  else:
    raise ValueError(f'config.optimizer.name={opt_cfg.name!r} is not one of {OPTIMIZERS}.')
  if opt_cfg.get('grad_clip_norm'):
    tx = optax.chain(optax.clip_by_global_norm(opt_cfg.grad_clip_norm), tx)
  if head_only:
    tx = optax.multi_transform({'train': tx, 'frozen': optax.set_to_zero()}, head_only_labels)
  if opt_cfg.get('accum_steps', 1) > 1:
    tx = optax.MultiSteps(tx, every_k_schedule=opt_cfg.accum_steps)
  return tx


def make_injected_optimizer(opt_cfg, schedule_of_peak, *, peak_lr):
  """`make_optimizer` with the peak lr and the weight decay held in the optimizer state
  (optax.inject_hyperparams), as `opt_state.hyperparams['peak_lr' | 'weight_decay']`.

  Trials vmapped over stacked states then each train with their own values, while the schedule's
  shape, `schedule_of_peak(peak) -> lr(count)`, is shared. The arithmetic is make_optimizer's with
  these two scalars read from the state instead of written into the program.
  """

  def factory(peak_lr, weight_decay):
    return make_optimizer(opt_cfg, schedule_of_peak(peak_lr), weight_decay=weight_decay)

  return optax.inject_hyperparams(factory)(peak_lr=peak_lr, weight_decay=opt_cfg.weight_decay)
