"""Where the frame changes: crop anchors biased toward independently moving things.

Backgrounds are temporally coherent too, so crops around uniformly random points mostly show
background, and an encoder trained on them learns to match background texture. Differencing
two frames of a sample after undoing the global camera translation (phase correlation)
highlights what moves on its own; anchors are drawn in proportion to that difference, with a
uniform share so that static objects and scenes are still seen.
"""
import numpy as np
from PIL import Image

_WORK_SIZE = 96  # Motion is computed with the shorter side reduced to about this many pixels.


def _reduce(frame, factor: int):
  """HxWx3 uint8 -> float32 (H/factor)x(W/factor)x3 by block averaging (PIL's box filter:
  ten times faster than numpy here, and this runs for every training sample)."""
  if factor > 1:
    height, width = frame.shape[0] // factor, frame.shape[1] // factor
    frame = Image.fromarray(frame).resize(
        (width, height), Image.BOX, box=(0, 0, width * factor, height * factor))
  return np.asarray(frame, np.float32)


def global_shift(a, b):
  """Integer (dy, dx) with np.roll(b, (dy, dx), (0, 1)) ~ a, by phase correlation."""
  window = np.outer(np.hanning(a.shape[0]), np.hanning(a.shape[1]))
  fa = np.fft.rfft2((a - a.mean()) * window)
  fb = np.fft.rfft2((b - b.mean()) * window)
  cross = fa * np.conj(fb)
  response = np.fft.irfft2(cross / (np.abs(cross) + 1e-6), s=a.shape)
  dy, dx = np.unravel_index(np.argmax(response), response.shape)
  height, width = a.shape
  return (dy - height if dy > height // 2 else dy), (dx - width if dx > width // 2 else dx)


def motion_map(frame_a, frame_b):
  """(map of colour change after camera alignment, its downsampling factor)."""
  factor = max(1, round(min(frame_a.shape[:2]) / _WORK_SIZE))
  a, b = _reduce(frame_a, factor), _reduce(frame_b, factor)
  dy, dx = global_shift(a.mean(axis=2), b.mean(axis=2))
  change = np.abs(a - np.roll(b, (dy, dx), axis=(0, 1))).sum(axis=2)
  # Rows and columns that wrapped around compare unrelated pixels.
  if dy:
    change[slice(0, dy) if dy > 0 else slice(dy, None)] = 0
  if dx:
    change[:, slice(0, dx) if dx > 0 else slice(dx, None)] = 0
  # Lighting drift and noise change every pixel a little: keep only what stands out.
  return np.maximum(change - np.median(change), 0), factor


def sample_anchor(rng: np.random.Generator, frame_a, frame_b, uniform_share: float):
  """(x, y) in frame pixels: where frames a and b differ most, or uniform."""
  height, width = frame_a.shape[:2]
  if rng.random() >= uniform_share:
    change, factor = motion_map(frame_a, frame_b)
    total = change.sum()
    if total > 0:
      cell = rng.choice(change.size, p=(change / total).ravel())
      row, col = divmod(int(cell), change.shape[1])
      return (col + rng.random()) * factor, (row + rng.random()) * factor
  return rng.uniform(0, width), rng.uniform(0, height)
