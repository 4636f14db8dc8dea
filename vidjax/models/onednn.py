"""Convolutions by oneDNN on the CPU, through XLA's FFI, for training.

XLA:CPU computes a convolution's kernel gradient over batch-minor copies of the activation
and the output gradient, then multiplies matrices only 16-32 channels wide, well under the
cores' rate, and a strided convolution's input gradient over a spread-out copy of the
output gradient; oneDNN, which PyTorch's CPU convolutions use, reads NHWC as it is.
With config.model.cpu_kernels='native' (the default), training's convolutions large enough
to pay, forward and both gradients, go to it (README, "Training speed", has the step's
times; docs/experiments.md, "Convolutions by oneDNN in training", each one's).

`conv_general_dilated` is lax.conv_general_dilated's signature for nn.Conv. The handlers
(onednn_convolution.cc, and batch_norm.py's channel_sums.cc) are compiled into one library
with g++ against the oneDNN wheels requirements.txt installs, once, into
$VIDJAX_CACHE/onednn/. Where that cannot happen (no g++, no oneDNN, not x86-64 Linux), or
off the CPU, the convolutions and BatchNorms stay XLA's; one warning says why.
"""
import ctypes
import functools
import hashlib
import math
import os
import platform
import shutil
import subprocess
import sys
import sysconfig

import jax
import jax.numpy as jnp
from absl import logging
from jax import lax
from jax.sharding import PartitionSpec as P

from vidjax import parallel
from vidjax.data.sources import cache

# Below this many multiply-adds per device (of the forward pass) a convolution stays XLA's:
# a oneDNN call's fixed cost (its OpenMP team; calls take turns) outweighs what it saves
# (bench/native_kernels.py --layers; docs/experiments.md, "When the native kernels pay").
MIN_CONVOLUTION_MACS = 20_000_000

_SOURCES = [os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
            for name in ('onednn_convolution.cc', 'channel_sums.cc')]
# XLA's name of each handler -> its symbol in the built library.
_TARGETS = {'vidjax_conv_forward': 'ConvForward',
            'vidjax_conv_input_gradient': 'ConvInputGradient',
            'vidjax_conv_kernel_gradient': 'ConvKernelGradient',
            'vidjax_channel_sums': 'ChannelSumsHandler'}


def _build(include: str, lib: str) -> str:
  """The path of the compiled handler, built now unless the cache holds it."""
  contents = []
  for path in _SOURCES + [os.path.join(include, 'oneapi', 'dnnl', 'dnnl_version.h')]:
    with open(path, 'rb') as f:
      contents.append(f.read())
  key = hashlib.sha1(b'\0'.join(contents + [jax.__version__.encode(),
                                            lib.encode()])).hexdigest()[:16]
  library = os.path.join(cache.CACHE_DIR, 'onednn', f'kernels_{key}.so')
  if os.path.exists(library):
    return library
  compiler = shutil.which(os.environ.get('CXX', 'g++'))
  if not compiler:
    raise OSError('g++ not found (apt-get install g++)')
  os.makedirs(os.path.dirname(library), exist_ok=True)
  tmp = f'{library}.{os.getpid()}.tmp'
  try:
    result = subprocess.run(
        [compiler, '-O3', '-std=c++17', '-shared', '-fPIC', '-fopenmp', '-w',
         f'-I{jax.ffi.include_dir()}', f'-I{include}', *_SOURCES, f'-L{lib}', '-ldnnl',
         f'-Wl,-rpath,{lib}', '-o', tmp], capture_output=True, text=True)
    if result.returncode:
      last = (result.stderr.strip().splitlines() or ['no output'])[-1]
      raise OSError(f'{compiler} failed on {" ".join(_SOURCES)}: {last}')
    os.replace(tmp, library)  # Other processes building it at once each rename a whole file.
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return library


@functools.cache
def unavailable_reason() -> str:
  """'' once the handler is registered with XLA's CPU client; otherwise why it is not (and
  the one warning saying so is logged)."""
  reason = ''
  data = sysconfig.get_paths()['data']  # Where pip puts a wheel's include/ and lib/ files.
  include, lib = os.path.join(data, 'include'), os.path.join(data, 'lib')
  if sys.platform != 'linux' or platform.machine() != 'x86_64':
    reason = f'oneDNN\'s wheels are for x86-64 Linux, not {sys.platform} {platform.machine()}'
  elif not os.path.exists(os.path.join(include, 'oneapi', 'dnnl', 'dnnl.hpp')):
    reason = f'no oneDNN headers under {include} (pip install -r requirements.txt)'
  else:
    try:
      library = _build(include, lib)
      # libgomp reads this when oneDNN loads it: its idle threads then sleep between calls
      # instead of spinning on the cores XLA's own threads need.
      os.environ.setdefault('OMP_WAIT_POLICY', 'passive')
      handlers = ctypes.cdll.LoadLibrary(library)
      for target, symbol in _TARGETS.items():
        jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(handlers, symbol)),
                                    platform='cpu')
    except OSError as error:
      reason = str(error)
  if reason:
    logging.warning('Convolutions and BatchNorms stay XLA\'s (train steps slower on a CPU): %s',
                    reason)
  return reason


