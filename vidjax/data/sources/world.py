"""An embedded procedural video world: the project's demo dataset and test fixture.

Every video shows 3-6 objects from CATEGORIES moving, spinning, scaling, occluding each other
and crossing the frame border, over a cluttered background, seen by a drifting camera under
drifting light, with pixel noise. A category is a (texture, shape) pair; colours are random
per instance, so only shape and texture identify a category.

A frame is a pure function of (seed, split, video_id, t), rendered on demand: per-video sprites
and background tiles are built once (cached per process), then each frame warps the sprites
with an inverse affine map (nearest-neighbour) and composites them front to back.
Splits 'train', 'support' and 'query' hold disjoint videos.
"""
import dataclasses
import functools
import math
import operator

import numpy as np
from PIL import Image

from vidjax.data.sources import world_render as render

_CATEGORY_PARTS = (
    ('striped', 'disc'), ('checkered', 'square'), ('dotted', 'triangle'), ('ringed', 'star'),
    ('zigzag', 'hexagon'), ('gridded', 'cross'), ('pinwheel', 'diamond'), ('wavy', 'crescent'),
    ('speckled', 'heart'), ('bordered', 'arrow'),
)
CATEGORIES = tuple(f'{texture} {shape}' for texture, shape in _CATEGORY_PARTS)
SPLITS = ('train', 'support', 'query')
# Rows of SyntheticWorld.boxes: one per object at least partly inside the frame. Boxes are the
# object's full extent clipped to the frame; `instance` identifies the object within its video.
BOX_DTYPE = np.dtype([('category', np.int32), ('x0', np.float32), ('y0', np.float32),
                      ('x1', np.float32), ('y1', np.float32), ('visible_fraction', np.float32),
                      ('instance', np.int32)])

_REFERENCE_FRAME_SIZE = 96  # sizes and speeds below are in pixels at this frame size
_NOISE_SIGMA = 3.0  # pixel noise, in 0-255 levels
_NOISE_BANK_MARGIN = 32
_TUMBLING_FRACTION = 0.3
_MAX_PULSE = 0.25  # relative amplitude of each layer's scale oscillation
_CROP_MARGIN = 1.25
_MIN_CROP_VISIBLE = 0.6
_MIN_CROP_BOX_PX = 14.0
_CROP_TIMES_PER_VIDEO = 4
_MAX_CROPS_PER_INSTANCE = 2
_CLUTTER_BANK_SEED = 1
_CROP_STREAM = 7  # seed-sequence word separating crop sampling from video content


@dataclasses.dataclass(frozen=True)
class _Motion:
  """Per-layer trajectories, each a sum of slow sinusoids so that motion is smooth.

  position(t) = centre + amplitude sin(omega t + phase)             (per axis)
  angle(t)    = angle + spin t + sway sin(sway_omega t + sway_phase)
  scale(t)    = (1 + pulse sin(pulse_omega t + pulse_phase)) / (1 + pulse)
  """
  centre: np.ndarray  # (L, 2) x, y in frame pixels
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


@dataclasses.dataclass(frozen=True)
class _Lighting:
  """Global light: gain(t) = brightness exp(flicker sin(.)) white_balance (1 + tint sin(.)),
  times a linear ramp across the frame whose direction turns slowly."""
  brightness: float
  flicker: float
  flicker_omega: float
  flicker_phase: float
  white_balance: np.ndarray  # (3,)
  tint: float
  tint_omega: np.ndarray  # (3,)
  tint_phase: np.ndarray  # (3,)
  gradient: float  # light change from frame centre to edge, relative
  gradient_angle: float
  gradient_spin: float


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
  motion: _Motion
  background: np.ndarray  # (3, S, S) tile; the camera looks at a frame-sized window of it
  camera: np.ndarray  # (3, 2, 2) amplitude, omega, phase of two sinusoids per axis
  lighting: _Lighting
  noise_key: int


