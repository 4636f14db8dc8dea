"""Where the frame changes: crop anchors biased toward independently moving things.

Backgrounds are temporally coherent too, so crops around uniformly random points mostly show
background, and an encoder trained on them learns to match background texture. Differencing
two frames of a sample after undoing the global camera translation (phase correlation)
highlights what moves on its own; anchors are drawn in proportion to that difference, with a
uniform share so that static objects and scenes are still seen.
"""
import numpy as np
from PIL import Image
from scipy import ndimage

_WORK_SIZE = 96  # Motion is computed with the shorter side reduced to about this many pixels.
# moving_mask keeps changes above this share of the strongest, in regions of at least this
# many work cells; measured against the embedded world's true object masks (covering 85-90%
# of the moving objects) with bench/views.py.
_MASK_LEVEL = 0.2
_MASK_MIN_CELLS = 6
# The maps `vidjax.prepare` stores per frame: work cells summed over POOLED x POOLED blocks
# (8 px cells in 160 px frames), small enough to keep beside the frames.
POOLED = 4


def _reduce(frame, factor: int):
  """HxWx3 uint8 -> float32 (H/factor)x(W/factor)x3 by block averaging (PIL's box filter:
  ten times faster than numpy here, and this runs for every training sample)."""
  if factor > 1:
    height, width = frame.shape[0] // factor, frame.shape[1] // factor
    frame = Image.fromarray(frame).resize(
        (width, height), Image.BOX, box=(0, 0, width * factor, height * factor))
  return np.asarray(frame, np.float32)


def _reduce_grey(frame, factor: int):
  """HxWx3 uint8 -> float32 grey image reduced `factor` times (PIL: grey first, then box)."""
  grey = Image.fromarray(frame).convert('L')
  height, width = frame.shape[0] // factor, frame.shape[1] // factor
  if factor > 1:
    grey = grey.resize((width, height), Image.BOX, box=(0, 0, width * factor, height * factor))
  return np.asarray(grey, np.float32)


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


def pooled_motion_map(frame_a, frame_b):
  """(motion_map summed over POOLED x POOLED blocks of work cells, float32; the block's side
  in frame pixels): a coarser map with the same mass per block, so anchors drawn from it
  fall where motion_map's would, to within a block. The last rows and columns that do not
  fill a block are dropped."""
  change, factor = motion_map(frame_a, frame_b)
  rows, cols = change.shape[0] // POOLED, change.shape[1] // POOLED
  blocks = change[:rows * POOLED, :cols * POOLED].reshape(rows, POOLED, cols, POOLED)
  return blocks.sum(axis=(1, 3)), factor * POOLED


def sample_anchor(rng: np.random.Generator, frame_a, frame_b, uniform_share: float,
                  change=None):
  """(x, y) in frame pixels: where frames a and b differ most, or uniform.

  change: motion_map(frame_a, frame_b) when the caller has it already, or a map of the
  same kind at another cell size (pooled_motion_map, as vidjax.prepare stores them).
  """
  height, width = frame_a.shape[:2]
  if rng.random() >= uniform_share:
    change, factor = change if change is not None else motion_map(frame_a, frame_b)
    total = change.sum()
    if total > 0:
      cell = rng.choice(change.size, p=(change / total).ravel())
      row, col = divmod(int(cell), change.shape[1])
      return (col + rng.random()) * factor, (row + rng.random()) * factor
  return rng.uniform(0, width), rng.uniform(0, height)


