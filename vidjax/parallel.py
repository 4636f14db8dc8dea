"""Data parallelism with jax.jit over a one-axis device mesh (not pmap, which JAX keeps in
maintenance mode and now implements on shard_map).

The batch is sharded along 'data', parameters and optimiser state are replicated; XLA
inserts the cross-device reductions, so BatchNorm statistics and contrastive negatives span
the global batch. The same code runs on one device, many, or many hosts: with several
processes (vidjax/multihost.py) the mesh holds every process's devices, each process feeds
only the rows of a global batch that its own devices hold, and `gather` brings a sharded
result back to every process.
"""
import functools

import jax
import numpy as np
from jax.experimental import multihost_utils
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


def traced_in(mesh, fn):
  """fn, traced with `mesh` as the context mesh, so that what it calls can split work over
  the mesh's axes by name (models/onednn.py's shard_map)."""
  @functools.wraps(fn)
  def in_mesh(*args, **kwargs):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
      return fn(*args, **kwargs)
  return in_mesh


def local_rows(mesh, global_rows: int) -> np.ndarray:
  """Indices of the rows of a [global_rows, ...] batch-sharded array that this process's
  devices hold, ascending: the order in which jax.make_array_from_process_local_data lays
  out a process's data. One block on CPU and GPU meshes; jax.make_mesh's topology-aware
  device order on a TPU pod can interleave the hosts.
  """
  index_map = batch_sharding(mesh).addressable_devices_indices_map((global_rows,))
  return np.array(sorted(row for index in index_map.values()
                         for row in range(*index[0].indices(global_rows))))


def stacked_batch_sharding(mesh) -> NamedSharding:
  """Of K batches stacked on a leading axis: each batch sharded along 'data'."""
  return NamedSharding(mesh, P(None, DATA_AXIS))


def to_global(local_batch, mesh, stacked: bool = False):
  """This process's numpy rows of a batch (or, stacked, of [K, rows, ...] batches) ->
  global jax.Arrays sharded along 'data'."""
  sharding = stacked_batch_sharding(mesh) if stacked else batch_sharding(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch)


def gather(array) -> np.ndarray:
  """A jax.Array, however sharded over processes -> its whole value in numpy, on every
  process (one all-gather across hosts when it spans several)."""
  if array.is_fully_addressable:
    return np.asarray(jax.device_get(array))
  return np.asarray(multihost_utils.process_allgather(array, tiled=True))


def sum_over_processes(counts) -> np.ndarray:
  """Elementwise sum over all processes of a 1-D host array, zero-padded to the longest."""
  if jax.process_count() == 1:
    return np.asarray(counts)
  length = int(np.max(multihost_utils.process_allgather(np.int32(len(counts)))))
  padded = np.pad(np.asarray(counts), (0, length - len(counts)))
  return np.asarray(multihost_utils.process_allgather(padded)).sum(axis=0)
