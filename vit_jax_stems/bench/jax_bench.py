"""One case on one JAX device: a real train step and an inference step, compiled and timed.

The train step is what training runs per step: forward with BatchNorm statistics updated (conv
stems), softmax cross-entropy, backward, an optax AdamW update; jitted with the state donated so
XLA updates parameters and optimizer moments in place. Data are synthetic and device-resident (one
batch made on the device once), so the figure is the model's speed, not the input pipeline's.

Timing: `warmup` steps are run and waited for; then `repeats` windows of `steps` steps each are
dispatched back to back and waited for once at the end of each window (block_until_ready), so no
host sync sits inside a window. The step time is the median window's time / steps. The process's
CPU time (time.process_time, all its threads) is recorded next to each wall time: on a machine
shared with other work it is the steadier measure of the work a step does, and with one XLA
thread (XLA_FLAGS=--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1) it holds no
thread-pool spinning.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import optax

from vit_jax_stems import models
from vit_jax_stems.bench.cases import Case
from vit_jax_stems.models import layers_layout
from vit_jax_stems.train import train_state


def bench_key(seed: int) -> jax.Array:
  """A PRNG key of the 'rbg' implementation (XLA RngBitGenerator).

  The values of weights and data do not matter here, and the default threefry key makes XLA
  compile one counter-hash per parameter: on CPU the jitted init of a 3-block model took 24 s to
  compile with threefry and 10 s with rbg (benchmarks/NOTES.md).
  """
  return jax.random.key(seed, impl='rbg')


@dataclasses.dataclass(frozen=True)
class Settings:
  batch_size: int
  steps: int
  repeats: int = 3
  warmup: int = 2
  dtype: str = 'float32'
  attention: str = 'xla'  # resolved: 'xla' | 'cudnn'
  remat: str = 'none'
  donate: bool = True
  seed: int = 0


def make_optimizer() -> optax.GradientTransformation:
  """AdamW as both papers' recipes (betas 0.9/0.999, eps 1e-8), no decay on 1-D params (a
  stacked block's layer axis not counted, so both layouts decay the same leaves)."""

  def matrices(params):
    return jax.tree_util.tree_map_with_path(
      lambda path, p: p.ndim - layers_layout.layer_axes(tuple(k.key for k in path)) > 1, params
    )

  return optax.adamw(1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.05, mask=matrices)


def synthetic_batch(batch_size: int, image_size: int, num_classes: int, seed: int = 0):
  """Normal images and uniform labels, made on the device (no host->device copy per step)."""

  @jax.jit
  def make(key):
    k_images, k_labels = jax.random.split(key)
    return {
      'images': jax.random.normal(k_images, (batch_size, image_size, image_size, 3)),
      'labels': jax.random.randint(k_labels, (batch_size,), 0, num_classes),
    }

  return make(bench_key(seed))


def make_train_step(model, tx, *, return_attention: bool):
  """step(state, batch) -> (state, loss); pure, for jax.jit with donate_argnums=(0,)."""

  def loss_fn(params, batch_stats, batch, rng):
    variables = {'params': params}
    if batch_stats:
      variables['batch_stats'] = batch_stats
    (logits, _), updates = model.apply(
      variables,
      batch['images'],
      train=True,
      return_attention=return_attention,
      mutable=['batch_stats'],
      rngs={'dropout': rng},
    )
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['labels']).mean()
    return loss, updates.get('batch_stats', {})

  def step(state, batch):
    rng = jax.random.fold_in(state['rng'], state['step'])
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state['params'], state['batch_stats'], batch, rng
    )
    updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
    return {
      'step': state['step'] + 1,
      'rng': state['rng'],
      'params': optax.apply_updates(state['params'], updates),
      'batch_stats': batch_stats,
      'opt_state': opt_state,
    }, loss

  return step


def make_eval_step(model, *, return_attention: bool):
  def step(variables, images):
    logits, _ = model.apply(variables, images, train=False, return_attention=return_attention)
    return logits

  return step


def _memory(compiled) -> dict[str, int | None]:
  """XLA's static accounting of one compiled program (available on every backend)."""
  try:
    m = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except  # some backends do not implement it
    m = None
  if m is None:
    return {'temp_bytes': None, 'total_bytes': None}
  total = (
    m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes
  )
  return {'temp_bytes': int(m.temp_size_in_bytes), 'total_bytes': int(total)}


def device_peak_bytes(device) -> int | None:
  """The allocator's peak since the process started (GPU/TPU); None where not reported (CPU)."""
  stats = device.memory_stats() if hasattr(device, 'memory_stats') else None
  if not stats:
    return None
  return stats.get('peak_bytes_in_use')


def _timed_windows(run_window, repeats: int) -> tuple[list[float], list[float]]:
  """(wall seconds, process CPU seconds) of each of `repeats` windows."""
  walls, cpus = [], []
  for _ in range(repeats):
    start, start_cpu = time.perf_counter(), time.process_time()
    jax.block_until_ready(run_window())
    walls.append(time.perf_counter() - start)
    cpus.append(time.process_time() - start_cpu)
  return walls, cpus


