r"""Training's convolutions by oneDNN against XLA's: the default model's step, alternating.

  python bench/onednn_convolutions.py --out=bench/results/onednn_convolutions_2026-12-07.json

Compiles the default configs' step (batch 256) twice, with config.model.convolutions
'xla' and 'onednn' (vidjax/models/onednn.py), and times them in turns in one process, so
that the host's drift of the moment (docs/experiments.md, "The CPU step") falls on both.
Prints and writes one JSON object of milliseconds per step.
"""
import argparse
import json
import os
import sys

import jax
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import train_speed as speed  # noqa: E402
from vidjax import atomic, parallel, step  # noqa: E402
from vidjax.models import onednn  # noqa: E402


def compiled_step(method: str, convolutions: str, mesh):
  config = speed.make_config(method, 'default', 256, 'float32', 0)
  config.model.convolutions = convolutions
  _, state, step_fn = step.make_state_and_step(config, mesh)
  batch = parallel.to_global(speed.random_batch(config, np.random.default_rng(0)), mesh)
  return step_fn.lower(state, batch, jax.random.PRNGKey(0)).compile(), state, batch


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--methods', default='simsiam,npair')
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--steps', type=int, default=3, help='timed steps per round')
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  if onednn.unavailable_reason():
    sys.exit(f'oneDNN convolutions unavailable: {onednn.unavailable_reason()}')
  result = {'jax': jax.__version__, 'batch': 256, 'step_ms': {}}
  mesh = parallel.make_mesh()
  for method in args.methods.split(','):
    runs = {name: compiled_step(method, name, mesh) for name in ('xla', 'onednn')}
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
