"""The embedded video world: drawn objects moving over real photographs, seen by a camera
that pans and zooms across them. The project's default data and its test fixture.

It comes in FAMILIES that differ in what tells the categories apart, so that a recipe can be
checked on more than the world it was tuned on: `textures` (below: a category is a texture
pattern on a shape) and `glyphs` (world_glyphs.py: a category is a character, drawn in many
typefaces and filled with a flat colour or another photograph's texture, so that only its
outline says what it is). Everything else (camera, motion, light, occlusion) is shared.

Every video is a window onto one of PHOTOS (the photographs that ship inside scikit-image):
the camera pans and zooms across it, so backgrounds are textured, temporally coherent and
shared by many videos, as on a day of dash-cam footage. Over it move 2-5 objects of
CATEGORIES (and a few distractor lumps): a category is a (texture, shape) pair, drawn with
real variation from instance to instance (aspect, outline, texture scale and phase, size,
pose) and in random colours, so that only shape and texture say what a thing is. Most
objects move on their own, independently of the camera; some stand still in the scene and
move with it. They occlude each other and enter and leave the frame. Light and white
balance drift; pixel noise is added.

A frame is a pure function of (seed, split, video, t), rendered on demand: a video's sprites
are drawn once (cached per process), then each frame resamples the photograph under the
camera, warps the sprites with an inverse affine map (nearest neighbour) and composites them
front to back. Splits 'train', 'support' and 'query' hold disjoint videos over the same
photographs; `context(video)` names a video's photograph, so an evaluation can tell when
an encoder matches backgrounds instead of objects.
"""
import dataclasses
import functools
import math
import operator

import numpy as np

from vidjax.data.sources import world_camera as camera, world_glyphs as glyphs
from vidjax.data.sources import world_render as render

_CATEGORY_PARTS = (
    ('striped', 'disc'), ('checkered', 'square'), ('dotted', 'triangle'), ('ringed', 'star'),
    ('zigzag', 'hexagon'), ('gridded', 'cross'), ('pinwheel', 'diamond'), ('wavy', 'crescent'),
    ('speckled', 'heart'), ('bordered', 'arrow'),
)
CATEGORIES = tuple(f'{texture} {shape}' for texture, shape in _CATEGORY_PARTS)  # textures'
FAMILIES = {'textures': CATEGORIES,
            'glyphs': tuple(f'glyph {character}' for character in glyphs.CHARACTERS)}
PHOTOS = camera.PHOTOS
SPLITS = ('train', 'support', 'query')
# Rows of SyntheticWorld.boxes: one per object at least partly inside the frame. Boxes are the
# object's full extent clipped to the frame; `instance` identifies the object within its video.
BOX_DTYPE = np.dtype([('category', np.int32), ('x0', np.float32), ('y0', np.float32),
                      ('x1', np.float32), ('y1', np.float32), ('visible_fraction', np.float32),
                      ('instance', np.int32)])

_REFERENCE_HEIGHT = 96  # Sizes and speeds below are in pixels at this frame height.
_ASPECT = 4 / 3  # Frame width / height.
_NOISE_SIGMA = 3.0  # Pixel noise, in 0-255 levels.
_NOISE_BANK_MARGIN = 32
_TUMBLING_FRACTION = 0.3
_STILL_FRACTION = 0.25  # Objects that stand still in the scene and move with the camera.
_MAX_PULSE = 0.2  # Relative amplitude of each object's scale oscillation.
_CLUTTER_BANK_SEED = 1


def frame_shape(frame_size: int) -> tuple:
  """(height, width) of the frames of a world whose frame_size (height) is given."""
  return frame_size, 2 * round(frame_size * _ASPECT / 2)


