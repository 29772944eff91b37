"""The real input pipeline as two processes see it, fed from one process.

vit_jax_stems.data gives each process its own part of the split (tfds even splits, per-process
seeds), so the global batch of a 2-process run is [process 0's rows, process 1's rows] and
differs from a 1-process run's. The single-process references of tests/multihost read both
parts here and concatenate them in that order (the order of the rows in the global array: the
mesh lists process 0's devices first), so their global batches equal those of the 2-process
runs. Same interface as vit_jax_stems.data for the trainer (monkeypatch `trainer.data`).
"""

import numpy as np

from vit_jax_stems import data

PROCESSES = 2
get_dataset_info = data.get_dataset_info
make_eval_iterator = data.make_eval_iterator  # eval counts every example once, whatever the split


def make_train_iterator(dcfg, *, global_batch_size, seed, start_step=0):
  parts = [
    data.make_train_iterator(
      dcfg,
      global_batch_size=global_batch_size,
      seed=seed,
      start_step=start_step,
      process_index=i,
      process_count=PROCESSES,
    )
    for i in range(PROCESSES)
  ]
  while True:
    batches = [next(p) for p in parts]
    yield {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