def resolve_attention(requested: str, platform: str, dtype: str) -> str:
  """'auto' -> what the models would pick (models.default_attention_impl), spelled out."""
  if requested != 'auto':
    return requested
  return models.default_attention_impl(platform, models.compute_dtype(dtype)) or 'xla'


def _lower_and_compile(build, args, attention: str, row: dict):
  """(compiled, (lower seconds, compile seconds), attention used); `build(attention)` -> jitted.

  cuDNN flash attention supports a subset of shapes (head_dim a multiple of 8, at most 128, ...);
  when it refuses a case, the case falls back to the XLA path and the row's `notes` say so.
  """
  try:
    start = time.perf_counter()
    lowered = build(attention).lower(*args)
    lower_s = time.perf_counter() - start
    start = time.perf_counter()
    compiled = lowered.compile()
    return compiled, (lower_s, time.perf_counter() - start), attention
  except Exception as e:  # pylint: disable=broad-except
    if attention == 'xla':
      raise
    row.setdefault('notes', []).append(
      f'attention={attention} failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); '
      'fell back to xla'
    )
    return _lower_and_compile(build, args, 'xla', row)


def run_case(case: Case, settings: Settings) -> dict[str, Any]:
  """Compiles and times the train and inference steps of `case`; returns one result row."""
  spec = case.spec
  s = settings
  model = models.VisionTransformer(spec, dtype=models.compute_dtype(s.dtype))
  tx = make_optimizer()
  batch = synthetic_batch(s.batch_size, spec.image_size, spec.num_classes, s.seed)
  device = jax.devices()[0]
  # The trainer's state without EMA: {'step', 'rng', 'params', 'batch_stats', 'opt_state'}.
  state = jax.jit(train_state.make_init_fn(model, tx, with_ema=False))(bench_key(s.seed))
  # A copy for inference: the train state's buffers are donated to the first train step.
  eval_variables = jax.tree.map(jnp.copy, train_state.variables_of(state, 'params'))

  row: dict[str, Any] = {
    'case': case.label,
    'role': case.role,
    'of': case.of,
    'spec': spec.to_dict(),
    'batch_size': s.batch_size,
    'dtype': s.dtype,
    'attention': s.attention,
    'remat': s.remat,
    'donate': s.donate,
    'explicit_attention': case.return_attention,
    'macs_per_image': case.macs_per_image,
  }

  # ---- train step: lower (trace) and compile timed separately
  def model_with(attention, remat):
    return models.VisionTransformer(
      spec,
      dtype=models.compute_dtype(s.dtype),
      attention_impl=attention,
      remat_policy=None if remat == 'none' else remat,
    )

  def train_step(attention):
    return jax.jit(
      make_train_step(model_with(attention, s.remat), tx, return_attention=case.return_attention),
      donate_argnums=(0,) if s.donate else (),
    )

  def eval_step(attention):
    return jax.jit(
      make_eval_step(model_with(attention, 'none'), return_attention=case.return_attention)
    )

  start_cpu = time.process_time()
  compiled, timings, attention = _lower_and_compile(train_step, (state, batch), s.attention, row)
  row['train_lower_compile_cpu_s'] = time.process_time() - start_cpu
  row['attention'] = attention
  row['train_lower_s'], row['train_compile_s'] = timings
  row.update({f'train_{k}': v for k, v in _memory(compiled).items()})

  for _ in range(s.warmup):
    state, _ = compiled(state, batch)
  jax.block_until_ready(state)

  def train_window():
    nonlocal state
    loss = None
    for _ in range(s.steps):
      state, loss = compiled(state, batch)
    return state, loss

  windows, cpu_windows = _timed_windows(train_window, s.repeats)
  row['train_window_s'], row['train_window_cpu_s'] = windows, cpu_windows
  row['train_step_s'] = statistics.median(windows) / s.steps
  row['train_step_cpu_s'] = statistics.median(cpu_windows) / s.steps
  row['train_images_per_s'] = s.batch_size / row['train_step_s']

  # ---- inference step
  eval_compiled, timings, _ = _lower_and_compile(
    eval_step, (eval_variables, batch['images']), attention, row
  )
  row['infer_lower_s'], row['infer_compile_s'] = timings
  row.update({f'infer_{k}': v for k, v in _memory(eval_compiled).items()})
  for _ in range(s.warmup):
    jax.block_until_ready(eval_compiled(eval_variables, batch['images']))

  def infer_window():
    out = None
    for _ in range(s.steps):
      out = eval_compiled(eval_variables, batch['images'])
    return out

  windows, cpu_windows = _timed_windows(infer_window, s.repeats)
  row['infer_window_s'], row['infer_window_cpu_s'] = windows, cpu_windows
  row['infer_step_s'] = statistics.median(windows) / s.steps
  row['infer_step_cpu_s'] = statistics.median(cpu_windows) / s.steps
  row['infer_images_per_s'] = s.batch_size / row['infer_step_s']

  # After timing: one host read of the last loss, a sanity check that the steps really trained.
  _, last_loss = compiled(state, batch)
  row['final_loss'] = float(last_loss)
  row['device_peak_bytes'] = device_peak_bytes(device)
  return row
