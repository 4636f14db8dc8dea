"""What the embedded world's camera sees: a photograph under a panning, zooming window, and
the light it is seen in. Sizes and speeds are in frame pixels (see world.py)."""
import dataclasses
import functools
import importlib.util
import math
import os

import numpy as np
from PIL import Image

# Files in scikit-image's data folder: photographs of scenes, surfaces and textures.
PHOTOS = ('astronaut.png', 'chelsea.png', 'coffee.png', 'rocket.jpg', 'motorcycle_left.png',
          'hubble_deep_field.jpg', 'retina.jpg', 'ihc.png', 'camera.png', 'brick.png',
          'grass.png', 'gravel.png', 'moon.png', 'coins.png')
PHOTO_HEIGHTS = 3.2  # A photograph's shorter side, in frame heights, once loaded.
MAX_ZOOM = 0.15  # Relative amplitude of the camera's zoom.


@functools.lru_cache(maxsize=2)
def photos(height: int) -> tuple:
  """PHOTOS as RGB PIL images whose shorter side is PHOTO_HEIGHTS x the frame height."""
  folder = os.path.join(importlib.util.find_spec('skimage').submodule_search_locations[0],
                        'data')
  photos = []
  for name in PHOTOS:
    with Image.open(os.path.join(folder, name)) as image:
      image = image.convert('RGB')
      scale = PHOTO_HEIGHTS * height / min(image.size)
      image = image.resize((round(image.width * scale), round(image.height * scale)),
                           Image.LANCZOS)
    photos.append(image)
  return tuple(photos)


@dataclasses.dataclass(frozen=True)
class Camera:
  """Frame pixel (x, y) shows photograph pixel centre(t) + (x - W/2, y - H/2) * scale(t)."""
  photo: int
  centre: np.ndarray  # (2,) x, y of the mean window centre in photo pixels
  amplitude: np.ndarray  # (2,) of the centre's sinusoidal pan
  omega: np.ndarray  # (2,)
  phase: np.ndarray  # (2,)
  scale: float  # photo pixels per frame pixel at zoom 1
  zoom: float  # relative amplitude of the zoom oscillation
  zoom_omega: float
  zoom_phase: float

  def at(self, t: int):
    """(window centre (2,), photo pixels per frame pixel) at time t."""
    centre = self.centre + self.amplitude * np.sin(self.omega * t + self.phase)
    return centre, self.scale * (1 + self.zoom * math.sin(self.zoom_omega * t + self.zoom_phase))


@dataclasses.dataclass(frozen=True)
class Lighting:
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


def plan_camera(rng, shape, photos, px: float) -> Camera:
  """A camera over one of `photos`; px = frame pixels per reference pixel (speeds)."""
  height, width = shape
  photo = int(rng.integers(len(photos)))
  photo_width, photo_height = photos[photo].size
  scale = rng.uniform(1.0, 1.8)
  zoom = rng.uniform(0, MAX_ZOOM)
  # Room for the window centre at the widest zoom, per axis.
  half = np.array([width, height]) * scale * (1 + zoom) / 2
  room = np.maximum(np.array([photo_width, photo_height]) / 2 - half, 0)
  amplitude = room * rng.uniform(0.3, 1.0, 2)
  speed = rng.uniform(0.3, 1.2, 2) * scale * px  # Photo px per frame.
  omega = np.where(amplitude > 0, speed / np.maximum(amplitude, 1e-6), 0.0)
  centre = (np.array([photo_width, photo_height]) / 2
            + rng.uniform(-1, 1, 2) * (room - amplitude))
  return Camera(photo, centre, amplitude, omega, rng.uniform(0, 2 * np.pi, 2), float(scale),
                 float(zoom), float(rng.uniform(0.02, 0.06)), float(rng.uniform(0, 2 * np.pi)))


def plan_lighting(rng) -> Lighting:
  return Lighting(
      brightness=rng.uniform(0.8, 1.15), flicker=rng.uniform(0.05, 0.2),
      flicker_omega=rng.uniform(0.02, 0.1), flicker_phase=rng.uniform(0, 2 * np.pi),
      white_balance=rng.uniform(0.85, 1.15, 3), tint=rng.uniform(0.02, 0.08),
      tint_omega=rng.uniform(0.02, 0.08, 3), tint_phase=rng.uniform(0, 2 * np.pi, 3),
      gradient=rng.uniform(0, 0.2), gradient_angle=rng.uniform(0, 2 * np.pi),
      gradient_spin=rng.uniform(-0.03, 0.03))


def background(camera: Camera, t: int, shape: tuple, frame_size: int) -> np.ndarray:
  """(3, H, W) float32 in [0, 1]: the photograph under the camera at time t."""
  height, width = shape
  centre, scale = camera.at(t)
  origin = centre - np.array([width, height]) * scale / 2
  view = photos(frame_size)[camera.photo].transform(
      (width, height), Image.AFFINE, (scale, 0, origin[0], 0, scale, origin[1]),
      resample=Image.BILINEAR)
  return np.asarray(view, np.float32).transpose(2, 0, 1) / 255


def light(lighting: Lighting, t: int, shape: tuple) -> np.ndarray:
  """(3, H, W) multiplier taking [0, 1] colour to 0-255 levels under the light at time t."""
  height, width = shape
  flicker = math.exp(
      lighting.flicker * math.sin(lighting.flicker_omega * t + lighting.flicker_phase))
  gain = (255 * lighting.brightness * flicker * lighting.white_balance
          * (1 + lighting.tint * np.sin(lighting.tint_omega * t + lighting.tint_phase)))
  angle = lighting.gradient_angle + lighting.gradient_spin * t
  across = np.linspace(-lighting.gradient, lighting.gradient, width, dtype=np.float32)
  down = np.linspace(-lighting.gradient, lighting.gradient, height, dtype=np.float32)
  ramp = 1 + (across * math.cos(angle))[None, :] + (down * math.sin(angle))[:, None]
  return ramp * gain.astype(np.float32)[:, None, None]