def _sinusoids(rng, shape, amplitude, speed):
  """(amplitude, omega, phase) arrays of sinusoids with peak speed in `speed` px/frame."""
  amplitudes = rng.uniform(*amplitude, shape)
  return amplitudes, rng.uniform(*speed, shape) / amplitudes, rng.uniform(0, 2 * np.pi, shape)


# Sized for a training run's whole set of videos: building a plan costs far more than
# rendering a frame, and training visits the videos in random order.
@functools.lru_cache(maxsize=1024)
def _video_plan(seed: int, split: str, video_id: int, frame_size: int) -> _VideoPlan:
  rng = np.random.default_rng([seed, SPLITS.index(split), video_id])
  px = frame_size / _REFERENCE_FRAME_SIZE
  objects = rng.integers(0, len(CATEGORIES), rng.integers(3, 7))
  # Array order is z-order, front first; distractors mix in between objects.
  categories = rng.permutation(np.concatenate([objects, np.full(rng.integers(2, 6), -1)]))
  count = categories.size
  pulse = rng.uniform(0, _MAX_PULSE, count)
  clutter = _clutter_bank(frame_size)
  sprites = []
  for category, peak_scale in zip(categories, 1 + pulse):
    if category >= 0:
      texture, shape = _CATEGORY_PARTS[category]
      # Drawn at the peak of the scale oscillation, so warping only ever shrinks it.
      radius = rng.uniform(10, 18) * px * peak_scale
      stencil = render.draw_stencil(render.SHAPES[shape], texture, radius, rng)
    else:
      stencil = render.pick(clutter['segment' if rng.random() < 0.5 else 'blob'], rng)
    sprites.append(render.colourise(_padded_for_warping(stencil), rng))
  # Like real objects, most stay near their canonical pose and sway; some tumble.
  tumbling = (categories < 0) | (rng.random(count) < _TUMBLING_FRACTION)
  amplitude, omega, phase = _sinusoids(rng, (count, 2), (10 * px, 70 * px), (0.5 * px, 2.0 * px))
  motion = _Motion(
      centre=rng.uniform(0.2, 0.8, (count, 2)) * frame_size,
      amplitude=amplitude, omega=omega, phase=phase,
      angle=np.where(tumbling, rng.uniform(0, 2 * np.pi, count), rng.normal(0, 0.2, count)),
      spin=tumbling * rng.uniform(0.005, 0.04, count) * rng.choice([-1, 1], count),
      sway=~tumbling * rng.uniform(0.1, 0.6, count),
      sway_omega=rng.uniform(0.02, 0.08, count), sway_phase=rng.uniform(0, 2 * np.pi, count),
      pulse=pulse, pulse_omega=rng.uniform(0.02, 0.08, count),
      pulse_phase=rng.uniform(0, 2 * np.pi, count))
  margin = _camera_margin(frame_size)
  slow = _sinusoids(rng, 2, (0.1 * margin, 0.55 * margin), (0.1 * px, 0.5 * px))
  fast = _sinusoids(rng, 2, (0.05 * margin, 0.3 * margin), (0.1 * px, 0.4 * px))
  lighting = _Lighting(
      brightness=rng.uniform(0.75, 1.15), flicker=rng.uniform(0.1, 0.3),
      flicker_omega=rng.uniform(0.02, 0.1), flicker_phase=rng.uniform(0, 2 * np.pi),
      white_balance=rng.uniform(0.85, 1.15, 3), tint=rng.uniform(0.03, 0.1),
      tint_omega=rng.uniform(0.02, 0.08, 3), tint_phase=rng.uniform(0, 2 * np.pi, 3),
      gradient=rng.uniform(0, 0.2), gradient_angle=rng.uniform(0, 2 * np.pi),
      gradient_spin=rng.uniform(-0.03, 0.03))
  background = render.render_background(frame_size + 2 * margin + 1, clutter, rng)
  stencils = [sprite.stencil for sprite in sprites]
  for array in (background, *(sprite.rgba for sprite in sprites)):
    array.flags.writeable = False
  return _VideoPlan(
      layers=tuple(sprite.rgba.reshape(4, -1) for sprite in sprites),
      sizes=tuple(stencil.size for stencil in stencils),
      areas=np.array([stencil.area for stencil in stencils]),
      outlines=np.concatenate([stencil.outline for stencil in stencils]).T,
      outline_layer=np.repeat(np.arange(count), [len(stencil.outline) for stencil in stencils]),
      outline_starts=np.cumsum([0] + [len(stencil.outline) for stencil in stencils[:-1]]),
      categories=categories, motion=motion, background=background,
      camera=np.stack([np.stack(pair, axis=-1) for pair in zip(slow, fast)]),
      lighting=lighting, noise_key=int(rng.integers(2**31)))


