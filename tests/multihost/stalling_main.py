"""`python main.py FLAGS...`, but the process stalls when asked for the batch of step
$STALL_AT_STEP, once checkpoint $STALL_AT_STEP - 1 is committed, and writes
WORKDIR/stalled.<pid>: a fixed point at which tests/multihost kills it with SIGKILL (as a lost
host), so the run it belongs to is stopped after a known checkpoint. Everything else is the real
main.py (its flags, distributed init and trainer).

Usage: STALL_AT_STEP=N stalling_main.py MAIN_PY_FLAGS...  (needs --workdir=DIR)
"""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)

from absl import app  # noqa: E402

import main  # noqa: E402  (defines main.py's flags)
from vit_jax_stems import data  # noqa: E402


def _stall_at(step, workdir):
  real = data.make_train_iterator

  def make(*args, start_step=0, **kwargs):
    it = real(*args, start_step=start_step, **kwargs)

    def batches():
      for s, batch in enumerate(it, start=start_step + 1):
        if s == step:
          committed = os.path.join(workdir, 'checkpoints', str(step - 1))
          while not os.path.isdir(committed):  # the tmp dir is renamed on commit
            time.sleep(0.2)
          with open(os.path.join(workdir, f'stalled.{os.getpid()}'), 'w') as f:
            f.write(str(step))
          while True:
            time.sleep(60)
        yield batch

    return batches()

  data.make_train_iterator = make


if __name__ == '__main__':
  workdir = next(a.split('=', 1)[1] for a in sys.argv if a.startswith('--workdir='))
  _stall_at(int(os.environ['STALL_AT_STEP']), workdir)
  sys.argv[0] = os.path.join(ROOT, 'main.py')
  app.run(main.main)
