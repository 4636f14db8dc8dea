r"""Prototype: the convolutions' kernel gradients by oneDNN, through XLA's FFI (issue 34, part 3).

  pip install onednn-cpu-gomp==2023.2.0 onednn-devel-cpu-gomp==2023.2.0   # needs g++
  python bench/onednn_kernel_gradient.py --out=bench/results/onednn_kernel_gradient_2026-12-07.json

XLA:CPU computes a convolution's kernel gradient over batch-minor copies of the activation
and the output gradient (docs/experiments.md, "The CPU step"); oneDNN, as PyTorch does,
reads both in NHWC. This builds bench/onednn_kernel_gradient.cc, swaps the kernel gradient
of every convolution reading a map of at least --min_size px for it (a custom_vjp passed to
nn.Conv as conv_general_dilated; the forward and input gradient stay XLA's), checks one layer
against XLA's, and times the default model's step with and without it, alternating, in one
process. Prints and writes one JSON object. Not wired into training: see docs/experiments.md.
"""
import argparse
import contextlib
import ctypes
import functools
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# Read by libgomp when oneDNN loads: its idle threads sleep instead of spinning on the cores
# XLA's own threads need between the calls.
os.environ.setdefault('OMP_WAIT_POLICY', 'passive')
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import train_speed as speed  # noqa: E402
from vidjax import atomic, parallel, step  # noqa: E402

_TARGET = 'vidjax_conv_kernel_gradient'
_NHWC = ('NHWC', 'HWIO', 'NHWC')


def build_and_register():
  """Compiles the handler and registers it with XLA's CPU client (the built library is
  deleted once loaded: the process keeps it mapped)."""
  prefix = sysconfig.get_config_var('prefix')
  if not os.path.exists(os.path.join(prefix, 'include', 'oneapi', 'dnnl', 'dnnl.hpp')):
    sys.exit(f'oneDNN headers not found under {prefix}/include: pip install '
             'onednn-cpu-gomp==2023.2.0 onednn-devel-cpu-gomp==2023.2.0')
  if not shutil.which('g++'):
    sys.exit('g++ not found: this prototype compiles bench/onednn_kernel_gradient.cc '
             '(apt-get install -y g++)')
  with tempfile.TemporaryDirectory(prefix='vidjax_onednn_') as build_dir:
    library = os.path.join(build_dir, 'kernel_gradient.so')
    subprocess.run(['g++', '-O2', '-std=c++17', '-shared', '-fPIC', '-w',
                    f'-I{jax.ffi.include_dir()}', f'-I{prefix}/include',
                    os.path.join(HERE, 'onednn_kernel_gradient.cc'), f'-L{prefix}/lib',
                    '-ldnnl', f'-Wl,-rpath,{prefix}/lib', '-o', library], check=True)
    handler = ctypes.cdll.LoadLibrary(library).ConvKernelGradient
  jax.ffi.register_ffi_target(_TARGET, jax.ffi.pycapsule(handler), platform='cpu')


def kernel_gradient(x, g, kernel_shape, stride, pads):
  (top, bottom), (left, right) = pads
  return jax.ffi.ffi_call(_TARGET, jax.ShapeDtypeStruct(kernel_shape, jnp.float32))(
      x.astype(jnp.float32), g.astype(jnp.float32), stride=stride, pad_top=top,
      pad_bottom=bottom, pad_left=left, pad_right=right)


def _xla_conv(x, kernel, stride, pads):
  return lax.conv_general_dilated(x, kernel, (stride, stride), pads, dimension_numbers=_NHWC)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x, kernel, stride, pads):
  return _xla_conv(x, kernel, stride, pads)


def _conv_fwd(x, kernel, stride, pads):
  return _xla_conv(x, kernel, stride, pads), (x, kernel)


def _conv_bwd(stride, pads, residuals, g):
  x, kernel = residuals
  _, input_vjp = jax.vjp(lambda x: _xla_conv(x, kernel, stride, pads), x)
  return input_vjp(g)[0], kernel_gradient(x, g, kernel.shape, stride, pads).astype(kernel.dtype)


