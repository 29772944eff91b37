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

Before a restore the saved tree (orbax metadata) is compared with the one the config builds, and
`check_same_model` compares a workdir's config.json with the config: a workdir of another model
or recipe stops with a short message instead of orbax's. A newest checkpoint that does not
restore (a crash or a full disk while it was written) gives way to the one before it.
"""

import json
import os
import signal
import sys
import threading

import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

CONFIG_JSON = 'config.json'  # the run's config, written into the workdir by the trainer


class CheckpointError(ValueError):
  """A workdir's checkpoints cannot be used with this config; the message says what to do."""


class Checkpointer:
  """A thin layer over ocp.CheckpointManager; the trainer decides *when* to save."""

  def __init__(self, directory, *, keep, asynchronous=True):
    self.directory = epath.Path(directory)
    options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, create=True, enable_async_checkpointing=asynchronous
    )
    # The handler named up front, so that `item_metadata` can read a step before any restore.
    self._mngr = ocp.CheckpointManager(
      self.directory, options=options, item_handlers=ocp.StandardCheckpointHandler()
    )

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
    self._check_tree(step, abstract_state)
    return self._mngr.restore(step, args=ocp.args.StandardRestore(abstract_state))

  def restore_newest(self, abstract_state, *, set_aside_bad=False):
    """(step, state) of the newest checkpoint that restores, or None when there is none.

    A newer checkpoint that fails to restore (truncated tensor file, missing metadata: cut short
    by a crash or a full disk) is skipped with a warning naming it; with `set_aside_bad`
    (training, which saves those steps again) it is renamed to `<step>.corrupt`, out of
    orbax's sight. With several processes (which must agree on one step), or when none
    restores, CheckpointError names the bad ones and the command that removes them. A
    checkpoint of another config raises CheckpointError at once.
    """
    bad, steps = [], sorted(self.all_steps(), reverse=True)
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _without_failed_read_reports(previous_hook)
    try:
      for step in steps:
        try:
          state = self.restore(abstract_state, step)
        except CheckpointError:
          raise
        except Exception as e:  # orbax and tensorstore raise plain Exceptions for unreadable data
          bad.append((step, _first_line(e)))
          if jax.process_count() > 1:
            last = step == steps[-1]
            raise CheckpointError(_bad_message(self.directory, bad, last=last)) from None
          continue
        for bad_step, reason in bad:
          self._skip(bad_step, reason, restored=step, set_aside=set_aside_bad)
        if bad and set_aside_bad:
          self._mngr.reload()
        return step, state
    finally:
      if not bad:  # nothing failed: nothing left to report
        sys.unraisablehook = previous_hook
    if bad:
      raise CheckpointError(_bad_message(self.directory, bad, last=True)) from None
    return None

  def _skip(self, step, reason, *, restored, set_aside):
    where = self.directory / str(step)
    if not set_aside:
      logging.warning(
        'Checkpoint %s does not restore (%s); using step %d.', where, reason, restored
      )
      return
    aside = self.directory / f'{step}.corrupt'
    where.rename(aside)
    logging.warning(
      'Checkpoint %s does not restore (%s); moved it to %s and resumed from step %d '
      '(remove it with: rm -r %s).',
      where,
      reason,
      aside,
      restored,
      aside,
    )

  def _check_tree(self, step, abstract_state):
    """CheckpointError when the saved tree differs from `abstract_state` (another config)."""
    metadata = self._mngr.item_metadata(step)
    saved = getattr(metadata, 'tree', None)
    if saved is None:
      raise FileNotFoundError(f'no tree metadata (default/_METADATA) in step {step}')
    want, got = _shapes(abstract_state), _shapes(saved)
    differing = [p for p in sorted(set(want) | set(got)) if want.get(p) != got.get(p)]
    if not differing:
      return
    parts = []
    for top in dict.fromkeys(p.split('/')[0] for p in differing):
      paths = [p for p in differing if p.split('/')[0] == top]
      example = paths[0]
      parts.append(
        f'{top} differs in {len(paths)} entries, e.g. {example}: '
        f'{_show(got.get(example))} there, {_show(want.get(example))} for this config'
      )
    raise CheckpointError(
      f'Checkpoint {self.directory / str(step)} was written by a run with another model or '
      f'config ({"; ".join(parts)}). Pass the config that run was started with (see '
      f'{self.directory.parent / CONFIG_JSON}), or another --workdir for this one.'
    )

  def reached_preemption(self, step):
    return self._mngr.reached_preemption(int(step))

  def wait(self):
    self._mngr.wait_until_finished()

  def close(self):
    self._mngr.wait_until_finished()
    self._mngr.close()


