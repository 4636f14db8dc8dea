"""Procedural sprites and textures of the objects of the embedded video world (world.py).

Pure functions of their arguments (randomness comes from an explicit numpy Generator).
Colours are float32 RGB in [0, 1]; images are channel-first (C, H, W) because numpy
broadcasts over a leading channel axis several times faster than over a trailing one.
Sprites are premultiplied RGBA.
"""

import dataclasses
from typing import Callable

import numpy as np
from scipy import ndimage

SUPERSAMPLE = 2
# Sprite canvases extend past the unit radius so aspect-jittered shapes are never cut off.
CANVAS_RADIUS = 1.3

ShapeFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


# --- Shapes: boolean masks on object-local coordinates (unit = object radius, y down). ---
# x is a (1, n) row and y an (n, 1) column of sample coordinates.

def _regular_polygon(x, y, sides: int, circumradius: float):
  sector = 2 * np.pi / sides
  offset_from_edge_normal = np.arctan2(y, x) % sector - sector / 2
  return np.hypot(x, y) * np.cos(offset_from_edge_normal) <= circumradius * np.cos(np.pi / sides)


def _star(x, y):
  tip_phase = (np.arctan2(y, x) * 5 / (2 * np.pi)) % 1.0
  closeness_to_tip = np.abs(tip_phase - 0.5) * 2
  return np.hypot(x, y) <= 0.4 + 0.6 * closeness_to_tip


def _heart(x, y):
  hx, hy = 1.25 * x, 0.25 - 1.25 * y
  return (hx**2 + hy**2 - 1) ** 3 - hx**2 * hy**3 <= 0


def _arrow(x, y):
  shaft = (x >= -0.95) & (x <= 0.2) & (np.abs(y) <= 0.24)
  head = (x >= 0.1) & (x <= 0.95) & (np.abs(y) <= 0.7 * (0.95 - x) / 0.85)
  return shaft | head


def _cross(x, y):
  x, y = np.abs(x), np.abs(y)
  return ((x <= 0.3) & (y <= 0.95)) | ((y <= 0.3) & (x <= 0.95))


SHAPES: dict[str, ShapeFn] = {
    'disc': lambda x, y: np.hypot(x, y) <= 0.92,
    'square': lambda x, y: np.maximum(np.abs(x), np.abs(y)) <= 0.72,
    'triangle': lambda x, y: _regular_polygon(x, y, 3, 1.0),
    'star': _star,
    'hexagon': lambda x, y: _regular_polygon(x, y, 6, 0.95),
    'cross': _cross,
    'diamond': lambda x, y: np.abs(x) / 0.6 + np.abs(y) / 0.98 <= 1,
    'crescent': lambda x, y: (np.hypot(x, y) <= 0.95) & (np.hypot(x - 0.45, y) >= 0.78),
    'heart': _heart,
    'arrow': _arrow,
}


def lumpy_blob(rng: np.random.Generator, lumpiness: float) -> ShapeFn:
  """A smooth irregular blob (not any category shape): radius perturbed by low harmonics."""
  harmonics = np.arange(2, 6)
  amplitudes = rng.uniform(0, lumpiness, harmonics.size) / harmonics**0.5
  phases = rng.uniform(0, 2 * np.pi, harmonics.size)

  def inside(x, y):
    angle = np.arctan2(y, x)[..., None]
    radius = 0.75 + (amplitudes * np.cos(harmonics * angle + phases)).sum(-1)
    return np.hypot(x, y) <= np.minimum(radius, 1.0)

  return inside


def line_segment(half_width: float, rng: np.random.Generator) -> ShapeFn:
  """A bar at a random angle spanning the unit radius, `half_width` thick on each side."""
  angle = rng.uniform(0, np.pi)
  c, s = np.cos(angle), np.sin(angle)
  return lambda x, y: (np.abs(x * c + y * s) <= 0.95) & (np.abs(y * c - x * s) <= half_width)


# --- Textures: boolean 'foreground colour here' maps on the same coordinates as shapes;
# `period` is in object units; `inside` is the shape mask (only 'bordered' needs it). ---

def _oriented(x, y, rng):
  angle = rng.uniform(0, np.pi)
  c, s = np.cos(angle), np.sin(angle)
  return x * c + y * s, -x * s + y * c


def _striped(x, y, inside, period, rng):
  p, _ = _oriented(x, y, rng)
  return (p / period + rng.uniform()) % 1 < 0.5


def _checkered(x, y, inside, period, rng):
  p, q = _oriented(x, y, rng)
  row = np.floor(2 * p / period + rng.uniform(0, 2))
  column = np.floor(2 * q / period + rng.uniform(0, 2))
  return (row + column) % 2 == 0


