"""One of the two processes of test_equivalence: 4 CPU devices, gloo collectives, the real
trainer on the fake input with a (data 8) mesh over both processes.

Usage: multiprocess_worker.py PORT PROCESS_ID WORKDIR
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(os.path.dirname(HERE))]

import jax  # noqa: E402

jax.config.update('jax_num_cpu_devices', 4)
jax.config.update('jax_cpu_collectives_implementation', 'gloo')


def main(port, process_id, workdir):
  jax.distributed.initialize(
    f'127.0.0.1:{port}', num_processes=2, process_id=process_id, initialization_timeout=120
  )
  assert jax.device_count() == 8 and jax.local_device_count() == 4
  import fake_data  # pylint: disable=g-import-not-at-top
  import tiny  # pylint: disable=g-import-not-at-top

  from vit_jax_stems.train import evaluate, trainer  # pylint: disable=g-import-not-at-top

  trainer.data = fake_data
  evaluate.data = fake_data
  trainer.train_and_evaluate(tiny.equivalence_config((('data', 8), ('fsdp', 1))), workdir)
  jax.distributed.shutdown()


if __name__ == '__main__':
  main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