def _call(target, out_shape, a, b, stride, pads):
  (top, bottom), (left, right) = pads
  return jax.ffi.ffi_call(target, jax.ShapeDtypeStruct(out_shape, jnp.float32))(
      a.astype(jnp.float32), b.astype(jnp.float32), stride=stride, pad_top=top,
      pad_bottom=bottom, pad_left=left, pad_right=right)


def _output_shape(x_shape, kernel_shape, stride, pads):
  (top, bottom), (left, right) = pads
  return (x_shape[0], (x_shape[1] + top + bottom - kernel_shape[0]) // stride + 1,
          (x_shape[2] + left + right - kernel_shape[1]) // stride + 1, kernel_shape[3])


def devices_over_batch(batch: int) -> int:
  """Over how many devices `over_batch` splits a batch of this many rows."""
  mesh, axis = jax.sharding.get_abstract_mesh(), parallel.DATA_AXIS
  if mesh.empty or axis not in mesh.axis_names or batch % mesh.shape[axis]:
    return 1
  return mesh.shape[axis]


def over_batch(fn, batched: tuple, replicated: tuple, summed: bool):
  """fn(*batched, *replicated), batched being batch-first arrays, which an FFI call keeps
  XLA's partitioner from splitting: it would gather a batch sharded over the mesh onto
  every device. Under a context mesh whose 'data' axis divides the batch, each device calls
  fn on its rows, and the results are concatenated, or `summed` (a kernel gradient)."""
  if devices_over_batch(batched[0].shape[0]) == 1:
    return fn(*batched, *replicated)
  mesh, axis = jax.sharding.get_abstract_mesh(), parallel.DATA_AXIS
  body = (lambda *args: lax.psum(fn(*args), axis)) if summed else fn
  return jax.shard_map(body, mesh=mesh,
                       in_specs=(P(axis),) * len(batched) + (P(),) * len(replicated),
                       out_specs=P() if summed else P(axis))(*batched, *replicated)


def forward(x, kernel, stride, pads):
  """The NHWC convolution of x by the HWIO kernel, by oneDNN, float32."""
  return over_batch(lambda x, kernel: _call(
      'vidjax_conv_forward', _output_shape(x.shape, kernel.shape, stride, pads), x, kernel,
      stride, pads), (x,), (kernel,), summed=False)


def input_gradient(g, kernel, x_shape, stride, pads):
  """dL/dx of the convolution, from its output gradient g, by oneDNN, float32."""
  return over_batch(lambda g, kernel: _call(
      'vidjax_conv_input_gradient', (g.shape[0],) + tuple(x_shape[1:]), g, kernel, stride,
      pads), (g,), (kernel,), summed=False)


def kernel_gradient(x, g, kernel_shape, stride, pads):
  """dL/dkernel of the convolution of x, from its output gradient g, by oneDNN, float32."""
  return over_batch(lambda x, g: _call('vidjax_conv_kernel_gradient', kernel_shape, x, g,
                                        stride, pads), (x, g), (), summed=True)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x, kernel, stride, pads):
  return forward(x, kernel, stride, pads).astype(x.dtype)


def _conv_fwd(x, kernel, stride, pads):
  return _conv(x, kernel, stride, pads), (x, kernel)


def _conv_bwd(stride, pads, residuals, g):
  x, kernel = residuals
  return (input_gradient(g, kernel, x.shape, stride, pads).astype(x.dtype),
          kernel_gradient(x, g, kernel.shape, stride, pads).astype(kernel.dtype))


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         precision=None, min_multiply_adds=None):
  """lax.conv_general_dilated, for nn.Conv (NHWC, HWIO): on the CPU, a convolution with
  square strides, no dilation and one group, of at least `min_multiply_adds` per device
  (default MIN_CONVOLUTION_MACS), is computed by oneDNN, and so are its gradients."""
  strides = tuple(window_strides)
  if (lhs.ndim == 4 and strides[0] == strides[1] and feature_group_count == 1
      and all(d is None or tuple(d) == (1, 1) for d in (lhs_dilation, rhs_dilation))
      and jax.default_backend() == 'cpu'):
    pads = (lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides, padding)
            if isinstance(padding, str) else padding)
    pads = tuple(tuple(int(v) for v in p) for p in pads)
    out_shape = _output_shape(lhs.shape, rhs.shape, strides[0], pads)
    multiply_adds = (math.prod(out_shape) * math.prod(rhs.shape[:3])
                     // devices_over_batch(lhs.shape[0]))
    if (multiply_adds >= (MIN_CONVOLUTION_MACS if min_multiply_adds is None else
                          min_multiply_adds) and not unavailable_reason()):
      return _conv(lhs, rhs, strides[0], pads)
  return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                  rhs_dilation, dimension_numbers, feature_group_count,
                                  precision=precision)