def region_box(mask, point):
  """(x0, y0, x1, y1) in frame pixels of the region of `mask` (a moving_mask) that holds
  `point` (x, y), or of the one nearest to it; None when nothing moves."""
  inside = mask > 0.5
  regions, count = ndimage.label(inside)
  if not count:
    return None
  x, y = (min(max(int(v), 0), limit - 1) for v, limit in zip(point, inside.shape[::-1]))
  label = regions[y, x]
  if not label:
    _, (rows, cols) = ndimage.distance_transform_edt(~inside, return_indices=True)
    label = regions[rows[y, x], cols[y, x]]
  ys, xs = np.nonzero(regions == label)
  return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def moving_mask(change, factor: int, shape) -> np.ndarray:
  """(H, W) float32 in [0, 1]: the regions that move on their own, from a motion_map.

  The map lights up an object's outline where it moved rather than its whole area, and
  texture edges where the camera zoomed: the strongest changes are kept, closed and
  filled into regions, specks dropped, and the result grown by a cell and softened.
  """
  if change.max() <= 0:
    return np.zeros(shape, np.float32)
  moving = change > _MASK_LEVEL * change.max()
  moving = ndimage.binary_fill_holes(ndimage.binary_closing(moving, iterations=3) | moving)
  regions, count = ndimage.label(moving)
  sizes = ndimage.sum(moving, regions, range(1, count + 1))
  moving = ndimage.binary_dilation(np.isin(regions, 1 + np.flatnonzero(sizes >= _MASK_MIN_CELLS)))
  height, width = moving.shape
  soft = Image.fromarray(moving.astype(np.uint8) * 255).resize(
      (width * factor, height * factor), Image.BILINEAR)
  mask = np.zeros(shape, np.float32)
  mask[:soft.height, :soft.width] = np.asarray(soft, np.float32)[:shape[0], :shape[1]] / 255
  return mask


def _correlate_valid(images, kernels):
  """'valid' cross-correlations [I, J, N-M+1, N-M+1] of images [I, N, N] with kernels
  [J, M, M], through the FFT (sliding-window products were the slowest part of track)."""
  n, m = images.shape[-1], kernels.shape[-1]
  size = n + m - 1
  image_f = np.fft.rfft2(images, s=(size, size))
  kernel_f = np.fft.rfft2(kernels[:, ::-1, ::-1], s=(size, size))
  full = np.fft.irfft2(image_f[:, None] * kernel_f[None], s=(size, size))
  return full[:, :, m - 1:n, m - 1:n]


def track(frame_a, frame_b, point, search: float = 0.15):
  """Where the content around `point` (x, y) of frame_a went in frame_b: (x, y) in frame_b.

  Block matching at the motion work size: the patch around the point (Gaussian-weighted, so
  the object under the anchor counts more than the background around it) is compared, with
  its mean removed (lighting drifts), with every patch of frame_b displaced by up to
  `search` x the shorter side from where the camera motion alone would have taken it.
  This lets the views of a sample follow an object over a longer time gap: the background
  behind it changes, the object stays in the crop.
  """
  factor = max(1, round(min(frame_a.shape[:2]) / _WORK_SIZE))
  a, b = _reduce_grey(frame_a, factor), _reduce_grey(frame_b, factor)
  dy, dx = global_shift(b, a)  # np.roll(a, (dy, dx)) ~ b: camera motion from a to b.
  half = max(4, round(0.12 * min(a.shape)))  # Patch side 2*half+1: about one small object.
  reach = max(1, round(search * min(a.shape)))
  x = min(int(point[0] / factor), a.shape[1] - 1)
  y = min(int(point[1] / factor), a.shape[0] - 1)
  pad = half + reach + max(abs(dy), abs(dx))
  a_padded, b_padded = np.pad(a, half, mode='edge'), np.pad(b, pad, mode='edge')
  template = a_padded[y:y + 2 * half + 1, x:x + 2 * half + 1]
  offsets = np.arange(-half, half + 1)
  weights = np.exp(-(offsets[:, None]**2 + offsets[None, :]**2) / (2 * (half / 3)**2))
  template = template - np.average(template, weights=weights)
  # Candidate patches centred at (x + dx + u, y + dy + v), |u|, |v| <= reach; the weighted
  # SSD of mean-removed patches, expanded into three weighted correlations.
  top, left = y + dy + pad - reach - half, x + dx + pad - reach - half
  region = b_padded[top:top + 2 * (reach + half) + 1, left:left + 2 * (reach + half) + 1]
  (local_sum, cross), (local_sum_sq, _) = _correlate_valid(
      np.stack([region, region * region]), np.stack([weights, weights * template]))
  cost = local_sum_sq - local_sum**2 / weights.sum() - 2 * cross
  distance_sq = np.arange(-reach, reach + 1)**2
  cost += 1e-6 * np.add.outer(distance_sq, distance_sq)
  v, u = np.unravel_index(np.argmin(cost), cost.shape)
  moved_x = point[0] + (dx + u - reach) * factor
  moved_y = point[1] + (dy + v - reach) * factor
  height, width = frame_b.shape[:2]
  return float(np.clip(moved_x, 0, width - 1)), float(np.clip(moved_y, 0, height - 1))
