"""A few steps on 1 device, on 8 devices (data parallel, and data x FSDP), and on 2 processes
x 4 devices (jax.distributed on 127.0.0.1, gloo CPU collectives) give the same losses and
parameters. Input: tests/train/fake_data.py, whose global batch is a function of the step
alone (the real pipeline gives each process its own shard of the split, so its global batch
depends on the process count by design).

Tolerance (float32; only the order of the cross-device reductions differs): losses within
rtol 1e-5; parameters, BatchNorm statistics and EMA within rtol 1e-5 + atol 1e-5 after 3 AdamW
steps (the lr peaks at 2e-3, so 1e-5 is under 1% of one update)."""

import os
import socket
import subprocess
import sys

import fake_data
import jax
import numpy as np
import pytest
import tiny

from vit_jax_stems.train import evaluate, metrics, trainer

RTOL, ATOL = 1e-5, 1e-5
HERE = os.path.dirname(os.path.abspath(__file__))


def _run_in_process(tmp_path, name, mesh, num_devices, monkeypatch):
  monkeypatch.setattr(trainer, 'data', fake_data)
  monkeypatch.setattr(evaluate, 'data', fake_data)
  workdir = tmp_path / name
  trainer.train_and_evaluate(tiny.equivalence_config(mesh, num_devices), str(workdir))
  return workdir


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _run_two_processes(workdir):
  port = _free_port()
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  env.setdefault('XLA_FLAGS', '')
  procs = [
    subprocess.Popen(
      [
        sys.executable,
        os.path.join(HERE, 'multiprocess_worker.py'),
        str(port),
        str(i),
        str(workdir),
      ],
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in range(2)
  ]
  outs = []
  for p in procs:
    try:
      outs.append(p.communicate(timeout=240)[0])
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      raise
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-4000:]
  return workdir


def _losses(workdir):
  rows = metrics.read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  return np.array([r['train/loss'] for r in rows if 'train/loss' in r])


def test_one_device_eight_devices_fsdp_and_two_processes_agree(tmp_path, monkeypatch):
  _assert_agree(
    {
      '1 device': _run_in_process(tmp_path, 'one', (('data', 1), ('fsdp', 1)), 1, monkeypatch),
      '8 devices data2 x fsdp4': _run_in_process(
        tmp_path, 'fsdp', (('data', 2), ('fsdp', 4)), None, monkeypatch
      ),
      '2 processes x 4 devices': _run_two_processes(tmp_path / 'multi'),
    }
  )


@pytest.mark.slow
def test_eight_devices_pure_data_parallel_agrees(tmp_path, monkeypatch):
  _assert_agree(
    {
      '1 device': _run_in_process(tmp_path, 'one', (('data', 1), ('fsdp', 1)), 1, monkeypatch),
      '8 devices data': _run_in_process(
        tmp_path, 'dp', (('data', 8), ('fsdp', 1)), None, monkeypatch
      ),
    }
  )


def _assert_agree(runs):
  ref_loss = _losses(runs['1 device'])
  ref_state = tiny.checkpoint_state(runs['1 device'])
  assert len(ref_loss) == 3 and ref_state['step'] == 3
  for name, workdir in runs.items():
    np.testing.assert_allclose(_losses(workdir), ref_loss, rtol=RTOL, err_msg=name)
    state = tiny.checkpoint_state(workdir)
    for key in ('params', 'batch_stats', 'ema'):
      for (path, a), b in zip(
        jax.tree_util.tree_leaves_with_path(state[key]), jax.tree_util.tree_leaves(ref_state[key])
      ):
        np.testing.assert_allclose(
          a, b, rtol=RTOL, atol=ATOL, err_msg=f'{name}: {key}{jax.tree_util.keystr(path)}'
        )