def _padded_for_warping(stencil: render.Stencil) -> render.Stencil:
  """`stencil` with enough empty margin that every pixel of its warped box samples inside it."""
  min_scale = (1 - _MAX_PULSE) / (1 + _MAX_PULSE)
  reach = math.sqrt(2) * (np.hypot(*stencil.outline.T).max() + 0.5 + 0.5 / min_scale) + 1
  pad = max(0, math.ceil(reach - stencil.size / 2))
  padded = np.zeros((3, stencil.size + 2 * pad, stencil.size + 2 * pad), np.float32)
  padded[:, pad:pad + stencil.size, pad:pad + stencil.size] = stencil.coverage
  return dataclasses.replace(stencil, coverage=padded)


def _camera_margin(frame_size: int) -> int:
  return int(math.ceil(0.15 * frame_size))


@functools.lru_cache(maxsize=4)
def _clutter_bank(frame_size: int) -> dict:
  """Distractor stencils shared by all videos (drawing them per video would dominate its cost)."""
  return render.draw_clutter_bank(frame_size, np.random.default_rng(_CLUTTER_BANK_SEED))


@functools.lru_cache(maxsize=4)
def _noise_bank(frame_size: int) -> np.ndarray:
  """Gaussian pixel noise shared by all videos; frames read shifted windows of it."""
  size = frame_size + _NOISE_BANK_MARGIN
  bank = np.random.default_rng(0).standard_normal((3, size, size), np.float32) * _NOISE_SIGMA
  bank.flags.writeable = False
  return bank


def _camera_offset(camera: np.ndarray, t: int) -> np.ndarray:
  amplitude, omega, phase = camera
  return np.rint((amplitude * np.sin(omega * t + phase)).sum(axis=-1)).astype(int)


def _composite(plan: _VideoPlan, t: int, frame_size: int, with_colour: bool):
  """Front-to-back compositing of all layers at time t.

  Returns (colour (3, F, F) or None, transmittance (F, F) left for the background,
  boxes (L, 4) unclipped x0 y0 x1 y1, visible fraction (L,) of each layer's full area).
  """
  motion = plan.motion
  centres = (motion.centre + motion.amplitude * np.sin(motion.omega * t + motion.phase)
             - _camera_offset(plan.camera, t))
  angles = (motion.angle + motion.spin * t
            + motion.sway * np.sin(motion.sway_omega * t + motion.sway_phase))
  # Frame pixels per sprite pixel (sprites are drawn at the peak of the scale oscillation).
  scales = ((1 + motion.pulse * np.sin(motion.pulse_omega * t + motion.pulse_phase))
            / (1 + motion.pulse))
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
  rights, bottoms = np.minimum(np.ceil(boxes[:, 2:]), frame_size).astype(int).T.tolist()
  inverse_cos, inverse_sin = (cos / scales).tolist(), (sin / scales).tolist()
  transmittance = np.ones((frame_size, frame_size), np.float32)
  colour = np.zeros((3, frame_size, frame_size), np.float32) if with_colour else None
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


