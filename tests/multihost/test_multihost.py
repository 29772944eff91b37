"""Multi-host behaviour on one machine: 2 processes x 4 CPU devices on 127.0.0.1 (jax.distributed,
gloo collectives) running the real `main.py` on the embedded mnist5k, against single-process
8-device runs of the same config in this process.

One scenario, run once per module (a 2-process launch costs about a minute on the 2-core dev
machine), checked by the tests below:
  reference   1 process, 8 devices, steps 1-6, checkpoints 2, 4, 6 (kept), final eval.
  killed      2 processes start from a copy of the reference's checkpoint 2 (written by 1
              process: orbax re-shards it into 2), train steps 3-4, save checkpoint 4 together,
              then process 1 is killed with SIGKILL during step 5; process 0 must stop alone.
  relaunched  the same two commands again: they resume from checkpoint 4 and finish steps 5-6.
  one_process 1 process continues a copy of the killed run's checkpoint 4 (written by 2).
The mesh is (data 1, fsdp 8): every parameter with a dimension divisible by 8 is split over
the devices of both processes, so each process writes and reads its half of the checkpoint.
The single-process runs read both processes' input (two_host_input.py), so every run sees the
same global batches.

Tolerance (float32; the runs differ only in the order of cross-device reductions, in-process
vs gloo): losses rtol 1e-5; every leaf of the train state (params, BN statistics, AdamW moments,
EMA) rtol 1e-5 + atol 1e-5 (as tests/train/test_equivalence.py); step, RNG and eval counts exact.

Failure bound: with --distributed_heartbeat_timeout_s=H, JAX's coordination service declares the
killed process dead after H s of silent heartbeats and terminates the survivor; asserted: the
survivor exits non-zero, with JAX's message, within H + SLACK_S s of the kill.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
import tiny
import two_host_input

from configs import vitc
from vit_jax_stems.train import durations, metrics, trainer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RTOL, ATOL = 1e-5, 1e-5
STEPS = 6
KILL_STEP = 5  # process 1 dies while step 5 runs, after checkpoint 4 is committed
HEARTBEAT_S = 10
SLACK_S = 20  # measured 6-12 s in all with H = 10 on the dev machine; slack for its load
LAUNCH_TIMEOUT_S = 300
DIED_MESSAGES = ('another task died', 'stopped sending heartbeats')

# The tiny vitc demo: conv stem with BatchNorm, AdamW, EMA every step, label smoothing, the real
# mnist5k pipeline with its augmentations. Given to main.py as --config.<key>=<value> and set the
# same way in-process (durations.prefer_command_line), so both read exactly one config.
OVERRIDES = {
  'model.hidden_size': 16,
  'model.num_heads': 4,
  'model.mlp_dim': 32,
  'model.depth': 1,
  'model.stem_kernels': (3, 1),
  'model.stem_strides': (4, 1),
  'model.stem_channels': (8, 16),
  'data.image_size': 16,
  'data.eval_split': 'test[:80]',
  'batch_size': 16,
  'eval_batch_size': 40,
  'total_steps': STEPS,
  'schedule.warmup_steps': 1,
  'log_every_steps': 1,
  'eval_every_steps': 0,
  'checkpoint_every_steps': 2,
  'keep_checkpoints': 3,
  'optimizer.grad_clip_norm': 1.0,
  'mesh': (('data', 1), ('fsdp', 8)),
  'min_size_to_shard_mb': 0.0,  # the tiny model's leaves are all small: split them anyway
}


def _flag_value(v):
  return str(v).replace(' ', '') if isinstance(v, tuple) else str(v)


def _argv(workdir):
  return [
    '--config=configs/vitc.py:demo',
    f'--workdir={workdir}',
    f'--distributed_heartbeat_timeout_s={HEARTBEAT_S}',
    '--distributed_init_timeout_s=120',
  ] + [f'--config.{k}={_flag_value(v)}' for k, v in OVERRIDES.items()]


def _config():
  c = vitc.get_config('demo')
  for key, value in OVERRIDES.items():
    *parents, leaf = key.split('.')
    node = c
    for p in parents:
      node = node[p]
    node[leaf] = value
  return durations.prefer_command_line(c, _argv('unused'))


# ---------------------------------------------------------------- in-process (1 x 8 devices)
def _run_in_process(workdir):
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(trainer, 'data', two_host_input)
    return trainer.train_and_evaluate(_config(), str(workdir))


# ---------------------------------------------------------------- 2 processes x 4 devices
def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _launch(workdir, log_prefix, stall_process=None):
  """Both processes of a 2-process run, as launch/README.md's contract starts them."""
  port = _free_port()
  procs = []
  for i in range(2):
    env = dict(
      os.environ,
      JAX_PLATFORMS='cpu',
      JAX_NUM_CPU_DEVICES='4',
      JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir or '',
      JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0.5',
      JAX_COORDINATOR_ADDRESS=f'127.0.0.1:{port}',
      JAX_NUM_PROCESSES='2',
      JAX_PROCESS_ID=str(i),
      PYTHONUNBUFFERED='1',
    )
    script = 'main.py'
    if i == stall_process:
      env['STALL_AT_STEP'] = str(KILL_STEP)
      script = os.path.join(HERE, 'stalling_main.py')
    log = open(f'{log_prefix}.p{i}.log', 'w')
    procs.append(
      subprocess.Popen(
        [sys.executable, script] + _argv(workdir),
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
      )
    )
    log.close()
  return procs


