"""Batched, jit-compiled embedding of image arrays over all devices of a mesh."""

import jax
import jax.numpy as jnp
import numpy as np

from vidjax import parallel
from vidjax.models import SSLModel


def make_embed_fn(model: SSLModel, mesh):
  """jitted (variables, uint8 images [N, S, S, 3]) -> encoder features [N, D], N sharded."""

  def embed(variables, images):
    return model.apply(variables, images.astype(jnp.float32) / 255.0, method=SSLModel.embed)

  return jax.jit(embed, in_shardings=(parallel.replicated(mesh), parallel.batch_sharding(mesh)),
                 out_shardings=parallel.batch_sharding(mesh))


def embed_images(embed_fn, variables, images, mesh, batch_size: int = 256) -> np.ndarray:
  """Embeds `images` (a uint8 array, or anything with len() and [start:stop] slicing that
  returns one) in fixed-size global batches (one compilation), padding the last one.

  Each process reads and feeds only its own rows of every batch; each batch's features are
  gathered once, so every process returns the features of all images.
  """
  num_devices = mesh.devices.size
  # Fewer images than a batch (a query): the next power of two holds them, so a single
  # image costs one small batch, and sizes compiled stay few (1, 2, 4, ... batch_size).
  batch_size = min(batch_size, 2**int(np.ceil(np.log2(max(1, len(images))))))
  batch_size = max(num_devices, batch_size // num_devices * num_devices)
  rows = parallel.local_rows(mesh, batch_size)
  breaks = np.flatnonzero(np.diff(rows) > 1) + 1
  runs = [(int(run[0]), int(run[-1]) + 1) for run in np.split(rows, breaks)]
  outputs = []
  for start in range(0, len(images), batch_size):
    parts = [np.asarray(images[start + lo:min(start + hi, len(images))]) for lo, hi in runs
             if start + lo < len(images)]
    # A process whose rows all lie past the end reads one image only for its shape.
    chunk = np.concatenate(parts) if parts else np.asarray(images[0:1])[:0]
    padded = np.concatenate([chunk, np.zeros((len(rows) - len(chunk),) + chunk.shape[1:],
                                             chunk.dtype)]) if len(chunk) < len(rows) else chunk
    features = parallel.gather(embed_fn(variables, parallel.to_global(padded, mesh)))
    outputs.append(features[:min(batch_size, len(images) - start)])
  return np.concatenate(outputs)