@dataclasses.dataclass(frozen=True)
class _Motion:
  """Per-layer trajectories in frame pixels, sums of slow sinusoids so motion is smooth.

  position(t) = centre + amplitude sin(omega t + phase)             (per axis)
  angle(t)    = angle + spin t + sway sin(sway_omega t + sway_phase)
  scale(t)    = (1 + pulse sin(pulse_omega t + pulse_phase)) / (1 + pulse)
  Layers that are `still` keep their place in the scene: their position is carried by the
  camera (and their amplitude is small).
  """
  centre: np.ndarray  # (L, 2) x, y
  amplitude: np.ndarray  # (L, 2)
  omega: np.ndarray  # (L, 2)
  phase: np.ndarray  # (L, 2)
  angle: np.ndarray  # (L,)
  spin: np.ndarray  # (L,) radians per frame
  sway: np.ndarray  # (L,) radians
  sway_omega: np.ndarray  # (L,)
  sway_phase: np.ndarray  # (L,)
  pulse: np.ndarray  # (L,)
  pulse_omega: np.ndarray  # (L,)
  pulse_phase: np.ndarray  # (L,)
  still: np.ndarray  # (L,) bool


@dataclasses.dataclass(frozen=True)
class _VideoPlan:
  """Everything about one video that does not depend on t. Layers are ordered front to back."""
  layers: tuple  # (4, size * size) premultiplied RGBA sprite per layer, padded for warping
  sizes: tuple  # sprite side per layer
  areas: np.ndarray  # (L,) sprite alpha sums
  outlines: np.ndarray  # (2, P) x, y of all layers' boundary pixels, relative to sprite centres
  outline_layer: np.ndarray  # (P,) layer of each outline point
  outline_starts: np.ndarray  # (L,) first outline point of each layer
  categories: np.ndarray  # (L,) category per layer, -1 for distractors
  typefaces: tuple  # (L,) the glyphs family's typeface per layer, '' for anything else
  motion: _Motion
  camera: camera.Camera
  lighting: camera.Lighting
  noise_key: int


def _sinusoids(rng, shape, amplitude, speed):
  """(amplitude, omega, phase) arrays of sinusoids with peak speed in `speed` px/frame."""
  amplitudes = rng.uniform(*amplitude, shape)
  return amplitudes, rng.uniform(*speed, shape) / amplitudes, rng.uniform(0, 2 * np.pi, shape)