def _light(lighting: _Lighting, t: int, frame_size: int) -> np.ndarray:
  """(3, F, F) multiplier taking [0, 1] colour to 0-255 levels under the light at time t."""
  flicker = math.exp(
      lighting.flicker * math.sin(lighting.flicker_omega * t + lighting.flicker_phase))
  gain = (255 * lighting.brightness * flicker * lighting.white_balance
          * (1 + lighting.tint * np.sin(lighting.tint_omega * t + lighting.tint_phase)))
  angle = lighting.gradient_angle + lighting.gradient_spin * t
  position = np.linspace(-lighting.gradient, lighting.gradient, frame_size, dtype=np.float32)
  ramp = 1 + (position * math.cos(angle))[None, :] + (position * math.sin(angle))[:, None]
  return ramp * gain.astype(np.float32)[:, None, None]


class SyntheticWorld:
  """Random-access procedural videos; picklable and safe to read from several threads."""

  def __init__(self, seed: int = 0, split: str = 'train', num_videos: int = 200,
               num_frames: int = 64, frame_size: int = 96, fps: float = 10.0):
    if split not in SPLITS:
      raise ValueError(f"split: unknown {split!r}; expected one of {', '.join(SPLITS)}")
    for name, value, minimum in (('seed', seed, 0), ('num_videos', num_videos, 1),
                                 ('num_frames', num_frames, 1), ('frame_size', frame_size, 48)):
      if operator.index(value) < minimum:
        raise ValueError(f'{name}: must be an integer >= {minimum}, got {value}')
    if not fps > 0:
      raise ValueError(f'fps: must be positive, got {fps}')
    self.seed, self.split, self.frame_size = int(seed), split, int(frame_size)
    self.fps = float(fps)
    self._num_videos, self._num_frames = int(num_videos), int(num_frames)

  def __len__(self) -> int:
    return self._num_videos

  def num_frames(self, video_id: int) -> int:
    self._check_video(video_id)
    return self._num_frames

  def video_name(self, video_id: int) -> str:
    self._check_video(video_id)
    return f'synthetic/{self.split}/{video_id:05d}'

  def frame(self, video_id: int, t: int) -> np.ndarray:
    """(frame_size, frame_size, 3) uint8 frame t of video `video_id`."""
    plan = self._plan(video_id, t)
    size = self.frame_size
    colour, transmittance, _, _ = _composite(plan, t, size, with_colour=True)
    margin = _camera_margin(size)
    dx, dy = _camera_offset(plan.camera, t) + margin
    colour += transmittance * plan.background[:, dy:dy + size, dx:dx + size]
    colour *= _light(plan.lighting, t, size)
    mixed = (plan.noise_key * 0x9E3779B1 + int(t) * 0x85EBCA77) & 0xFFFFFFFF
    ny, nx = mixed % _NOISE_BANK_MARGIN, (mixed >> 8) % _NOISE_BANK_MARGIN
    colour += _noise_bank(size)[:, ny:ny + size, nx:nx + size]
    return np.dstack(np.clip(colour, 0, 255, out=colour).astype(np.uint8))

  def boxes(self, video_id: int, t: int) -> np.ndarray:
    """BOX_DTYPE rows for the objects (not distractors) at least partly inside frame t."""
    plan = self._plan(video_id, t)
    _, _, boxes, visible_fraction = _composite(plan, t, self.frame_size, with_colour=False)
    is_object = plan.categories >= 0
    clipped = np.clip(boxes, 0, self.frame_size)
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

  def _plan(self, video_id: int, t: int) -> _VideoPlan:
    self._check_video(video_id)
    if not 0 <= operator.index(t) < self._num_frames:
      raise ValueError(f't: {t} out of range [0, {self._num_frames})')
    return _video_plan(self.seed, self.split, int(video_id), self.frame_size)