def _log(log_prefix, i):
  with open(f'{log_prefix}.p{i}.log') as f:
    return f.read()


def _wait(procs, timeout, log_prefix):
  deadline = time.monotonic() + timeout
  try:
    for p in procs:
      p.wait(timeout=max(1, deadline - time.monotonic()))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  return [p.returncode for p in procs]


# ---------------------------------------------------------------- the scenario
def _killed_run(base, name, victim):
  """2 processes from the reference's checkpoint 2 (written by 1 process); `victim` stalls at
  step KILL_STEP (checkpoint KILL_STEP - 1 committed) and is killed with SIGKILL there."""
  workdir = base / name
  shutil.copytree(base / 'reference' / 'checkpoints' / '2', workdir / 'checkpoints' / '2')
  log = str(base / name)
  t0 = time.monotonic()
  procs = _launch(workdir, log, stall_process=victim)
  marker = workdir / f'stalled.{procs[victim].pid}'
  while not marker.exists():
    if any(p.poll() is not None for p in procs) or time.monotonic() - t0 > LAUNCH_TIMEOUT_S:
      _wait(procs, 1, log)
      pytest.fail(
        f'the 2-process run did not reach step {KILL_STEP}:\n'
        f'{_log(log, 0)[-3000:]}\n{_log(log, 1)[-3000:]}'
      )
    time.sleep(0.2)
  survivor = 1 - victim
  assert procs[survivor].poll() is None, f'process {survivor} ended before the kill'
  t_kill = time.monotonic()
  os.kill(procs[victim].pid, signal.SIGKILL)
  rc = _wait(procs, HEARTBEAT_S + SLACK_S, log)
  return dict(
    workdir=workdir,
    rc=rc,
    victim=victim,
    survivor=survivor,
    after_kill_s=time.monotonic() - t_kill,
    logs=[_log(log, i) for i in range(2)],
    losses=_losses(workdir),
    checkpoints=sorted(int(d) for d in os.listdir(workdir / 'checkpoints') if d.isdigit()),
  )


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  base = tmp_path_factory.mktemp('multihost')
  out = {'base': base}
  t0 = time.monotonic()
  ref = base / 'reference'
  out['reference_eval'] = _run_in_process(ref)['eval']
  out['t_reference'] = time.monotonic() - t0

  # killed: 2 processes from the 1-process checkpoint 2, process 1 killed during step 5.
  t0 = time.monotonic()
  out['killed'] = _killed_run(base, 'killed', victim=1)
  out['t_killed'] = time.monotonic() - t0
  killed = out['killed']['workdir']
  shutil.copytree(killed, base / 'one_process')  # before the relaunch adds to it

  # relaunched: the same command again, no stall.
  log = str(base / 'relaunched')
  t0 = time.monotonic()
  rc = _wait(_launch(killed, log), LAUNCH_TIMEOUT_S, log)
  out['relaunched'] = dict(rc=rc, logs=[_log(log, i) for i in range(2)])
  out['t_relaunched'] = time.monotonic() - t0

  # one_process: 1 process continues the 2-process checkpoint 4.
  t0 = time.monotonic()
  out['one_process_eval'] = _run_in_process(base / 'one_process')['eval']
  out['t_one_process'] = time.monotonic() - t0
  print(
    'multihost scenario seconds:',
    {k: round(v, 1) for k, v in out.items() if k.startswith('t_')},
    'survivor stopped {:.1f} s after the kill'.format(out['killed']['after_kill_s']),
  )
  return out


def _losses(workdir):
  return {
    r['step']: r['train/loss']
    for r in metrics.read_jsonl(workdir / 'metrics.jsonl')
    if 'train/loss' in r
  }