def _dotted(x, y, inside, period, rng):
  p, q = _oriented(x, y, rng)
  fp = (p / period + rng.uniform()) % 1 - 0.5
  fq = (q / period + rng.uniform()) % 1 - 0.5
  return fp**2 + fq**2 < rng.uniform(0.28, 0.34) ** 2


def _ringed(x, y, inside, period, rng):
  ox, oy = rng.uniform(-0.15, 0.15, 2)
  return (np.hypot(x - ox, y - oy) / period + rng.uniform()) % 1 < 0.5


def _zigzag(x, y, inside, period, rng):
  p, q = _oriented(x, y, rng)
  triangle_wave = np.abs((q / (1.2 * period) + rng.uniform()) % 1 - 0.5) * 2 - 0.5
  return ((p + 0.9 * period * triangle_wave) / period + rng.uniform()) % 1 < 0.5


def _gridded(x, y, inside, period, rng):
  p, q = _oriented(x, y, rng)
  return ((p / period + rng.uniform()) % 1 < 0.3) | ((q / period + rng.uniform()) % 1 < 0.3)


def _pinwheel(x, y, inside, period, rng):
  ox, oy = rng.uniform(-0.1, 0.1, 2)
  # Sector width roughly `period` at 70% of the radius.
  sectors = max(3, int(round(np.pi * 0.7 / period)))
  return (np.arctan2(y - oy, x - ox) * sectors / (2 * np.pi) + rng.uniform()) % 1 < 0.5


def _wavy(x, y, inside, period, rng):
  p, q = _oriented(x, y, rng)
  wave = 0.35 * period * np.sin(2 * np.pi * q / (2.2 * period) + rng.uniform(0, 2 * np.pi))
  return ((p + wave) / period + rng.uniform()) % 1 < 0.5


def _speckled(x, y, inside, period, rng):
  # Thresholded smooth noise with blotches about half a period across.
  cell = period / 2
  extent = CANVAS_RADIUS * 1.2
  grid = rng.random((int(2 * extent / cell) + 3,) * 2)
  x, y = np.broadcast_arrays(x, y)
  field = ndimage.map_coordinates(grid, [(y + extent) / cell, (x + extent) / cell], order=1,
                                  mode='nearest')
  return field > 0.5


def _bordered(x, y, inside, period, rng):
  pixel_size = float(x[0, 1] - x[0, 0])
  distance_to_edge = ndimage.distance_transform_edt(inside) * pixel_size
  return distance_to_edge < period


TEXTURES = {
    'striped': _striped, 'checkered': _checkered, 'dotted': _dotted, 'ringed': _ringed,
    'zigzag': _zigzag, 'gridded': _gridded, 'pinwheel': _pinwheel, 'wavy': _wavy,
    'speckled': _speckled, 'bordered': _bordered,
}
# On-screen period range in pixels (border width for 'bordered'), coarse enough that the
# texture survives in 32 px crops.
TEXTURE_PERIOD_PX = {
    'striped': (4.5, 7.0), 'checkered': (6.0, 9.0), 'dotted': (5.0, 7.5), 'ringed': (4.5, 7.0),
    'zigzag': (5.0, 7.5), 'gridded': (5.5, 8.0), 'pinwheel': (6.0, 9.0), 'wavy': (5.0, 7.5),
    'speckled': (6.0, 9.0), 'bordered': (2.5, 4.0),
}


def random_colour_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """Two independent uniform RGB colours, redrawn until they differ visibly."""
  while True:
    first, second = rng.random((2, 3), dtype=np.float32)
    if np.square(first - second).sum() > 0.45**2:
      return first, second


@dataclasses.dataclass(frozen=True)
class Stencil:
  """Colourless antialiased sprite geometry; expensive to draw, so banks of them are reused."""
  # (3, size, size) fraction of each pixel covered by texture foreground, background, either.
  coverage: np.ndarray
  outline: np.ndarray  # (n, 2) float32 x, y offsets of boundary pixels from the stencil centre
  area: float  # total coverage, in pixels

  @property
  def size(self) -> int:  # square side; the outermost ring of pixels is always empty
    return self.coverage.shape[1]


@dataclasses.dataclass(frozen=True)
class Sprite:
  rgba: np.ndarray  # (4, size, size) float32, premultiplied
  stencil: Stencil


def _block_mean(mask: np.ndarray) -> np.ndarray:
  """Mean of each SUPERSAMPLE x SUPERSAMPLE block of a boolean mask, as float32."""
  rows, cols = mask.shape[0] // SUPERSAMPLE, mask.shape[1] // SUPERSAMPLE
  values = mask.astype(np.float32) / SUPERSAMPLE**2
  row_sums = values.reshape(rows, SUPERSAMPLE, -1).sum(axis=1)
  return row_sums.reshape(rows, cols, SUPERSAMPLE).sum(axis=2)


