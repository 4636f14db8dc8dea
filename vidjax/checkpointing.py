"""Orbax checkpoints of the train state, and graceful interrupts, on one host or many.

Orbax writes each checkpoint to a temporary directory and renames it when complete, so an
interrupted save never leaves a half-written checkpoint under a final name. With several
processes every one of them takes part in each save and restore (each writes the shards its
devices hold; the workdir must be on a filesystem all hosts share), and a checkpoint is
restored onto whatever mesh `state_like` lives on: any process and device count.

The data position is not saved: it follows from the step (vidjax/data/pipeline.py), so a
run can resume on a different number of processes. Checkpoints of earlier versions, which
also hold a `data` item (Grain's per-process iterator state), restore the same way.
"""
import os
import shutil
import signal
import time
from pathlib import Path

import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from vidjax import disk_space


def checkpoint_dir(workdir) -> Path:
  return Path(workdir).absolute() / 'checkpoints'  # Orbax needs absolute paths.


def size_bytes(state) -> int:
  """About the bytes one checkpoint of `state` takes on disk."""
  return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(state))


def discard_unfinished(workdir):
  """Removes what an interrupted save left (Orbax's temporary folders), which Orbax would
  ignore but which would keep filling a disk that was already full."""
  directory = checkpoint_dir(workdir)
  if directory.is_dir():
    for leftover in directory.glob('*.orbax-checkpoint-tmp*'):
      shutil.rmtree(leftover, ignore_errors=True)


def finished_steps(workdir) -> list:
  """The steps of the finished checkpoints in workdir/checkpoints, oldest first; creates
  nothing."""
  directory = checkpoint_dir(workdir)
  if not directory.is_dir():
    return []
  manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(create=False))
  try:
    return sorted(manager.all_steps())
  finally:
    manager.close()


def set_aside_after(workdir, step: int) -> list:
  """Moves the checkpoints after `step` to WORKDIR/set_aside/; returns their steps."""
  later = [s for s in finished_steps(workdir) if s > step]
  aside = Path(workdir).absolute() / 'set_aside'
  for s in later:
    os.makedirs(aside, exist_ok=True)
    target = aside / str(s)
    if target.exists():
      target = aside / f'{s}.{int(time.time())}'
    os.replace(checkpoint_dir(workdir) / str(s), target)
  return later


def latest_step(workdir):
  """The newest finished checkpoint's step in workdir/checkpoints, or None; creates nothing."""
  steps = finished_steps(workdir)
  return steps[-1] if steps else None


def restore(manager, step: int, state_like):
  """Checkpoint `step` of an Orbax CheckpointManager, restored into arrays shaped and
  sharded like `state_like` (on whatever mesh it lives: any process and device count)."""
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_like)
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract)))
  return restored['state']


def restore_from(directory, step: int, state_like):
  """`restore` from a checkpoints/ folder that is only read."""
  manager = ocp.CheckpointManager(Path(directory).absolute(),
                                  options=ocp.CheckpointManagerOptions(create=False))
  try:
    return restore(manager, step, state_like)
  finally:
    manager.close()


class Checkpoints:
  """workdir/checkpoints/<step>/state: the train state, the newest `keep` of them."""

  def __init__(self, workdir, keep: int):
    self.directory = checkpoint_dir(workdir)
    # Synchronous saves: a full disk then fails inside save(), where the trainer reports it
    # in one line, not in Orbax's background threads some steps later.
    self.manager = ocp.CheckpointManager(self.directory, options=ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, enable_async_checkpointing=False))

  def latest_step(self):
    return self.manager.latest_step()

  def save(self, step: int, state):
    """Saves `state` as checkpoint `step`; an OSError (ENOSPC) before writing anything when
    the disk has less free space than the checkpoint needs."""
    disk_space.require_free(self.directory, int(size_bytes(state) * 1.1) + 2**18,
                            f'checkpoint {step}')
    with disk_space.quiet_background_errors():
      self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)),
                        force=True)

  def restore(self, step: int, state_like):
    return restore(self.manager, step, state_like)

  def __enter__(self):
    return self

  def __exit__(self, *exc):  # Also on an error: a save being written is finished.
    self.close()

  def close(self):
    """Waits for a save still being written, then closes; calling it again does nothing."""
    if self.manager is not None:
      self.manager.wait_until_finished()
      self.manager.close()
      self.manager = None


class StopRequest:
  """Turns SIGINT/SIGTERM into a stop at a step boundary, after a checkpoint.

  One process: the first signal sets a flag `reached(step)` reports; a second one kills.
  Several processes must all stop (and save, a collective) at the same step, so SIGTERM is
  left to JAX's preemption service, which tells every process and picks the step (what
  cluster schedulers send before evicting a job); SIGINT (Ctrl-C) is turned into a SIGTERM.
  """

  def __init__(self):
    self.requested = False
    self._multiprocess = jax.process_count() > 1
    self._previous = {}

  def __enter__(self):
    signals = (signal.SIGINT,) if self._multiprocess else (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    if self.requested:
      signal.signal(signum, self._previous[signum])
      signal.raise_signal(signum)
    self.requested = True
    if self._multiprocess:
      os.kill(os.getpid(), signal.SIGTERM)

  def reached(self, step: int) -> bool:
    """True at the step where the run should save and stop (the same on every process)."""
    if self._multiprocess:
      return multihost_utils.reached_preemption_sync_point(step)
    return self.requested

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