# Sized for a training run's whole set of videos: building a plan costs far more than
# rendering a frame, and training visits the videos in random order.
@functools.lru_cache(maxsize=1024)
def _video_plan(seed: int, split: str, video_id: int, frame_size: int,
                family: str) -> _VideoPlan:
  words = [seed, SPLITS.index(split), video_id] + ([] if family == 'textures' else [1])
  rng = np.random.default_rng(words)
  shape = frame_shape(frame_size)
  px = frame_size / _REFERENCE_HEIGHT
  # Glyphs are filled from a photograph other than the background, so it is chosen first.
  view = (camera.plan_camera(rng, shape, camera.photos(frame_size), px)
          if family == 'glyphs' else None)
  objects = rng.integers(0, len(FAMILIES[family]), rng.integers(2, 6))
  # Array order is z-order, front first; distractors mix in between objects.
  categories = rng.permutation(np.concatenate([objects, np.full(rng.integers(0, 3), -1)]))
  count = categories.size
  pulse = rng.uniform(0, _MAX_PULSE, count)
  clutter = _clutter_bank(frame_size)
  sprites, typefaces = [], []
  for category, peak_scale in zip(categories, 1 + pulse):
    typeface = ''
    if category < 0:
      stencil = render.pick(clutter['patch' if rng.random() < 0.5 else 'blob'], rng)
      sprites.append(render.colourise(_padded_for_warping(stencil), rng))
    else:
      # Drawn at the peak of the scale oscillation, so warping only ever shrinks it.
      radius = rng.uniform(9, 18) * px * peak_scale
      if family == 'glyphs':
        faces = glyphs.typefaces(split)
        typeface = faces[rng.integers(len(faces))]
        outline = glyphs.glyph_shape(glyphs.CHARACTERS[category], typeface)
        stencil = render.draw_stencil(outline, None, radius, rng, variation=True)
        sprites.append(glyphs.fill(_padded_for_warping(stencil), camera.photos(frame_size),
                                   view.photo, rng))
      else:
        texture, shape_name = _CATEGORY_PARTS[category]
        stencil = render.draw_stencil(render.SHAPES[shape_name], texture, radius, rng,
                                      variation=True)
        sprites.append(render.colourise(_padded_for_warping(stencil), rng))
    typefaces.append(typeface)
  # Like real objects, most stay near their canonical pose and sway; some tumble.
  tumbling = (categories < 0) | (rng.random(count) < _TUMBLING_FRACTION)
  still = (categories >= 0) & (rng.random(count) < _STILL_FRACTION)
  amplitude, omega, phase = _sinusoids(rng, (count, 2), (10 * px, 60 * px), (0.5 * px, 2.0 * px))
  amplitude = np.where(still[:, None], amplitude * 0.05, amplitude)
  motion = _Motion(
      centre=rng.uniform(0.15, 0.85, (count, 2)) * np.array(shape[::-1]),
      amplitude=amplitude, omega=omega, phase=phase,
      angle=np.where(tumbling, rng.uniform(0, 2 * np.pi, count), rng.normal(0, 0.25, count)),
      spin=tumbling * rng.uniform(0.005, 0.04, count) * rng.choice([-1, 1], count),
      sway=~tumbling * rng.uniform(0.1, 0.5, count),
      sway_omega=rng.uniform(0.02, 0.08, count), sway_phase=rng.uniform(0, 2 * np.pi, count),
      pulse=pulse, pulse_omega=rng.uniform(0.02, 0.08, count),
      pulse_phase=rng.uniform(0, 2 * np.pi, count), still=still)
  lighting = camera.plan_lighting(rng)
  if view is None:
    view = camera.plan_camera(rng, shape, camera.photos(frame_size), px)
  stencils = [sprite.stencil for sprite in sprites]
  for sprite in sprites:
    sprite.rgba.flags.writeable = False
  return _VideoPlan(
      layers=tuple(sprite.rgba.reshape(4, -1) for sprite in sprites),
      sizes=tuple(stencil.size for stencil in stencils),
      areas=np.array([stencil.area for stencil in stencils]),
      outlines=np.concatenate([stencil.outline for stencil in stencils]).T,
      outline_layer=np.repeat(np.arange(count), [len(stencil.outline) for stencil in stencils]),
      outline_starts=np.cumsum([0] + [len(stencil.outline) for stencil in stencils[:-1]]),
      categories=categories, typefaces=tuple(typefaces), motion=motion, camera=view, lighting=lighting,
      noise_key=int(rng.integers(2**31)))


def _padded_for_warping(stencil: render.Stencil) -> render.Stencil:
  """`stencil` with enough empty margin that every pixel of its warped box samples inside it."""
  min_scale = (1 - _MAX_PULSE) / (1 + _MAX_PULSE) / (1 + camera.MAX_ZOOM)
  reach = math.sqrt(2) * (np.hypot(*stencil.outline.T).max() + 0.5 + 0.5 / min_scale) + 1
  pad = max(0, math.ceil(reach - stencil.size / 2))
  padded = np.zeros((3, stencil.size + 2 * pad, stencil.size + 2 * pad), np.float32)
  padded[:, pad:pad + stencil.size, pad:pad + stencil.size] = stencil.coverage
  return dataclasses.replace(stencil, coverage=padded)


@functools.lru_cache(maxsize=4)
def _clutter_bank(frame_size: int) -> dict:
  """Distractor stencils shared by all videos (drawing them per video would dominate its cost)."""
  return render.draw_clutter_bank(frame_size, np.random.default_rng(_CLUTTER_BANK_SEED))


@functools.lru_cache(maxsize=4)
def _noise_bank(shape: tuple) -> np.ndarray:
  """Gaussian pixel noise shared by all videos; frames read shifted windows of it."""
  height, width = shape
  bank = np.random.default_rng(0).standard_normal(
      (3, height + _NOISE_BANK_MARGIN, width + _NOISE_BANK_MARGIN), np.float32) * _NOISE_SIGMA
  bank.flags.writeable = False
  return bank