def _assert_losses(got, reference, steps, name):
  want = _losses(reference)
  assert sorted(got) == list(steps), f'{name}: logged steps {sorted(got)}'
  np.testing.assert_allclose(
    [got[s] for s in steps],
    [want[s] for s in steps],
    rtol=RTOL,
    err_msg=f'{name}: train/loss of steps {list(steps)}',
  )


def _assert_state(workdir, reference, step, name):
  got, want = tiny.checkpoint_state(workdir, step), tiny.checkpoint_state(reference, step)
  assert int(got['step']) == step
  np.testing.assert_array_equal(got['rng'], want['rng'])
  leaves = jax.tree_util.tree_leaves_with_path(want)
  assert len(leaves) == len(jax.tree_util.tree_leaves(got)) > 20
  for (path, b), a in zip(leaves, jax.tree_util.tree_leaves(got)):
    np.testing.assert_allclose(
      a,
      b,
      rtol=RTOL,
      atol=ATOL,
      err_msg=f'{name}: state{jax.tree_util.keystr(path)} at step {step}',
    )


def _assert_eval(got, want, name):
  assert got['eval_count'] == want['eval_count'] == 80, name
  for key in ('params_top1', 'params_top5', 'ema_top1', 'ema_top5'):
    assert abs(got[key] - want[key]) <= 1 / 80 + 1e-9, f'{name}: {key} {got[key]} vs {want[key]}'


def test_two_processes_continue_a_one_process_checkpoint_and_save_one_together(runs):
  """1 -> 2 processes (orbax re-sharding), then one checkpoint written by both."""
  killed = runs['killed']
  _assert_losses(killed['losses'], runs['base'] / 'reference', (3, 4), '2 processes')
  _assert_state(killed['workdir'], runs['base'] / 'reference', 4, '2 processes')
  assert 'Resuming from checkpoint step 2' in killed['logs'][0]
  assert 'Devices: 8 (cpu) over 2 processes' in killed['logs'][0]


def _assert_stopped_within_bound(killed):
  survivor = killed['survivor']
  assert killed['rc'][killed['victim']] == -signal.SIGKILL
  assert killed['rc'][survivor] != 0, 'the survivor must fail, not finish'
  assert killed['after_kill_s'] < HEARTBEAT_S + SLACK_S
  log = killed['logs'][survivor]
  assert any(m in log for m in DIED_MESSAGES), log[-3000:]
  # The step in flight was never saved; the last checkpoint is the one before it.
  assert killed['checkpoints'] == [2, KILL_STEP - 1]


def test_a_killed_process_stops_the_other_within_the_heartbeat_bound(runs):
  _assert_stopped_within_bound(runs['killed'])


@pytest.mark.slow
def test_a_killed_coordinator_stops_the_other_within_the_heartbeat_bound(runs):
  """Process 0 hosts the coordination service; its death is seen at once (closed socket)."""
  killed = _killed_run(runs['base'], 'coordinator_killed', victim=0)
  print('process 1 stopped {:.1f} s after process 0 was killed'.format(killed['after_kill_s']))
  _assert_stopped_within_bound(killed)


def test_relaunch_resumes_from_the_last_checkpoint_and_matches_an_uninterrupted_run(runs):
  relaunched, reference = runs['relaunched'], runs['base'] / 'reference'
  workdir = runs['killed']['workdir']
  assert relaunched['rc'] == [0, 0], relaunched['logs'][0][-3000:] + relaunched['logs'][1][-3000:]
  for log in relaunched['logs']:
    assert f'Resuming from checkpoint step {KILL_STEP - 1}' in log
  _assert_losses(_losses(workdir), reference, range(3, STEPS + 1), 'relaunched')
  _assert_state(workdir, reference, STEPS, 'relaunched')
  final = [r for r in metrics.read_jsonl(workdir / 'metrics.jsonl') if 'eval/eval_count' in r]
  _assert_eval(
    {k[len('eval/') :]: v for k, v in final[-1].items() if k.startswith('eval/')},
    runs['reference_eval'],
    'relaunched',
  )


def test_one_process_continues_a_two_process_checkpoint(runs):
  """2 -> 1 process (orbax re-sharding) from the checkpoint both processes wrote."""
  workdir, reference = runs['base'] / 'one_process', runs['base'] / 'reference'
  _assert_losses(_losses(workdir), reference, range(3, STEPS + 1), '1 process after 2')
  _assert_state(workdir, reference, STEPS, '1 process after 2')
  _assert_eval(runs['one_process_eval'], runs['reference_eval'], '1 process after 2')
