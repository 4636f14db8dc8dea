"""Metrics as JSON lines (one object per logged step) and a terminal progress line."""
import json
import math
import os
import sys
import time

import numpy as np

from vidjax import atomic


class MetricWriter:
  """Appends {"step": ..., **metrics} lines to a JSONL file; resumed runs keep appending."""

  def __init__(self, path, enabled: bool = True):
    self.path = path
    self.enabled = enabled

  def drop_after(self, step: int):
    """Removes the rows logged after `step` (a resumed run replays those steps)."""
    if not self.enabled or not os.path.exists(self.path):
      return
    with open(self.path) as f:
      lines = f.readlines()
    kept = [line for line in lines if _logged_step(line) <= step]
    if len(kept) < len(lines):
      atomic.write_text(self.path, ''.join(kept))

  def write(self, step: int, metrics: dict):
    if not self.enabled:
      return
    record = {'step': int(step)}
    record.update({k: v if isinstance(v, dict) else float(v) for k, v in metrics.items()})
    with open(self.path, 'a') as f:
      f.write(json.dumps(record) + '\n')


def _logged_step(line: str) -> float:
  """The step of a metrics row; infinity for a row a kill cut short (so it is dropped)."""
  try:
    return json.loads(line)['step']
  except (ValueError, KeyError, TypeError):
    return float('inf')


class OffsetHistogram:
  """Counts of the temporal offsets |dt| (in frames) of the views trained on since the last
  pop: what the temporal pdf actually delivered after clipping at the video ends."""

  def __init__(self):
    self.counts = np.zeros(0, np.int64)

  def add(self, dt):
    """dt: [samples, K] offsets of each view from its sample's anchor (column 0)."""
    counts = np.bincount(np.abs(np.asarray(dt)[:, 1:]).ravel())
    if len(counts) > len(self.counts):
      self.counts = np.pad(self.counts, (0, len(counts) - len(self.counts)))
    self.counts[:len(counts)] += counts

  def pop(self, combine=lambda counts: counts) -> dict:
    """{'dt_mean': mean |dt|, 'dt_hist': {'|dt|': count}}, and starts counting afresh.

    combine: maps these counts to the ones reported (e.g. summed over processes).
    """
    counts, self.counts = np.asarray(combine(self.counts), np.int64), np.zeros(0, np.int64)
    if not counts.sum():
      return {}
    offsets = np.arange(len(counts))
    return {'dt_mean': float((offsets * counts).sum() / counts.sum()),
            'dt_hist': {str(d): int(n) for d, n in zip(offsets, counts) if n}}


def format_duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return '?'
  seconds = int(seconds)
  hours, rest = divmod(seconds, 3600)
  return f'{hours}h{rest // 60:02d}m' if hours else f'{rest // 60}m{rest % 60:02d}s'


class Throughput:
  """Training samples per second between `measure` calls, not counting `pause`d time."""

  def __init__(self, step: int, batch_size: int):
    self.batch_size = batch_size
    self._step = step
    self._start = time.perf_counter()
    self._paused = 0.0
    self.steps_per_sec = float('nan')

  def pause(self, seconds: float):
    self._paused += seconds

  def measure(self, step: int) -> float:
    now = time.perf_counter()
    elapsed = max(now - self._start - self._paused, 1e-9)
    self.steps_per_sec = (step - self._step) / elapsed
    self._step, self._start, self._paused = step, now, 0.0
    return self.steps_per_sec * self.batch_size


def print_progress(step: int, total_steps: int, metrics: dict, steps_per_sec: float,
                   enabled: bool = True):
  """One line: step, loss, the latest kNN accuracy, throughput and ETA."""
  if not enabled:
    return
  eta = (total_steps - step) / steps_per_sec if steps_per_sec > 0 else float('nan')
  parts = [f'step {step}/{total_steps}']
  parts += [f'{k} {metrics[k]:.4g}' for k in ('loss', 'hog_loss', 'knn_top1', 'context_match',
                                               'feature_rank', 'embed_std') if k in metrics]
  if 'pairs_per_sec' in metrics:
    parts.append(f"{metrics['pairs_per_sec']:.0f} pairs/s")
  parts.append(f'ETA {format_duration(eta)}')
  print(' | '.join(parts), file=sys.stdout, flush=True)
