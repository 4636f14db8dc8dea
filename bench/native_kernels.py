r"""Training's native CPU kernels against XLA's: the step alternating, and layer by layer.

  python bench/native_kernels.py --out=bench/results/native_kernels_2026-12-07.json
  python bench/native_kernels.py --layers --out=bench/results/native_kernel_layers_2026-12-07.json

The first compiles the default configs' step (batch 256; `--setup` and `--batch` pick
another of bench/train_speed.py's setups) with config.model.cpu_kernels 'xla' and
'native' (oneDNN's convolutions and C++ BatchNorm sums, vidjax/models/onednn.py and
batch_norm.py) and times them in turns in one process, so that the host's drift of the
moment (docs/experiments.md, "The CPU step") falls on both. The second times each of the default model's convolution and BatchNorm
shapes, forward and backward, at several batch sizes, each kernel forced on (the size rule
off): where the native one starts to pay is what onednn.MIN_CONVOLUTION_MACS and
batch_norm.MIN_ELEMENTS say. Prints and writes one JSON object of milliseconds.
"""
import argparse
import functools
import json
import os
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import train_speed as speed  # noqa: E402
from vidjax import atomic, parallel, step  # noqa: E402
from vidjax.models import batch_norm, onednn  # noqa: E402

# The default model's (resnet10, width 0.25, 32 px, CIFAR stem, gradient stem) layers:
# (name, input size, input channels, output channels, kernel, stride).
LAYERS = [('stem 3x3 9->16', 32, 9, 16, 3, 1), ('3x3 16->16', 32, 16, 16, 3, 1),
          ('3x3/2 16->32', 32, 16, 32, 3, 2), ('1x1/2 16->32', 32, 16, 32, 1, 2),
          ('3x3 32->32', 16, 32, 32, 3, 1), ('3x3/2 32->64', 16, 32, 64, 3, 2),
          ('3x3 64->64', 8, 64, 64, 3, 1),
          ('3x3 128->128', 4, 128, 128, 3, 1)]


def compiled_step(method: str, setup: str, batch_size: int, cpu_kernels: str, mesh):
  config = speed.make_config(method, setup, batch_size, 'float32', 0)
  config.model.cpu_kernels = cpu_kernels
  _, state, step_fn = step.make_state_and_step(config, mesh)
  batch = parallel.to_global(speed.random_batch(config, np.random.default_rng(0)), mesh)
  return step_fn.lower(state, batch, jax.random.PRNGKey(0)).compile(), state, batch


def alternate(runs: dict, rounds: int, timed) -> dict:
  """{name: [ms per round]}: each run's `timed(run) -> (run, seconds)` in turns."""
  times = {name: [] for name in runs}
  for _ in range(rounds):
    for name in runs:
      runs[name], seconds = timed(runs[name])
      times[name].append(round(1000 * seconds, 2))
  return times


def steps(args) -> dict:
  mesh = parallel.make_mesh()
  result = {}
  for method in args.methods.split(','):
    runs = {name: compiled_step(method, args.setup, args.batch, name, mesh)
            for name in ('xla', 'native')}

    def timed(run):
      compiled, state, batch = run
      state, _ = speed.timed_steps(compiled, state, lambda: batch, 1)
      state, seconds = speed.timed_steps(compiled, state, lambda: batch, args.steps)
      return (compiled, state, batch), seconds

    result[method] = alternate(runs, args.rounds, timed)
    print(method, json.dumps(result[method]), flush=True)
  return result


def _layer_fn(layer, native: bool, batch_size: int):
  """A jitted forward + backward of one layer, XLA's or forced native, and its input."""
  _, size, channels, features, kernel, stride = layer
  x = jnp.asarray(np.random.default_rng(0).normal(size=(batch_size, size, size, channels)),
                  jnp.float32)
  if kernel:
    module = nn.Conv(features, (kernel, kernel), stride, use_bias=False,
                     conv_general_dilated=functools.partial(
                         onednn.conv_general_dilated, min_multiply_adds=0) if native else
                     jax.lax.conv_general_dilated)
  else:
    module = (functools.partial(batch_norm.BatchNorm, min_elements=0) if native
              else nn.BatchNorm)(use_running_average=False)
  variables = module.init(jax.random.PRNGKey(0), x)

  def loss(params, x):
    y, _ = module.apply({**variables, 'params': params}, x, mutable=['batch_stats'])
    return jnp.sum(y * y)

  return jax.jit(jax.grad(loss, argnums=(0, 1))), (variables['params'], x)


def layers(args) -> dict:
  norms = sorted({(f'BatchNorm {s}x{s}x{f}', s // st, f, f, 0, 1)
                  for _, s, _, f, _, st in LAYERS})
  result = {}
  for layer in LAYERS + norms:
    for batch_size in (int(b) for b in args.layer_batches.split(',')):
      runs = {}
      for native in (False, True):
        fn, inputs = _layer_fn(layer, native, batch_size)
        jax.block_until_ready(fn(*inputs))
        runs['native' if native else 'xla'] = (fn, inputs)

      def timed(run):
        fn, inputs = run
        started = time.perf_counter()
        for _ in range(args.steps):
          out = fn(*inputs)
        jax.block_until_ready(out)
        return run, (time.perf_counter() - started) / args.steps

      times = alternate(runs, args.rounds, timed)
      name, size, channels, features, kernel, stride = layer
      out_size = -(-size // stride)
      work = (batch_size * out_size**2 * kernel**2 * channels * features if kernel
              else batch_size * size**2 * channels)
      key = f'{name} batch {batch_size}'
      result[key] = {'multiply_adds' if kernel else 'elements': work,
                     **{k: float(np.median(v)) for k, v in times.items()}}
      print(key, json.dumps(result[key]), flush=True)
  return result


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--methods', default='simsiam,npair')
  parser.add_argument('--setup', default='default', choices=list(speed.SETUPS))
  parser.add_argument('--batch', type=int, default=256)
  parser.add_argument('--layers', action='store_true', help='time layer by layer instead')
  parser.add_argument('--layer_batches', default='1,4,16,64,256')
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--steps', type=int, default=3, help='timed calls per round')
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  if onednn.unavailable_reason():
    sys.exit(f'native kernels unavailable: {onednn.unavailable_reason()}')
  result = {'jax': jax.__version__, 'devices': jax.device_count()}
  if args.layers:
    result['layer_ms'] = layers(args)
  else:
    result.update(setup=args.setup, batch=args.batch, step_ms=steps(args))
  print(json.dumps(result))
  if args.out:
    atomic.write_json(args.out, result)


if __name__ == '__main__':
  main()
