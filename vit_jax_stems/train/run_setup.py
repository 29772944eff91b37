"""What training and `--mode eval` both build from a config before any step: the mesh, the
model, the plan of durations, the optimizer and the abstract train state with its shardings.

The trainer and the evaluator both call `make_run_setup`, so a checkpoint is always restored
onto the state the trainer created, and neither module imports the other.
"""

import dataclasses
from typing import Any

import jax
from absl import logging

from vit_jax_stems.train import durations, sharding, train_state
from vit_jax_stems.train import optimizer as optimizer_lib


@dataclasses.dataclass(frozen=True)
class Plan:
  """Every duration of the run in steps (a step = one micro-batch; = one update unless
  gradients are accumulated over `accum` micro-batches)."""

  accum: int
  micro_batch: int
  steps_per_epoch: int  # optimizer updates per epoch
  total_updates: int
  warmup_updates: int
  total_steps: int
  log_every: int
  eval_every: int
  checkpoint_every: int

  @property
  def total_epochs(self):
    return self.total_updates / self.steps_per_epoch

  def evaluates_at(self, step):
    """An eval during training after `step` (the one after the last step is the loop's own)."""
    return bool(self.eval_every) and step % self.eval_every == 0 and step != self.total_steps

  def saves_at(self, step):
    """A checkpoint after `step`: every checkpoint_every steps and after the last one."""
    return step == self.total_steps or (
      bool(self.checkpoint_every) and step % self.checkpoint_every == 0
    )


def make_plan(config, num_train_examples):
  """Epochs / steps / examples -> steps, in one place (durations.to_steps)."""
  accum = config.optimizer.accum_steps
  spe = max(1, num_train_examples // config.batch_size)  # pycls/DeiT drop the last partial batch
  kw = dict(steps_per_epoch=spe, batch_size=config.batch_size)
  total = durations.to_steps(config, 'total', **kw)
  warmup = durations.to_steps(config.schedule, 'warmup', default=0, where='config.schedule', **kw)
  return Plan(
    accum=accum,
    micro_batch=config.batch_size // accum,
    steps_per_epoch=spe,
    total_updates=total,
    warmup_updates=warmup,
    total_steps=total * accum,
    log_every=config.log_every_steps,
    eval_every=durations.to_steps(config, 'eval_every', default=0, **kw) * accum,
    checkpoint_every=durations.to_steps(config, 'checkpoint_every', default=0, **kw) * accum,
  )


def lr_schedule_of(config, plan, peak_lr):
  """The run's lr schedule, `update -> lr`, with its peak at `peak_lr` (a float or traced)."""
  return optimizer_lib.make_lr_schedule(
    config.schedule,
    peak_lr=peak_lr,
    steps_per_epoch=plan.steps_per_epoch,
    total_steps=plan.total_updates,
    warmup_steps=plan.warmup_updates,
  )


def make_mesh(config):
  """The mesh of `config.mesh` over every device, or the first `config.num_devices` (single
  process tests and debugging)."""
  n = config.get('num_devices')
  return sharding.make_mesh(config.mesh, None if n is None else jax.devices()[:n])


@dataclasses.dataclass(frozen=True)
class RunSetup:
  """Everything a run builds from its config and dataset before the first step."""

  info: Any  # data.DatasetInfo: num_classes, num_train_examples, ...
  mesh: jax.sharding.Mesh
  batch_sharding: jax.sharding.NamedSharding  # the batch split over every mesh axis
  model: Any  # models.VisionTransformer
  plan: Plan
  lr_schedule: Any  # optax schedule: update -> lr
  tx: Any  # optax.GradientTransformation
  init_fn: Any  # rng -> train state (train_state.make_init_fn)
  abstract_state: Any  # ShapeDtypeStructs of the train state
  state_shardings: Any  # NamedSharding per leaf of the train state

  @property
  def spec(self):
    return self.model.spec


def make_run_setup(config, info):
  """The RunSetup of `config` on the dataset described by `info`; logs the state's sharding."""
  mesh = make_mesh(config)
  model = train_state.model_from_config(config, info.num_classes)
  plan = make_plan(config, info.num_train_examples)
  lr_schedule = lr_schedule_of(
    config, plan, optimizer_lib.base_lr(config.optimizer, config.batch_size)
  )
  tx = optimizer_lib.make_optimizer(
    config.optimizer, lr_schedule, head_only=config.get('linear_probe', False)
  )
  init_fn = train_state.make_init_fn(model, tx, with_ema=config.ema.enabled)
  abstract = jax.eval_shape(init_fn, jax.random.PRNGKey(config.seed))
  min_mb = config.min_size_to_shard_mb
  leaves = sharding.plan_leaves(abstract, mesh, config.sharding_rules, min_size_to_shard_mb=min_mb)
  logging.info('\n'.join(sharding.describe(leaves, mesh, min_size_to_shard_mb=min_mb)))
  return RunSetup(
    info=info,
    mesh=mesh,
    batch_sharding=sharding.batch_sharding(mesh),
    model=model,
    plan=plan,
    lr_schedule=lr_schedule,
    tx=tx,
    init_fn=init_fn,
    abstract_state=abstract,
    state_shardings=sharding.shardings_of(leaves, mesh),
  )
