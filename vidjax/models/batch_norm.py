"""BatchNorm for training on the CPU, its per-channel sums in one pass of a C++ handler.

XLA:CPU turns each of BatchNorm's per-channel reductions (the batch's mean and mean square;
the output gradient's sum and its sum against the input) into strided reduce-windows, which
took more of the default model's step than its convolutions' forward passes
(docs/experiments.md, "BatchNorm's sums"). Here those sums are `channel_sums`
(channel_sums.cc, built beside the oneDNN convolutions by vidjax/models/onednn.py); the
elementwise rest stays XLA's, which fuses it with the ReLU and the residual add.

`BatchNorm` has nn.BatchNorm's parameters, statistics and numbers (its variance is the
mean square less the squared mean, as Flax's default); statistics are over the whole batch
however the mesh splits it, as with nn.BatchNorm under jit.
"""
import functools
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from vidjax.models import onednn


# Below this many elements per device BatchNorm's sums stay XLA's: the C++ call's fixed cost
# outweighs what it saves (bench/native_kernels.py --layers; docs/experiments.md, "When the
# native kernels pay").
MIN_ELEMENTS = 100_000


def channel_sums(a, b, min_elements=None):
  """(sum of a, sum of a * b) over every axis but the last, float32; by the C++ handler
  where a device's part has at least `min_elements` (default MIN_ELEMENTS)."""
  min_elements = MIN_ELEMENTS if min_elements is None else min_elements
  a, b = a.astype(jnp.float32), b.astype(jnp.float32)
  if (jax.default_backend() != 'cpu' or a.size // onednn.devices_over_batch(a.shape[0])
      < min_elements or onednn.unavailable_reason()):
    axes = tuple(range(a.ndim - 1))
    return a.sum(axes), (a * b).sum(axes)
  channels = jax.ShapeDtypeStruct(a.shape[-1:], jnp.float32)
  return onednn.over_batch(jax.ffi.ffi_call('vidjax_channel_sums', (channels, channels)),
                           (a, b), (), summed=True)


def _statistics(x, epsilon, min_elements):
  count = x.size // x.shape[-1]
  total, squares = channel_sums(x, x, min_elements)
  mean = total / count
  var = jnp.maximum(squares / count - mean * mean, 0.0)
  return mean, var, jax.lax.rsqrt(var + epsilon)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _normalize(x, scale, bias, epsilon, min_elements):
  """(BatchNorm of x, the batch's mean, its variance); the gradient is y's alone."""
  return _normalize_fwd(x, scale, bias, epsilon, min_elements)[0]


def _normalize_fwd(x, scale, bias, epsilon, min_elements):
  mean, var, inverse_std = _statistics(x, epsilon, min_elements)
  y = (x - mean) * (inverse_std * scale) + bias
  return (y, mean, var), (x, mean, inverse_std, scale)


def _normalize_bwd(epsilon, min_elements, residuals, cotangents):
  x, mean, inverse_std, scale = residuals
  g = cotangents[0]
  count = x.size // x.shape[-1]
  g_total, g_dot_x = channel_sums(g, x, min_elements)
  dscale = inverse_std * (g_dot_x - mean * g_total)  # sum of g * (x - mean) * inverse_std
  x_hat = (x - mean) * inverse_std
  dx = (scale * inverse_std / count) * (count * g - g_total - x_hat * dscale)
  return dx, dscale, g_total


_normalize.defvjp(_normalize_fwd, _normalize_bwd)


class BatchNorm(nn.Module):
  """nn.BatchNorm over the last axis (scale and bias; what the ResNets use)."""
  use_running_average: bool = False
  momentum: float = 0.99
  epsilon: float = 1e-5
  dtype: Any = None
  scale_init: Any = nn.initializers.ones
  bias_init: Any = nn.initializers.zeros
  min_elements: Optional[int] = None  # MIN_ELEMENTS

  @nn.compact
  def __call__(self, x):
    features = (x.shape[-1],)
    running_mean = self.variable('batch_stats', 'mean', jnp.zeros, features, jnp.float32)
    running_var = self.variable('batch_stats', 'var', jnp.ones, features, jnp.float32)
    scale = self.param('scale', self.scale_init, features, jnp.float32)
    bias = self.param('bias', self.bias_init, features, jnp.float32)
    dtype = self.dtype or jnp.result_type(x.dtype, jnp.float32)  # As Flax: params are float32.
    if self.use_running_average:
      inverse_std = jax.lax.rsqrt(running_var.value + self.epsilon)
      return ((x - running_mean.value) * (inverse_std * scale) + bias).astype(dtype)
    y, mean, var = _normalize(x.astype(jnp.float32), scale, bias, self.epsilon,
                              self.min_elements)
    if not self.is_initializing():
      mean, var = jax.lax.stop_gradient((mean, var))
      running_mean.value = self.momentum * running_mean.value + (1 - self.momentum) * mean
      running_var.value = self.momentum * running_var.value + (1 - self.momentum) * var
    return y.astype(dtype)
