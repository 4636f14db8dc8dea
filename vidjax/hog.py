"""Histograms of oriented gradients (Dalal & Triggs 2005), batched, in numpy or jax.

The target of the HOG-prediction objective (MaskFeat, Wei et al. 2022): gradient
orientation histograms describe shape and texture, ignore colour and overall contrast,
and on the embedded world's labelled crops separate the categories far better than raw
pixels do while matching backgrounds less. The recipe is scikit-image's `hog` with
`channel_axis=-1` (tested against it): centred differences, per pixel the channel with
the largest gradient, unsigned orientations hard-binned and averaged over square cells,
overlapping blocks of cells L2-Hys normalised.
"""
import numpy as np

_EPS = 1e-5
_HYS_CLIP = 0.2


def _gradients(images, xp):
  """(d/drow, d/dcol) of [N, H, W, C] images, 0 on the border rows/columns as in skimage."""
  zeros_row = xp.zeros_like(images[:, :1])
  zeros_col = xp.zeros_like(images[:, :, :1])
  g_row = xp.concatenate([zeros_row, images[:, 2:] - images[:, :-2], zeros_row], axis=1)
  g_col = xp.concatenate([zeros_col, images[:, :, 2:] - images[:, :, :-2], zeros_col], axis=2)
  return g_row, g_col


def orientation_votes(images, orientations: int = 9, xp=np):
  """[N, H, W, orientations] of [N, H, W, C] images: each pixel's gradient magnitude (of
  its strongest channel) in the bin of its unsigned orientation, zero in the others."""
  g_row, g_col = _gradients(images, xp)
  magnitude = xp.hypot(g_row, g_col)
  strongest = xp.argmax(magnitude, axis=-1)[..., None]
  g_row = xp.take_along_axis(g_row, strongest, axis=-1)[..., 0]
  g_col = xp.take_along_axis(g_col, strongest, axis=-1)[..., 0]
  magnitude = xp.take_along_axis(magnitude, strongest, axis=-1)[..., 0]
  degrees = xp.mod(xp.degrees(xp.arctan2(g_row, g_col)), 180.0)
  # A leftward gradient is 180 degrees, the same orientation as 0; float32 rounding can
  # leave it just under 180, in the last bin instead of the first. Under jit, XLA's fused
  # normalisation can leave a flat column's gradient at -4e-8 instead of 0, 179.99998
  # degrees here and a hair below 0 after the wrap: the clip keeps its vote in bin 0.
  degrees = xp.where(degrees > 180.0 - 1e-3, degrees - 180.0, degrees)
  bins = xp.clip(xp.floor(degrees / (180.0 / orientations)), 0, orientations - 1)
  return magnitude[..., None] * (bins[..., None] == xp.arange(orientations))


def cell_histograms(images, cell: int = 8, orientations: int = 9, xp=np):
  """Orientation histograms [N, H // cell, W // cell, orientations] of [N, H, W, C] images:
  orientation_votes averaged over each cell."""
  votes = orientation_votes(images, orientations, xp)
  num, height, width = images.shape[:3]
  rows, cols = height // cell, width // cell
  votes = votes[:, :rows * cell, :cols * cell]
  votes = votes.reshape(num, rows, cell, cols, cell, orientations)
  return votes.mean(axis=(2, 4))


def hog(images, cell: int = 8, block: int = 2, orientations: int = 9, xp=np):
  """HOG descriptors [N, D] of [N, H, W, C] images: every block x block window of cells
  (stride one cell), L2-normalised, clipped at 0.2 and normalised again (L2-Hys)."""
  histograms = cell_histograms(images, cell, orientations, xp)
  rows, cols = histograms.shape[1] - block + 1, histograms.shape[2] - block + 1
  blocks = xp.stack([histograms[:, r:r + rows, c:c + cols]
                     for r in range(block) for c in range(block)], axis=3)
  blocks = blocks.reshape(blocks.shape[:3] + (-1,))
  blocks = blocks / xp.sqrt(xp.sum(blocks ** 2, axis=-1, keepdims=True) + _EPS ** 2)
  blocks = xp.minimum(blocks, _HYS_CLIP)
  blocks = blocks / xp.sqrt(xp.sum(blocks ** 2, axis=-1, keepdims=True) + _EPS ** 2)
  return blocks.reshape(blocks.shape[0], -1)


def hog_size(image_size: int, cell: int = 8, block: int = 2, orientations: int = 9) -> int:
  """Length of `hog` of image_size x image_size images."""
  blocks_per_side = image_size // cell - block + 1
  if blocks_per_side < 1:
    raise ValueError(f'{image_size} px images hold no {block}x{block} block of {cell} px cells')
  return blocks_per_side ** 2 * block ** 2 * orientations