def draw_stencil(shape: ShapeFn, texture: str | None, radius_px: float,
                 rng: np.random.Generator, variation: bool = False) -> Stencil:
  """Stencil of `shape` (aspect-jittered) filled with `texture` (None: all foreground).

  With `variation`, instances of one shape differ as much as they can while staying that
  shape: a wider aspect range, an outline bent by low harmonics, a texture scale drawn
  from a wider range.
  """
  size = int(np.ceil(2 * CANVAS_RADIUS * radius_px)) + 2
  samples = (np.arange(size * SUPERSAMPLE, dtype=np.float32) + 0.5) / SUPERSAMPLE
  coords = (samples - size / 2) / radius_px
  x, y = coords[None, :], coords[:, None]
  stretch = np.sqrt(rng.uniform(0.65, 1.55) if variation else rng.uniform(0.8, 1.25))
  shape_x, shape_y = x * stretch, y / stretch
  if variation:  # Radial bending: r -> r (1 + amplitude cos(k theta + phase)), k = 2 or 3.
    bend = 1 + rng.uniform(0, 0.1) * np.cos(rng.integers(2, 4) * np.arctan2(y, x)
                                            + rng.uniform(0, 2 * np.pi))
    shape_x, shape_y = shape_x / bend, shape_y / bend
  inside = np.broadcast_to(shape(shape_x, shape_y), (coords.size,) * 2)
  alpha = _block_mean(inside)
  if texture is None:
    foreground = alpha
  else:
    period = rng.uniform(*TEXTURE_PERIOD_PX[texture]) / radius_px
    if variation:
      period *= rng.uniform(0.85, 1.2)
    foreground = _block_mean(inside & TEXTURES[texture](x, y, inside, period, rng))
  coverage = np.stack([foreground, alpha - foreground, alpha])
  solid = alpha > 0.25
  rows, cols = np.nonzero(solid & ~ndimage.binary_erosion(solid))
  outline = np.stack([cols, rows], axis=1).astype(np.float32) + 0.5 - size / 2
  return Stencil(coverage, outline, float(alpha.sum()))


def colourise(stencil: Stencil, rng: np.random.Generator) -> Sprite:
  """A sprite from `stencil` with two random colours and a random soft shading direction."""
  colours = np.stack(random_colour_pair(rng), axis=1)
  light_angle = rng.uniform(0, 2 * np.pi)
  size = stencil.size
  ramp = (np.arange(size, dtype=np.float32) / size - 0.5) * rng.uniform(0, 0.3)
  shading = 1 + (ramp * np.cos(light_angle))[None, :] + (ramp * np.sin(light_angle))[:, None]
  rgba = np.empty((4, size, size), np.float32)
  rgba[:3] = (colours @ stencil.coverage[:2].reshape(2, -1)).reshape(3, size, size) * shading
  rgba[3] = stencil.coverage[2]
  return Sprite(rgba, stencil)


def paste(canvas: np.ndarray, sprite: Sprite, top: int, left: int) -> None:
  """Alpha-composite `sprite` onto `canvas` (3, H, W) in place, clipped to the canvas."""
  size = sprite.stencil.size
  top0, left0 = max(top, 0), max(left, 0)
  bottom, right = min(top + size, canvas.shape[1]), min(left + size, canvas.shape[2])
  if bottom <= top0 or right <= left0:
    return
  patch = sprite.rgba[:, top0 - top:bottom - top, left0 - left:right - left]
  region = canvas[:, top0:bottom, left0:right]
  region *= 1 - patch[3]
  region += patch[:3]


def draw_clutter_bank(frame_size: int, rng: np.random.Generator) -> dict[str, tuple[Stencil, ...]]:
  """Stencils of things that are no category: lumpy blobs, line segments, textured lumps."""
  px = frame_size / 96
  textures = list(TEXTURES)
  segments = []
  for _ in range(48):
    radius = rng.uniform(6, 16) * px
    # Line widths are set in pixels, not object units, so that no line gets too thin to draw.
    half_width = rng.uniform(0.4, 1.1) / radius
    segments.append(draw_stencil(line_segment(half_width, rng), None, radius, rng))
  return {
      'blob': tuple(draw_stencil(lumpy_blob(rng, 0.35), None, rng.uniform(2, 12) * px, rng)
                    for _ in range(48)),
      'segment': tuple(segments),
      'patch': tuple(draw_stencil(lumpy_blob(rng, 0.6), textures[rng.integers(len(textures))],
                                  rng.uniform(6, 14) * px, rng) for _ in range(32)),
  }


def pick(bank: tuple[Stencil, ...], rng: np.random.Generator) -> Stencil:
  return bank[rng.integers(len(bank))]
