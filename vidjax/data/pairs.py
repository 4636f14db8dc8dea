"""Temporal sampling: which frames of one video form a sample's K mutually-positive views.

A sample is an anchor frame plus K-1 other frames of the same video at offsets d drawn from
a pdf (`config.data.pairs.pdf`), in frames of the source's frame rate:
  uniform      0 < |d| <= tau, equally likely
  gaussian     weight exp(-d^2 / 2 sigma^2), d != 0
  consecutive  d in 1..5 (forward)
  decreasing   weight falling linearly with |d|, 0 < |d| <= tau
  video        any other frame of the video
`min_gap` excludes |d| < min_gap for every pdf.
"""
import numpy as np

from vidjax.errors import require

PDFS = ('uniform', 'gaussian', 'consecutive', 'decreasing', 'video')
_CONSECUTIVE_MAX = 5


def _max_offset(pairs_config, num_frames: int) -> int:
  pdf = pairs_config.pdf
  if pdf in ('uniform', 'decreasing'):
    return int(pairs_config.tau)
  if pdf == 'gaussian':
    return max(1, int(np.ceil(4 * pairs_config.sigma)))
  if pdf == 'consecutive':
    return _CONSECUTIVE_MAX
  if pdf == 'video':
    return num_frames - 1
  raise ValueError(f"config.data.pairs.pdf: unknown {pdf!r}; expected one of {', '.join(PDFS)}")


def offset_weights(pairs_config, num_frames: int):
  """(offsets, unnormalised weights) of every d the pdf allows, before clipping to the video."""
  max_offset = _max_offset(pairs_config, num_frames)
  offsets = np.arange(-max_offset, max_offset + 1)
  if pairs_config.pdf == 'consecutive':
    offsets = offsets[offsets > 0]
  offsets = offsets[np.abs(offsets) >= max(1, pairs_config.min_gap)]
  if pairs_config.pdf == 'gaussian':
    weights = np.exp(-offsets.astype(np.float64)**2 / (2 * pairs_config.sigma**2))
  elif pairs_config.pdf == 'decreasing':
    weights = (max_offset + 1 - np.abs(offsets)).astype(np.float64)
  else:
    weights = np.ones(len(offsets))
  return offsets, weights


def min_frames(pairs_config) -> int:
  """Frames a video needs for the pdf to have any valid offset."""
  return max(1, pairs_config.min_gap) + 1


def _sample_anchor(rng: np.random.Generator, num_frames: int, offsets) -> int:
  """Uniform over the anchors that have at least one in-video offset."""
  forward, backward = offsets[offsets > 0], offsets[offsets < 0]
  # Anchors valid going forward: [0, end_fwd); going backward: [start_bwd, num_frames).
  end_fwd = num_frames - forward.min() if len(forward) else 0
  start_bwd = -backward.max() if len(backward) else num_frames
  if end_fwd >= start_bwd:
    return int(rng.integers(num_frames))
  num_fwd, num_bwd = max(end_fwd, 0), max(num_frames - start_bwd, 0)
  if num_fwd + num_bwd == 0:
    raise ValueError(f'a video of {num_frames} frames is too short for the temporal pdf')
  pick = int(rng.integers(num_fwd + num_bwd))
  return pick if pick < num_fwd else start_bwd + pick - num_fwd


def check_config(pairs_config):
  """config.data.pairs: one ConfigError naming the field."""
  where = 'config.data.pairs'
  require(pairs_config.pdf in PDFS,
          f'{where}.pdf: unknown {pairs_config.pdf!r}; expected one of {", ".join(PDFS)}')
  require(pairs_config.num_positives >= 2,
          f'{where}.num_positives must be >= 2, got {pairs_config.num_positives}')
  require(pairs_config.tau >= 1, f'{where}.tau must be >= 1 frame, got {pairs_config.tau}')
  require(pairs_config.sigma > 0, f'{where}.sigma must be > 0, got {pairs_config.sigma}')
  require(pairs_config.min_gap >= 0, f'{where}.min_gap must be >= 0, got {pairs_config.min_gap}')
  require(isinstance(pairs_config.far_negatives, int) and pairs_config.far_negatives >= 0,
          f'{where}.far_negatives must be an integer >= 0, got {pairs_config.far_negatives!r}')
  require(pairs_config.far_radius >= 1,
          f'{where}.far_radius must be >= 1 frame, got {pairs_config.far_radius}')
  require(len(offset_weights(pairs_config, num_frames=2 * pairs_config.min_gap + 2)[0]) > 0,
          f'{where}: pdf {pairs_config.pdf!r} allows no offset with '
          f'min_gap={pairs_config.min_gap}')


def far_frames(rng: np.random.Generator, num_frames: int, anchor: int, pairs_config):
  """[far_negatives] frames more than far_radius from the anchor (the farthest ones when the
  video is too short to have any)."""
  distance = np.abs(np.arange(num_frames) - anchor)
  far = np.flatnonzero(distance > pairs_config.far_radius)
  if not len(far):
    far = np.flatnonzero(distance == distance.max())
  return rng.choice(far, pairs_config.far_negatives).astype(np.int32)


def sample_frames(rng: np.random.Generator, num_frames: int, pairs_config):
  """Frame indices [K] (anchor first) and their offsets from the anchor [K]."""
  num_views = pairs_config.num_positives
  offsets, weights = offset_weights(pairs_config, num_frames)
  anchor = _sample_anchor(rng, num_frames, offsets)
  valid = (anchor + offsets >= 0) & (anchor + offsets < num_frames)
  candidates, probs = offsets[valid], weights[valid] / weights[valid].sum()
  # Too few distinct offsets (short video, K large): views may repeat a frame.
  replace = len(candidates) < num_views - 1
  chosen = rng.choice(candidates, size=num_views - 1, replace=replace, p=probs)
  deltas = np.concatenate([[0], chosen]).astype(np.int32)
  return (anchor + deltas).astype(np.int32), deltas
