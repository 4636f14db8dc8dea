"""Data parallelism with jax.jit over a one-axis device mesh (see shared/DESIGN.md).

The batch is sharded along 'data', parameters and optimiser state are replicated; XLA
inserts the cross-device reductions, so BatchNorm statistics and contrastive negatives span
the global batch. The same code runs on one device, many, or many hosts.
"""
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

DATA_AXIS = 'data'


def make_mesh(devices=None) -> jax.sharding.Mesh:
  devices = jax.devices() if devices is None else devices
  return jax.make_mesh((len(devices),), (DATA_AXIS,), devices=devices,
                       axis_types=(jax.sharding.AxisType.Auto,))


def batch_sharding(mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def to_global(local_batch, mesh):
  """This process's numpy slice of a batch -> global jax.Arrays sharded along 'data'."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch)
