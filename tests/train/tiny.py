"""Tiny configs of the three families for trainer tests (seconds per run on a CPU)."""

from configs import common, convit, vitc, vitp

TINY = dict(hidden_size=16, num_heads=4, mlp_dim=32, patch_size=4)
FAMILIES = {
  'vitc': (
    vitc,
    dict(TINY, depth=1, stem_kernels=(3, 1), stem_strides=(4, 1), stem_channels=(8, 16)),
  ),
  'vitp': (vitp, dict(TINY, depth=2)),
  'convit': (convit, dict(TINY, depth=2, num_gpsa_layers=1)),
}


def tiny_config(family='vitc', *, steps=4, image_size=16, optimizer='adamw'):
  module, model = FAMILIES[family]
  c = module.get_config(f'demo,optimizer={optimizer}')
  c.model = common.ml_collections.ConfigDict(model)
  c.data.image_size = image_size
  c.batch_size = 16
  c.eval_batch_size = 40
  c.total_epochs = None
  c.total_steps = steps
  c.schedule.warmup_epochs = None
  c.schedule.warmup_steps = 1
  c.log_every_steps = 2
  c.eval_every_epochs = None
  c.checkpoint_every_epochs = None
  c.checkpoint_every_steps = 2
  c.ema.period = 2
  c.ema.alpha = 0.05
  c.async_checkpoints = True
  return c


def equivalence_config(mesh, num_devices=None):
  """vitc tiny (conv stem with BatchNorm, EMA every step) for the 1 / 8 / 2x4 device runs."""
  c = tiny_config('vitc', steps=3)
  c.mesh = mesh
  c.num_devices = num_devices
  c.log_every_steps = 1
  c.checkpoint_every_steps = 3
  c.ema.period = 1
  c.eval_batch_size = 40
  c.optimizer.grad_clip_norm = 1.0
  c.min_size_to_shard_mb = 0.0  # the tiny model's leaves are all small: split them anyway
  return c


def checkpoint_state(workdir, step=None):
  """The saved train state of `workdir` as numpy arrays (no restore target needed)."""
  import jax
  import orbax.checkpoint as ocp
  from etils import epath

  directory = epath.Path(workdir) / 'checkpoints'
  mngr = ocp.CheckpointManager(directory)
  step = mngr.latest_step() if step is None else step
  path = directory / str(step) / 'default'
  ckptr = ocp.StandardCheckpointer()
  meta = ckptr.metadata(path)
  meta = getattr(meta, 'item_metadata', meta)
  one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree_util.tree_map(
    lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one),
    meta,
    is_leaf=lambda m: hasattr(m, 'shape') and hasattr(m, 'dtype'),
  )
  state = ckptr.restore(path, target)  # any writer topology restores onto one device
  mngr.close()
  return jax.tree_util.tree_map(lambda x: __import__('numpy').asarray(x), state)