def labelled_crops(seed: int = 0, split: str = 'support', per_class: int = 50,
                   crop_size: int = 32, num_videos: int | None = None,
                   frame_size: int = 96) -> tuple[np.ndarray, np.ndarray]:
  """Balanced labelled object crops: (images uint8 [N, crop_size, crop_size, 3], labels int32 [N]).

  N = per_class * len(CATEGORIES), sorted by label. Crops are squares of side 1.25 x the
  longer box side around objects at least 60% visible, edge-padded at the frame border.
  Videos are scanned in order at a few stratified random times each, until every category
  has per_class distinct object instances; each instance gives one crop (a second one, from
  another time, only when num_videos runs out first). `num_videos` caps the videos scanned
  (None: as many as needed).
  """
  if split not in SPLITS:
    raise ValueError(f"split: unknown {split!r}; expected one of {', '.join(SPLITS)}")
  if operator.index(per_class) < 1 or operator.index(crop_size) < 1:
    raise ValueError(f'per_class and crop_size must be >= 1, got {per_class} and {crop_size}')
  world = SyntheticWorld(seed, split, 2**31 - 1 if num_videos is None else num_videos,
                         frame_size=frame_size)
  rng = np.random.default_rng([seed, SPLITS.index(split), _CROP_STREAM])
  first_picks = [[] for _ in CATEGORIES]  # (video, t, box) per category, one per instance
  later_picks = [[] for _ in CATEGORIES]
  video_id = 0
  while video_id < len(world) and min(map(len, first_picks)) < per_class:
    by_instance = _crop_candidates(world, video_id, rng)
    for instance in sorted(by_instance):
      category, candidates = by_instance[instance]
      chosen = rng.permutation(len(candidates))[:_MAX_CROPS_PER_INSTANCE]
      first_picks[category].append(candidates[chosen[0]])
      later_picks[category].extend(candidates[i] for i in chosen[1:])
    video_id += 1
  picks = []
  for category, name in enumerate(CATEGORIES):
    available = first_picks[category] + later_picks[category]
    if len(available) < per_class:
      raise ValueError(f'only {len(available)} eligible crops of {name!r} in {video_id} {split} '
                       f'videos; need per_class={per_class}: allow more num_videos')
    picks += [(category, *pick) for pick in available[:per_class]]
  images = np.empty((len(picks), crop_size, crop_size, 3), np.uint8)
  # Render in video order: per-video plans are cached only for the most recent videos.
  frame, frame_key = None, None
  for index in sorted(range(len(picks)), key=lambda i: picks[i][1:3]):
    _, video, t, box = picks[index]
    if frame_key != (video, t):
      frame, frame_key = world.frame(video, t), (video, t)
    images[index] = _crop(frame, box, crop_size)
  return images, np.array([pick[0] for pick in picks], np.int32)


def _crop_candidates(world: SyntheticWorld, video_id: int, rng: np.random.Generator) -> dict:
  """{instance: (category, [(video_id, t, box), ...])} for objects worth cropping."""
  edges = np.linspace(0, world.num_frames(video_id), _CROP_TIMES_PER_VIDEO + 1).astype(int)
  times = {int(rng.integers(start, max(stop, start + 1)))
           for start, stop in zip(edges[:-1], edges[1:])}
  min_box = _MIN_CROP_BOX_PX * world.frame_size / _REFERENCE_FRAME_SIZE
  by_instance = {}
  for t in sorted(times):
    for row in world.boxes(video_id, t):
      box = (row['x0'], row['y0'], row['x1'], row['y1'])
      if (row['visible_fraction'] >= _MIN_CROP_VISIBLE
          and max(box[2] - box[0], box[3] - box[1]) >= min_box):
        by_instance.setdefault(int(row['instance']), (int(row['category']), []))[1].append(
            (video_id, t, box))
  return by_instance


def _crop(frame: np.ndarray, box, crop_size: int) -> np.ndarray:
  """Square crop around `box` with _CROP_MARGIN, edge-padded, resized bilinearly to crop_size."""
  x0, y0, x1, y1 = box
  side = max(1, int(round(max(x1 - x0, y1 - y0) * _CROP_MARGIN)))
  left, top = int(round((x0 + x1 - side) / 2)), int(round((y0 + y1 - side) / 2))
  rows = np.clip(np.arange(top, top + side), 0, frame.shape[0] - 1)
  cols = np.clip(np.arange(left, left + side), 0, frame.shape[1] - 1)
  patch = Image.fromarray(frame[rows[:, None], cols[None, :]])
  return np.asarray(patch.resize((crop_size, crop_size), Image.BILINEAR))
