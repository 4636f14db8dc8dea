"""Orbax checkpoints of the train state and the Grain iterator, and graceful interrupts.

Orbax writes each checkpoint to a temporary directory and renames it when complete, so an
interrupted save never leaves a half-written checkpoint under a final name.
"""
import signal
from pathlib import Path

import grain
import jax
import orbax.checkpoint as ocp


class Checkpoints:
  """workdir/checkpoints/<step>/{state,data}: train state + data iterator position."""

  def __init__(self, workdir, keep: int):
    self.manager = ocp.CheckpointManager(
        Path(workdir).absolute() / 'checkpoints',  # Orbax needs absolute paths.
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

  def latest_step(self):
    return self.manager.latest_step()

  def save(self, step: int, state, data_iterator):
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=grain.checkpoint.CheckpointSave(data_iterator)), force=True)

  def restore(self, step: int, state_like, data_iterator):
    """Restores `step` into arrays shaped and sharded like `state_like`; the iterator in place."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_like)
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract),
        data=grain.checkpoint.CheckpointRestore(data_iterator)))
    return restored['state']

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()


class StopRequest:
  """Turns the first SIGINT/SIGTERM into a flag the training loop polls; a second one kills."""

  def __init__(self):
    self.requested = False
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGINT, signal.SIGTERM):
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    if self.requested:
      signal.signal(signum, self._previous[signum])
      signal.raise_signal(signum)
    self.requested = True

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
