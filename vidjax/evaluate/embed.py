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


def embed_images(embed_fn, variables, images, mesh, batch_size: int = 256):
  """Embeds a uint8 array in fixed-size batches (one compilation), padding the last one."""
  num_devices = mesh.devices.size
  batch_size = max(num_devices, batch_size // num_devices * num_devices)
  outputs = []
  for start in range(0, len(images), batch_size):
    chunk = np.asarray(images[start:start + batch_size])
    padded = np.concatenate([chunk, np.zeros((batch_size - len(chunk),) + chunk.shape[1:],
                                             chunk.dtype)]) if len(chunk) < batch_size else chunk
    features = embed_fn(variables, parallel.to_global(padded, mesh))
    outputs.append(np.asarray(jax.device_get(features))[:len(chunk)])
  return np.concatenate(outputs)
