"""The per-step pure functions: the train step and the eval step (jitted by their callers).

This module imports neither TensorFlow nor the input pipeline, so the step can be built and
tested on an image without TensorFlow.
"""

import jax
import jax.numpy as jnp
import optax

from vit_jax_stems.data import device_augment
from vit_jax_stems.train import ema as ema_lib
from vit_jax_stems.train import optimizer as optimizer_lib

# Folded into the step's key for the on-device augmentation (the step's key itself drives dropout).
_AUGMENT_STREAM = 1


def make_train_step(
  model,
  tx,
  lr_schedule,
  plan,
  ema_cfg,
  augment: device_augment.DeviceAugment,
  *,
  head_only=False,
):
  """train_step(state, batch) -> (state, metrics); pure, jitted by the caller.

  `batch` is the host's {'image': uint8 (B, H, W, 3), 'label': int (B,)}; `augment` turns it into
  normalised, mixed images and soft targets inside the step (see device_augment).
  `head_only` (config.linear_probe, with the optimizer of `make_optimizer(head_only=True)`): the
  backbone runs in eval mode (BatchNorm statistics used and kept as they are, no drop path) and
  no gradient flows into it, so only the head's backward pass is computed.
  """
  ema_rate = None
  if ema_cfg.enabled:
    ema_rate = ema_lib.ema_rate(
      alpha=ema_cfg.alpha,
      batch_size=plan.micro_batch * plan.accum,
      total_epochs=plan.total_epochs,
      period=ema_cfg.period,
    )
  warmup_epochs = plan.warmup_updates / plan.steps_per_epoch

  def train_step(state, batch):
    step = state['step']
    rng = jax.random.fold_in(state['rng'], step)
    images, targets = augment(
      batch['image'], batch['label'], jax.random.fold_in(rng, _AUGMENT_STREAM)
    )

    def loss_fn(params):
      variables = {'params': params}
      if state['batch_stats']:
        variables['batch_stats'] = state['batch_stats']
      if head_only:
        variables['params'] = {
          name: tree if name == optimizer_lib.HEAD else jax.lax.stop_gradient(tree)
          for name, tree in params.items()
        }
        logits, _ = model.apply(variables, images, train=False)
        updates = {'batch_stats': state['batch_stats']}
      else:
        (logits, _), updates = model.apply(
          variables, images, train=True, mutable=['batch_stats'], rngs={'dropout': rng}
        )
      logits = logits.astype(jnp.float32)
      loss = jnp.mean(optax.softmax_cross_entropy(logits, targets))
      return loss, (logits, updates.get('batch_stats', {}))

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state['params']
    )
    updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
    params = optax.apply_updates(state['params'], updates)
    new = dict(state, step=step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state)

    opt_step = step // plan.accum  # updates done before this one
    if ema_rate is not None:
      updated = ema_lib.update(
        state['ema'],
        {'params': params, 'batch_stats': batch_stats},
        opt_step=opt_step,
        steps_per_epoch=plan.steps_per_epoch,
        warmup_epochs=warmup_epochs,
        rate=ema_rate,
        period=ema_cfg.period,
      )
      applied = (step + 1) % plan.accum == 0  # with accumulation: only on real updates
      new['ema'] = jax.tree_util.tree_map(
        lambda u, e: jnp.where(applied, u, e), updated, state['ema']
      )

    grad_norm = optax.global_norm(grads)
    out = {
      'loss': loss,
      'accuracy': jnp.mean(jnp.argmax(logits, -1) == jnp.argmax(targets, -1)),
      'grad_norm': grad_norm,
      'lr': lr_schedule(opt_step),
      'finite': jnp.isfinite(loss) & jnp.isfinite(grad_norm),
    }
    return new, out

  return train_step


def make_eval_step(model, mean, std, classes=None):
  """eval_step(variables, batch) -> {'top1', 'top5', 'count'} sums over the batch (pure).

  `batch` is {'image': uint8, 'label', 'mask'}; images are normalised with (mean, std) here.
  'label' is int (B,), one class per example, or bool (B, num_classes), a set of correct classes
  per example (ReaL): a prediction is correct when it is in the set, and an example with an
  empty set is not counted (Beyer et al. 2020, google-research/reassessed-imagenet README).
  `classes`: predict among these classes only, the argmax over their logits (ImageNet-A/R's 200,
  as Hendrycks et al. score them: natural-adv-examples and imagenet-r `eval.py`); None: all.
  """

  def eval_step(variables, batch):
    images = device_augment.normalize_uint8(batch['image'], mean, std)
    logits, _ = model.apply(variables, images, train=False)
    logits = logits.astype(jnp.float32)
    k = 5
    if classes is not None:
      among = jnp.zeros(logits.shape[-1], bool).at[jnp.asarray(classes)].set(True)
      logits = jnp.where(among, logits, -jnp.inf)
      k = min(k, len(classes))
    top5 = jax.lax.top_k(logits, min(k, logits.shape[-1]))[1]
    label = batch['label']
    counted = batch['mask']
    if label.ndim == 1:
      hits = top5 == label[:, None]
    else:  # a set of correct classes per example
      hits = jnp.take_along_axis(label, top5, axis=-1)
      counted = counted & jnp.any(label, axis=-1)
    counted = counted.astype(jnp.float32)
    hit1, hit5 = hits[:, 0], jnp.any(hits, axis=-1)
    return {
      'top1': jnp.sum(hit1 * counted),
      'top5': jnp.sum(hit5 * counted),
      'count': jnp.sum(counted),
    }

  return eval_step
