"""The objects of the embedded world's `glyphs` family: characters told apart by outline only.

A category is a character; an instance is that character in one of the typefaces that ship
inside matplotlib (DejaVu Sans/Serif/Mono, STIX, Computer Modern, in their weights and
slants), filled with a flat colour or with a texture cut from a photograph other than the
video's background, so that neither colour nor texture says what the character is. The
training videos draw from TRAIN_TYPEFACES, the labelled support and query videos from
EVAL_TYPEFACES: an evaluation measures the character, not the font.
"""
import functools
import os

import matplotlib
import numpy as np
from matplotlib.font_manager import FontProperties
from matplotlib.path import Path
from matplotlib.textpath import TextPath
from PIL import Image

from vidjax.data.sources import world_render as render

# Outlines that stay distinct under rotation (objects tumble): no M/W, N/Z, 6/9 pairs.
CHARACTERS = ('A', 'B', 'E', 'G', 'K', 'M', 'R', 'S', 'Z', '4')
# Each half holds sans, serif and monospaced faces, upright and slanted, regular and bold.
TRAIN_TYPEFACES = (
    'DejaVuSans', 'DejaVuSans-BoldOblique', 'DejaVuSansMono-Bold', 'DejaVuSansMono-Oblique',
    'DejaVuSerif', 'DejaVuSerif-BoldItalic', 'STIXGeneral', 'STIXGeneralBolIta', 'cmr10',
    'cmss10', 'cmmi10')
EVAL_TYPEFACES = (
    'DejaVuSans-Bold', 'DejaVuSans-Oblique', 'DejaVuSansMono', 'DejaVuSansMono-BoldOblique',
    'DejaVuSerif-Bold', 'DejaVuSerif-Italic', 'STIXGeneralBol', 'STIXGeneralItalic', 'cmb10',
    'cmti10', 'cmtt10')
_PHOTO_FILL_SHARE = 0.5  # The rest are filled with a flat colour.
_EXTENT = 0.92  # Half the glyph's longer side, in object units (a disc's radius).


def typefaces(split: str) -> tuple:
  return TRAIN_TYPEFACES if split == 'train' else EVAL_TYPEFACES


@functools.lru_cache(maxsize=None)
def _outline_polygons(character: str, typeface: str) -> tuple:
  """The glyph's closed outlines as Paths, centred, its longer side 2 * _EXTENT, y down."""
  path = os.path.join(matplotlib.get_data_path(), 'fonts', 'ttf', f'{typeface}.ttf')
  outline = TextPath((0, 0), character, size=1, prop=FontProperties(fname=path))
  low, high = outline.vertices.min(0), outline.vertices.max(0)
  scale = np.array([1, -1]) * 2 * _EXTENT / (high - low).max()
  return tuple(Path((polygon - (low + high) / 2) * scale)
               for polygon in outline.to_polygons(closed_only=True))


def glyph_shape(character: str, typeface: str) -> render.ShapeFn:
  """A ShapeFn: inside the glyph by the even-odd rule, so counters (the holes of B, 4) stay
  open whatever the font's winding."""
  polygons = _outline_polygons(character, typeface)

  def inside(x, y):
    x, y = np.broadcast_arrays(x, y)
    points = np.stack([x.ravel(), y.ravel()], axis=1)
    mask = np.zeros(len(points), bool)
    for polygon in polygons:
      mask ^= polygon.contains_points(points)
    return mask.reshape(x.shape)

  return inside


def fill(stencil: render.Stencil, photos: tuple, background: int,
         rng: np.random.Generator) -> render.Sprite:
  """A sprite of `stencil` in a flat colour or cut from a photograph other than `background`
  (an index into `photos`), at a random scale and angle, under a soft random shading."""
  if rng.random() >= _PHOTO_FILL_SHARE:
    return render.colourise(stencil, rng)
  photo = photos[(background + 1 + int(rng.integers(len(photos) - 1))) % len(photos)]
  size = stencil.size
  # Photo pixels per sprite pixel, and the window's angle and centre (kept inside the photo).
  scale, angle = rng.uniform(0.6, 1.6), rng.uniform(0, 2 * np.pi)
  reach = size * scale * 0.75
  centre = [rng.uniform(reach, max(reach, side - reach)) for side in photo.size]
  c, s = np.cos(angle) * scale, np.sin(angle) * scale
  # PIL's affine maps output (u, v) to input (a u + b v + c, d u + e v + f).
  offset = np.array(centre) - np.array([[c, -s], [s, c]]) @ np.full(2, size / 2)
  window = photo.transform((size, size), Image.AFFINE, (c, -s, offset[0], s, c, offset[1]),
                           resample=Image.BILINEAR)
  colour = np.asarray(window, np.float32).transpose(2, 0, 1) / 255
  ramp = (np.arange(size, dtype=np.float32) / size - 0.5) * rng.uniform(0, 0.3)
  light_angle = rng.uniform(0, 2 * np.pi)
  shading = (1 + (ramp * np.cos(light_angle))[None, :] + (ramp * np.sin(light_angle))[:, None])
  rgba = np.empty((4, size, size), np.float32)
  rgba[3] = stencil.coverage[2]
  rgba[:3] = colour * shading * rgba[3]
  return render.Sprite(rgba, stencil)
