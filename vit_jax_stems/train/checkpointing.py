"""orbax checkpoints of the whole train state, automatic resume, and preemption handling.

The state is one pytree (step, rng, params, batch_stats, opt_state, ema); the data position
is the step (the input pipeline restarts at `start_step`), so restoring the tree restores the
run exactly. Saves are asynchronous (training continues while orbax writes) and the newest
`keep` checkpoints are kept. Restores are sharded directly into the target mesh, so a
checkpoint written by N processes restores on M.

Preemption: with one process, SIGTERM sets a flag (checked every step). With several processes
JAX's preemption service (started by jax.distributed.initialize) catches SIGTERM and
`reached_preemption_sync_point` makes all processes stop at the same step; orbax wraps it as
`CheckpointManager.reached_preemption`. Either way the trainer saves and exits cleanly.
"""

import signal
import threading

import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath


class Checkpointer:
  """A thin layer over ocp.CheckpointManager; the trainer decides *when* to save."""

  def __init__(self, directory, *, keep, asynchronous=True):
    self.directory = epath.Path(directory)
    options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, create=True, enable_async_checkpointing=asynchronous
    )
    self._mngr = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self):
    return self._mngr.latest_step()

  def all_steps(self):
    return list(self._mngr.all_steps())

  def save(self, step, state):
    """Starts an (async) save of `state` at `step`; returns at once."""
    self._mngr.save(int(step), args=ocp.args.StandardSave(state), force=True)

  def restore(self, abstract_state, step=None):
    """Restores into the shapes, dtypes and shardings of `abstract_state` (ShapeDtypeStructs)."""
    step = self.latest_step() if step is None else step
    return self._mngr.restore(step, args=ocp.args.StandardRestore(abstract_state))

  def reached_preemption(self, step):
    return self._mngr.reached_preemption(int(step))

  def wait(self):
    self._mngr.wait_until_finished()

  def close(self):
    self._mngr.wait_until_finished()
    self._mngr.close()


def abstract_like(tree, shardings):
  """ShapeDtypeStructs with shardings, the restore target for `Checkpointer.restore`."""
  return jax.tree_util.tree_map(
    lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings
  )


class PreemptionWatch:
  """`should_stop(step)` is True once a preemption notice (SIGTERM) has arrived.

  Use as a context manager: the single-process SIGTERM handler is installed on entry and the
  previous handler put back on exit. In multi-process runs JAX owns SIGTERM (see module doc).
  """

  def __init__(self, checkpointer):
    self._ckpt = checkpointer
    self._flag = threading.Event()
    self._previous = None
    self._installed = False

  def __enter__(self):
    if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
      self._installed = True
    return self

  def __exit__(self, *exc):
    if self._installed:
      signal.signal(signal.SIGTERM, self._previous)
      self._installed = False

  def _on_sigterm(self, signum, frame):
    del signum, frame
    logging.warning('SIGTERM received: will save a checkpoint and exit after this step.')
    self._flag.set()

  def should_stop(self, step):
    if jax.process_count() > 1:
      return self._ckpt.reached_preemption(step)
    return self._flag.is_set()
