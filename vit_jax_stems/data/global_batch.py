"""Per-process numpy batches -> global jax.Arrays sharded over the batch axis of a mesh."""

import jax
import numpy as np


def make_global_batch(
  batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh, axis='data'
) -> dict[str, jax.Array]:
  """Assembles each process's batch into one global array per key, split over `axis` of the mesh.

  The global batch is the concatenation of the process batches in process order, which is how
  jax.make_array_from_process_local_data lays out a batch-sharded array.
  """
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(axis))
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}