def _composite(plan: _VideoPlan, t: int, shape: tuple, with_colour: bool):
  """Front-to-back compositing of all layers at time t.

  Returns (colour (3, H, W) or None, transmittance (H, W) left for the background,
  boxes (L, 4) unclipped x0 y0 x1 y1, visible fraction (L,) of each layer's full area).
  """
  height, width = shape
  motion = plan.motion
  own = motion.centre + motion.amplitude * np.sin(motion.omega * t + motion.phase)
  # Still objects keep their place in the photograph: the camera's pan and zoom move them.
  start_centre, start_scale = plan.camera.at(0)
  centre, scale = plan.camera.at(t)
  frame_middle = np.array([width, height]) / 2
  carried = ((own - frame_middle) * start_scale + start_centre - centre) / scale + frame_middle
  centres = np.where(motion.still[:, None], carried, own)
  angles = (motion.angle + motion.spin * t
            + motion.sway * np.sin(motion.sway_omega * t + motion.sway_phase))
  # Frame pixels per sprite pixel (sprites are drawn at the peak of the scale oscillation).
  scales = ((1 + motion.pulse * np.sin(motion.pulse_omega * t + motion.pulse_phase))
            / (1 + motion.pulse)) * np.where(motion.still, start_scale / scale, 1.0)
  cos, sin = np.cos(angles), np.sin(angles)
  outline_x, outline_y = plan.outlines
  forward_cos, forward_sin = (cos * scales)[plan.outline_layer], (sin * scales)[plan.outline_layer]
  x = outline_x * forward_cos - outline_y * forward_sin
  y = outline_x * forward_sin + outline_y * forward_cos
  half_pixel = 0.5 * scales
  boxes = np.stack([
      np.minimum.reduceat(x, plan.outline_starts) + centres[:, 0] - half_pixel,
      np.minimum.reduceat(y, plan.outline_starts) + centres[:, 1] - half_pixel,
      np.maximum.reduceat(x, plan.outline_starts) + centres[:, 0] + half_pixel,
      np.maximum.reduceat(y, plan.outline_starts) + centres[:, 1] + half_pixel], axis=1)
  lefts, tops = np.maximum(np.floor(boxes[:, :2]), 0).astype(int).T.tolist()
  rights = np.minimum(np.ceil(boxes[:, 2]), width).astype(int).tolist()
  bottoms = np.minimum(np.ceil(boxes[:, 3]), height).astype(int).tolist()
  inverse_cos, inverse_sin = (cos / scales).tolist(), (sin / scales).tolist()
  transmittance = np.ones(shape, np.float32)
  colour = np.zeros((3,) + shape, np.float32) if with_colour else None
  visible_area = np.zeros(len(plan.layers))
  for i, (rgba, size) in enumerate(zip(plan.layers, plan.sizes)):
    left, top, right, bottom = lefts[i], tops[i], rights[i], bottoms[i]
    if right <= left or bottom <= top:
      continue
    # Inverse map from frame pixel centres to sprite pixels (nearest neighbour). Sprites are
    # padded so that every pixel of the box lands inside them, so indices need no clipping.
    cx, cy, c, s, half = *centres[i].tolist(), inverse_cos[i], inverse_sin[i], size / 2
    dx = np.arange(left + 0.5 - cx, right - cx, dtype=np.float32)
    dy = np.arange(top + 0.5 - cy, bottom - cy, dtype=np.float32)
    u = (dx * c + half)[None, :] + (dy * s)[:, None]
    v = (dx * -s + half)[None, :] + (dy * c)[:, None]
    index = v.astype(np.intp) * size
    index += u.astype(np.intp)
    window = transmittance[top:bottom, left:right]
    if with_colour:
      sample = np.take(rgba, index, axis=1)
      colour[:, top:bottom, left:right] += window * sample[:3]
      seen = window * sample[3]
    else:
      seen = window * np.take(rgba[3], index)
    visible_area[i] = seen.sum()
    window -= seen
  return colour, transmittance, boxes, np.clip(visible_area / (plan.areas * scales**2), 0, 1)


