"""One process of a local multi-process run, started by tests/test_multiprocess.py.

  python tests/multiprocess_child.py main|evaluate FLAGS...

runs main.py or `python -m vidjax.evaluate` unchanged (the test gives each process its fake
CPU devices with JAX_NUM_CPU_DEVICES). With KILL_AT_BATCH=N and KILL_AFTER=PATH in the
environment the process SIGKILLs itself when the trainer fetches batch N, once PATH exists:
a host dying mid-run, after a given checkpoint is on disk. With INTERLEAVE_MESH=1 the
mesh alternates between the processes' devices, so each process holds rows 0, 2 or 1, 3
of every batch, as jax.make_mesh's topology-aware order can interleave the hosts of a pod.
"""
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
from absl import app  # noqa: E402

from vidjax import parallel  # noqa: E402


def die_at_batch(number: int, after_path: str):
  real = parallel.to_global
  fetched = [0]

  def to_global(batch, mesh):
    if isinstance(batch, dict) and 'views' in batch:  # A training batch, not the monitor's.
      fetched[0] += 1
      if fetched[0] == number:
        deadline = time.monotonic() + 120
        while not os.path.exists(after_path) and time.monotonic() < deadline:
          time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGKILL)
    return real(batch, mesh)

  parallel.to_global = to_global


def interleave_mesh():
  real = parallel.make_mesh

  def make_mesh(devices=None):
    devices = jax.devices() if devices is None else devices
    by_process = [[d for d in devices if d.process_index == p]
                  for p in sorted({d.process_index for d in devices})]
    return real([device for column in zip(*by_process) for device in column])

  parallel.make_mesh = make_mesh


if __name__ == '__main__':
  program = sys.argv.pop(1)
  if os.environ.get('INTERLEAVE_MESH'):
    interleave_mesh()
  if 'KILL_AT_BATCH' in os.environ:
    die_at_batch(int(os.environ['KILL_AT_BATCH']), os.environ['KILL_AFTER'])
  if program == 'main':
    import main
    app.run(main.main, flags_parser=main.parse_flags)
  else:
    from vidjax.evaluate import __main__ as evaluate
    app.run(evaluate.main)