_conv.defvjp(_conv_fwd, _conv_bwd)


def make_conv_general_dilated(min_size: int):
  """lax.conv_general_dilated's signature, for nn.Conv: square strides, no dilation, one group
  and an input of at least min_size px take the oneDNN kernel gradient."""
  def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                           rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                           precision=None):
    strides = tuple(window_strides)
    if (lhs.shape[1] >= min_size and strides[0] == strides[1] and feature_group_count == 1
        and all(d is None or tuple(d) == (1, 1) for d in (lhs_dilation, rhs_dilation))):
      pads = (lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides, padding)
              if isinstance(padding, str) else padding)
      return _conv(lhs, rhs, strides[0], tuple(tuple(int(v) for v in p) for p in pads))
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                    rhs_dilation, dimension_numbers, feature_group_count,
                                    precision=precision)
  return conv_general_dilated


@contextlib.contextmanager
def onednn_convolutions(min_size: int):
  """While open, every flax nn.Conv built takes the oneDNN kernel gradient (same names)."""
  original = nn.Conv

  class Conv(original):
    conv_general_dilated: object = make_conv_general_dilated(min_size)

  nn.Conv = Conv
  try:
    yield
  finally:
    nn.Conv = original


def check_one_layer() -> float:
  """Largest relative difference from XLA's kernel gradient, over a few layer shapes."""
  rng = np.random.default_rng(0)
  worst = 0.0
  for size, stride, padding, features in [(3, 1, 'SAME', 16), (3, 2, 'SAME', 32),
                                          (1, 2, 'VALID', 32), (7, 2, [(3, 3), (3, 3)], 8)]:
    x = jnp.asarray(rng.normal(size=(8, 16, 12, 16)), jnp.float32)
    grads = []
    for fn in (None, make_conv_general_dilated(0)):
      conv = nn.Conv(features, (size, size), stride, padding=padding, use_bias=False,
                     conv_general_dilated=fn)
      params = conv.init(jax.random.PRNGKey(0), x)
      grads.append(jax.jit(jax.grad(lambda p: jnp.sum(jnp.sin(conv.apply(p, x)))))(params))
    for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
      worst = max(worst, float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a))))
  return worst


def compiled_step(method: str, mesh):
  config = speed.make_config(method, 'default', 256, 'float32', 0)
  _, state, step_fn = step.make_state_and_step(config, mesh)
  batch = parallel.to_global(speed.random_batch(config, np.random.default_rng(0)), mesh)
  compiled = step_fn.lower(state, batch, jax.random.PRNGKey(0)).compile()
  return compiled, state, batch


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--methods', default='simsiam,npair')
  parser.add_argument('--min_size', type=int, default=16,
                      help='px: convolutions reading smaller maps keep XLA\'s kernel gradient')
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--steps', type=int, default=3, help='timed steps per round')
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  build_and_register()
  result = {'jax': jax.__version__, 'min_size': args.min_size, 'batch': 256,
            'max_relative_difference_one_layer': check_one_layer(), 'step_ms': {}}
  mesh = parallel.make_mesh()
  for method in args.methods.split(','):
    runs = {'xla': compiled_step(method, mesh)}
    with onednn_convolutions(args.min_size):
      runs['onednn'] = compiled_step(method, mesh)
    times = {name: [] for name in runs}
    for _ in range(args.rounds):
      for name, (compiled, state, batch) in runs.items():
        state, _ = speed.timed_steps(compiled, state, lambda: batch, 1)
        state, seconds = speed.timed_steps(compiled, state, lambda: batch, args.steps)
        runs[name] = (compiled, state, batch)
        times[name].append(round(1000 * seconds))
    result['step_ms'][method] = times
    print(method, json.dumps(times), flush=True)
  print(json.dumps(result))
  if args.out:
    atomic.write_json(args.out, result)


if __name__ == '__main__':
  main()
