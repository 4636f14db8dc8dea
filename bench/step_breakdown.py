r"""Where the default model's CPU step goes, beside PyTorch's (the README's speed section).

  python bench/step_breakdown.py            # needs bench/requirements.txt (PyTorch)
  python bench/step_breakdown.py --cpu_kernels=native     # training's default on a CPU

Times, for SimSiam at batch 256 (the configs' ResNet-10 x0.25, 32 px, float32): the jitted
train step with and without the on-device augmentation, the model's forward pass alone
(encoder and projector) over the step's 512 images, the same forward and backward (BatchNorm
in training mode, a sum of squares as the loss) with and without the convolution kernels'
gradients, and bench/torch_reference.py's step (the same gradient stem) with and without its
augmentation. vidjax's kernels are all XLA's unless --cpu_kernels=native
(config.model.cpu_kernels). Prints one JSON object of milliseconds.
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from vidjax import parallel, step  # noqa: E402

STEPS = 15
BATCH = 256


def _train_speed():
  spec = importlib.util.spec_from_file_location('train_speed', os.path.join(HERE,
                                                                            'train_speed.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _timed(fn, *args) -> float:
  """Milliseconds per call of the jitted fn over STEPS calls, after one that compiles."""
  jax.block_until_ready(fn(*args))
  started = time.perf_counter()
  for _ in range(STEPS):
    out = fn(*args)
  jax.block_until_ready(out)
  return 1000 * (time.perf_counter() - started) / STEPS


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--cpu_kernels', default='xla', choices=('xla', 'native'))
  args = parser.parse_args()
  speed = _train_speed()
  milliseconds = {}
  for augment in (True, False):
    config = speed.make_config('simsiam', 'default', BATCH, 'float32', 0)
    config.data.photometric.on_device = augment
    config.model.cpu_kernels = args.cpu_kernels
    mesh = parallel.make_mesh()
    model, state, step_fn = step.make_state_and_step(config, mesh)
    batch = parallel.to_global(speed.random_batch(config, np.random.default_rng(0)), mesh)
    compiled = step_fn.lower(state, batch, jax.random.PRNGKey(0)).compile()
    state, _ = speed.timed_steps(compiled, state, lambda: batch, 3)
    state, seconds = speed.timed_steps(compiled, state, lambda: batch, STEPS)
    milliseconds[f'vidjax step, augmentation {"on" if augment else "off"}'] = 1000 * seconds
  variables = {'params': state['params'], 'batch_stats': state['batch_stats']}
  images = jnp.asarray(np.random.default_rng(0).random((2 * BATCH, 32, 32, 3), np.float32))
  forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
  milliseconds['vidjax encoder + projector forward, 512 images'] = _timed(forward, variables,
                                                                          images)
  leaves, treedef = jax.tree.flatten(state['params'])
  is_kernel = [leaf.ndim == 4 for leaf in leaves]

  def loss(kernels, others, x):
    kernels, others = iter(kernels), iter(others)
    params = jax.tree.unflatten(treedef, [next(kernels) if k else next(others)
                                          for k in is_kernel])
    outputs, _ = model.apply({'params': params, 'batch_stats': state['batch_stats']}, x,
                             train=True, mutable=['batch_stats'])
    return sum(jnp.sum(jnp.square(o)) for o in jax.tree.leaves(outputs))

  kernels = [leaf for leaf, k in zip(leaves, is_kernel) if k]
  others = [leaf for leaf, k in zip(leaves, is_kernel) if not k]
  for name, argnums in (('every gradient', (0, 1)), ('no kernel gradients', 1)):
    milliseconds[f'vidjax forward + backward, 512 images, {name}'] = _timed(
        jax.jit(jax.grad(loss, argnums)), kernels, others, images)
  for augment in ('--augment', '--no-augment'):
    result = subprocess.run(
        [sys.executable, os.path.join(HERE, 'torch_reference.py'), '--model=resnet10',
         '--width=0.25', '--image_size=32', f'--batch={BATCH}', '--method=simsiam',
         f'--steps={STEPS}', '--warmup=5', '--json', augment],
        capture_output=True, text=True, check=True)
    step_s = json.loads(result.stdout.strip().splitlines()[-1])['step_s']
    milliseconds[f'PyTorch step, augmentation {"on" if augment == "--augment" else "off"}'] = (
        1000 * step_s)
  print(json.dumps({k: round(v, 1) for k, v in milliseconds.items()}, indent=1))


if __name__ == '__main__':
  main()