class SyntheticWorld:
  """Random-access procedural videos; picklable and safe to read from several threads."""

  def __init__(self, seed: int = 0, split: str = 'train', num_videos: int = 200,
               num_frames: int = 64, frame_size: int = 96, fps: float = 10.0,
               family: str = 'textures'):
    if split not in SPLITS:
      raise ValueError(f"split: unknown {split!r}; expected one of {', '.join(SPLITS)}")
    if family not in FAMILIES:
      raise ValueError(f"family: unknown {family!r}; expected one of {', '.join(FAMILIES)}")
    for name, value, minimum in (('seed', seed, 0), ('num_videos', num_videos, 1),
                                 ('num_frames', num_frames, 1), ('frame_size', frame_size, 48)):
      if operator.index(value) < minimum:
        raise ValueError(f'{name}: must be an integer >= {minimum}, got {value}')
    if not fps > 0:
      raise ValueError(f'fps: must be positive, got {fps}')
    self.seed, self.split, self.frame_size = int(seed), split, int(frame_size)
    self.family, self.categories = family, FAMILIES[family]
    self.shape = frame_shape(self.frame_size)
    self.fps = float(fps)
    self._num_videos, self._num_frames = int(num_videos), int(num_frames)

  def __len__(self) -> int:
    return self._num_videos

  def num_frames(self, video_id: int) -> int:
    self._check_video(video_id)
    return self._num_frames

  def video_name(self, video_id: int) -> str:
    self._check_video(video_id)
    family = '' if self.family == 'textures' else f'{self.family}/'
    return f'synthetic/{family}{self.split}/{video_id:05d}'

  def context(self, video_id: int) -> str:
    """The photograph the video's camera looks at (its background), as a PHOTOS name."""
    return PHOTOS[self._plan(video_id).camera.photo]

  def typeface(self, video_id: int, instance: int) -> str:
    """The typeface of object `instance` (as in boxes()) of a glyphs video; '' otherwise."""
    plan = self._plan(video_id)
    return [face for face, category in zip(plan.typefaces, plan.categories)
            if category >= 0][instance]

  def frame(self, video_id: int, t: int) -> np.ndarray:
    """(height, width, 3) uint8 frame t of video `video_id`; see frame_shape."""
    plan = self._plan(video_id, t)
    colour, transmittance, _, _ = _composite(plan, t, self.shape, with_colour=True)
    colour += transmittance * camera.background(plan.camera, t, self.shape, self.frame_size)
    colour *= camera.light(plan.lighting, t, self.shape)
    height, width = self.shape
    mixed = (plan.noise_key * 0x9E3779B1 + int(t) * 0x85EBCA77) & 0xFFFFFFFF
    ny, nx = mixed % _NOISE_BANK_MARGIN, (mixed >> 8) % _NOISE_BANK_MARGIN
    colour += _noise_bank(self.shape)[:, ny:ny + height, nx:nx + width]
    return np.dstack(np.clip(colour, 0, 255, out=colour).astype(np.uint8))

  def boxes(self, video_id: int, t: int) -> np.ndarray:
    """BOX_DTYPE rows for the objects (not distractors) at least partly inside frame t."""
    plan = self._plan(video_id, t)
    _, _, boxes, visible_fraction = _composite(plan, t, self.shape, with_colour=False)
    is_object = plan.categories >= 0
    height, width = self.shape
    clipped = np.clip(boxes, 0, [width, height, width, height])
    inside = is_object & (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    rows = np.zeros(int(inside.sum()), BOX_DTYPE)
    rows['category'] = plan.categories[inside]
    for column, name in enumerate(('x0', 'y0', 'x1', 'y1')):
      rows[name] = clipped[inside, column]
    rows['visible_fraction'] = visible_fraction[inside]
    rows['instance'] = np.cumsum(is_object)[inside] - 1
    return rows

  def _check_video(self, video_id: int) -> None:
    if not 0 <= operator.index(video_id) < self._num_videos:
      raise ValueError(f'video_id: {video_id} out of range [0, {self._num_videos})')

  def _plan(self, video_id: int, t: int = 0) -> _VideoPlan:
    self._check_video(video_id)
    if not 0 <= operator.index(t) < self._num_frames:
      raise ValueError(f't: {t} out of range [0, {self._num_frames})')
    return _video_plan(self.seed, self.split, int(video_id), self.frame_size, self.family)