def _shapes(tree):
  """{'params/head/kernel': shape} of a tree of arrays, ShapeDtypeStructs or orbax metadata."""
  leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: hasattr(x, 'shape'))[0]
  return {'/'.join(_key_name(k) for k in path): tuple(x.shape) for path, x in leaves}


def _key_name(key):
  for attr in ('key', 'name', 'idx'):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def _show(shape):
  return 'absent' if shape is None else f'shape {shape}'


def _without_failed_read_reports(previous):
  """sys.unraisablehook `previous` less the leftovers of a failed orbax read.

  orbax reads the arrays of a checkpoint concurrently; when one read fails, Python reports the
  rest on its own, during or after the restore: the other reads' failures ('Exception ignored
  in: <coroutine ...>', each with a page of tensorstore spec) and tensorstore callbacks to the
  closed event loop. The checkpoint is reported as bad once, by name; every other report passes.
  """

  def hook(unraisable):
    code = getattr(unraisable.object, 'cr_code', None)
    if code is not None and f'{os.sep}orbax{os.sep}' in code.co_filename:
      return
    if unraisable.object is None and str(unraisable.exc_value) == 'Event loop is closed':
      return
    previous(unraisable)

  return hook


def _first_line(error):
  """The gist of an orbax / tensorstore error (their messages go on to dump the whole spec)."""
  lines = str(error).strip().splitlines() or ['']
  gist = lines[0].split(' See full TensorStore details')[0]
  return f'{type(error).__name__}: {gist[:160]}'


def _bad_message(directory, bad, *, last):
  """What to do about checkpoints that do not restore; `last`: no older one is left to try."""
  names = '; '.join(f'{directory / str(step)} ({reason})' for step, reason in bad)
  paths = ' '.join(str(directory / str(step)) for step, _ in bad)
  it = 'them' if len(bad) > 1 else 'it'
  then = 'start over' if last else 'resume from the checkpoint before it'
  return (
    f'Checkpoint does not restore, probably cut short while it was saved (a crash or a full '
    f'disk): {names}. To {then}, remove {it}: rm -r {paths}'
  )


def check_same_model(config, workdir):
  """CheckpointError when `workdir`'s own config.json describes another model than `config`.

  Called before a run writes into a workdir of checkpoints (train) or reads them (eval, the
  locality report). The model is its name and every ModelSpec field that changes what the
  weights compute (data.image_size included); training-only settings (drop path, dropout, BN
  momentum, GPSA init strength) may change. A workdir without config.json passes (the saved
  tree is still compared at restore).
  """
  path = epath.Path(workdir) / CONFIG_JSON
  if not path.exists():
    return
  saved = json.loads(path.read_text())
  there, here = _model_of(saved), _model_of(_plain(config))
  if there == here:
    return
  diffs = [
    f'{k}: {there.get(k, "absent")!r} there, {here.get(k, "absent")!r} in --config'
    for k in sorted(set(there) | set(here), key=lambda k: (k != 'config.model_name', k))
    if there.get(k) != here.get(k)
  ]
  more = f'; and {len(diffs) - 4} more' if len(diffs) > 4 else ''
  raise CheckpointError(
    f'The checkpoints in {workdir} belong to another model than this --config '
    f'({"; ".join(diffs[:4])}{more}; "there" is {path}). Pass the config that run was started '
    f'with, or another --workdir.'
  )


# ModelSpec fields that act only while training or at init: they may differ between a run's
# checkpoints and the config that resumes or evaluates them. num_classes comes from the dataset
# and is compared through the head's shape in the saved tree.
_MAY_DIFFER = ('drop_path_rate', 'dropout_rate', 'batch_norm_momentum', 'locality_strength')


def _model_of(cfg):
  """{'config.model_name': ..., 'config.model.depth': ..., 'config.data.image_size': ...}."""
  from vit_jax_stems import models  # pylint: disable=g-import-not-at-top

  overrides = dict(cfg.get('model') or {})
  image_size = (cfg.get('data') or {}).get('image_size')
  out = {'config.model_name': cfg.get('model_name'), 'config.data.image_size': image_size}
  try:
    spec = models.get_spec(cfg['model_name'], image_size=image_size, num_classes=1, **overrides)
  except (KeyError, TypeError, ValueError):  # not a model of this version: compare as written
    out.update({f'config.model.{k}': _jsonable(v) for k, v in overrides.items()})
    return out
  fields = spec.to_dict()
  for name in (*_MAY_DIFFER, 'num_classes', 'image_size'):
    fields.pop(name, None)
  out.update({f'config.model.{k}': _jsonable(v) for k, v in fields.items()})
  return out


def _jsonable(v):
  return json.loads(json.dumps(v))  # tuples and lists compare equal, as in config.json


def _plain(config):
  return (
    json.loads(config.to_json_best_effort()) if hasattr(config, 'to_json_best_effort') else config
  )


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
