"""Crops (host) and photometric augmentation (host or accelerator, one implementation).

Crops: 'anchored' picks one random point (x, y) and cuts, in each of the K frames, a crop of
its own random size and aspect around that same point (a self-annotated "object" seen at two
moments and two scales); 'rrc' cuts independent random-resized crops. Both resize to the
training image size.

Photometric ops are written once against an array namespace `xp` (numpy or jax.numpy) and
driven by uniform random numbers `u` [N, NUM_DRAWS]: the host draws them from each sample's
numpy generator, the train step from its jax.random key.
"""
import math

import numpy as np
from PIL import Image

from vidjax.data import motion
from vidjax.errors import require

# config.data.crop.mode: one anchor point and a crop of its own size around it in each
# frame, or independent random-resized crops. config.data.crop.anchor: where that point is.
CROP_MODES = ('anchored', 'rrc')
ANCHORS = ('motion', 'uniform')

# u[:, i] drives: jitter on/off, brightness, contrast, saturation, hue, grayscale on/off,
# blur on/off, blur sigma, solarise on/off, invert on/off, colour rotation on/off, its
# rotation (3: a uniform unit quaternion) and its reflection on/off. Without colour rotation
# only the first 10 are drawn, so runs without it see the augmentation they always saw.
NUM_DRAWS = 15
_DRAWS_WITHOUT_ROTATION = 10


def num_draws(photometric_config) -> int:
  """How many uniforms per image `photometric` needs under this config."""
  return NUM_DRAWS if photometric_config.rotate_prob > 0 else _DRAWS_WITHOUT_ROTATION


_LUMA = (0.299, 0.587, 0.114)
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)  # Exact inverse: no hue shift means no change.


def crop_boxes(rng: np.random.Generator, frame_hw, num_views: int, crop_config, anchor=None,
               extent=None):
  """[K, 4] float boxes (x0, y0, x1, y1) inside a frame of size `frame_hw`.

  'anchored' crops all surround `anchor`: one (x, y), or [K, 2] points, one per view
  (uniformly random if None); 'rrc' crops have independent random centres. Sides are
  crop_config.scale x the shorter frame side, or, given `extent` (pixels: the longer side
  of the region the crop is fitted to), crop_config.margin x extent, at most the largest
  scale.
  """
  height, width = frame_hw
  shorter = min(height, width)
  if crop_config.mode == 'anchored' and anchor is not None:
    centres = np.broadcast_to(np.asarray(anchor, np.float64).reshape(-1, 2), (num_views, 2))
  else:
    centres = rng.uniform((0, 0), (width, height), size=(
        1 if crop_config.mode == 'anchored' else num_views, 2))
    centres = np.broadcast_to(centres, (num_views, 2))
  if extent is None:
    side = rng.uniform(*crop_config.scale, size=num_views) * shorter
  else:
    # Capped: a region that merged several objects, or zoomed texture, is not one object.
    side = np.minimum(rng.uniform(*crop_config.margin, size=num_views) * extent,
                      crop_config.scale[1] * shorter)
  log_ratio = rng.uniform(math.log(crop_config.ratio[0]), math.log(crop_config.ratio[1]),
                          size=num_views)
  crop_w = np.minimum(side * np.exp(log_ratio / 2), width)
  crop_h = np.minimum(side * np.exp(-log_ratio / 2), height)
  if crop_config.mode == 'anchored' and crop_config.jitter:
    # Each view's centre moves off the point by up to `jitter` x its own size: the point
    # stays inside every crop while the views no longer share their centre.
    shift = rng.uniform(-crop_config.jitter, crop_config.jitter, (num_views, 2))
    centres = centres + shift * np.stack([crop_w, crop_h], axis=1)
  # Keep the crop inside the frame by sliding it, so the anchor stays inside it.
  x0 = np.clip(centres[:, 0] - crop_w / 2, 0, width - crop_w)
  y0 = np.clip(centres[:, 1] - crop_h / 2, 0, height - crop_h)
  return np.stack([x0, y0, x0 + crop_w, y0 + crop_h], axis=1)


def crop_views(rng: np.random.Generator, frames, crop_config, image_size: int,
               backdrop=None, far=(), stored_change=None):
  """K frames (HxWx3 uint8, one video) -> (views [K, S, S, 3], negatives [N, S, S, 3]) uint8
  crops, randomly flipped.

  With crop_config.anchor == 'motion', anchored crops centre on what moves between the
  first two frames (see motion.py) rather than on a uniformly random point; with
  crop_config.track, each later view's crop follows what was under the point in the first
  frame (motion.track) instead of staying at the same place; with crop_config.fit, anchored
  crops centre on the moving region under the point (motion.region_box) and take their size
  from its extent, as evaluation crops are cut around an object's box.

  Object-seeking options, so that the views share the object rather than the background:
  `backdrop`, a frame of another video, gets the moving region of the last view's frame
  pasted over it before that view is cut (a background swap, as FAME does); and
  crop_config.negatives crops of the first frame away from the point and from anything
  that moves: its background, for the contrastive losses to push away; and `far`, frames
  of the same video far in time, cut where the first view was (TCN's temporal negatives),
  after those.

  stored_change: (map, cell px) of where the first two frames differ, as the source stored
  it (ArrayRecordFrames.motion); the motion anchor is drawn from it instead of from a
  motion_map computed here, unless an object-seeking option needs the full map anyway.
  """
  height, width = frames[0].shape[:2]
  change = None
  motion_anchor = crop_config.anchor == 'motion'
  needs_full_map = (backdrop is not None or crop_config.negatives
                    or motion_anchor and crop_config.mode == 'anchored' and crop_config.fit)
  if needs_full_map or motion_anchor and stored_change is None:
    change = motion.motion_map(frames[0], frames[1])
  anchor = None
  if crop_config.mode == 'anchored':
    if crop_config.anchor == 'motion':
      anchor = motion.sample_anchor(rng, frames[0], frames[1], crop_config.uniform_share,
                                    stored_change if change is None else change)
    elif crop_config.track or crop_config.negatives:
      anchor = (rng.uniform(0, width), rng.uniform(0, height))
    if crop_config.track:
      anchor = [anchor] + [motion.track(frames[0], frame, anchor) for frame in frames[1:]]
  frames = list(frames)
  fit = crop_config.mode == 'anchored' and crop_config.fit and change is not None
  mask = (motion.moving_mask(*change, (height, width))
          if backdrop is not None or fit else None)
  if backdrop is not None:
    backdrop = np.asarray(Image.fromarray(backdrop).resize((width, height), Image.BILINEAR))
    alpha = mask[..., None]
    frames[-1] = np.round(alpha * frames[-1] + (1 - alpha) * backdrop).astype(np.uint8)
  extent = None
  if fit:
    region = motion.region_box(mask, np.reshape(anchor, (-1, 2))[0])
    if region is not None:
      x0, y0, x1, y1 = region
      extent = max(x1 - x0, y1 - y0)
      if not crop_config.track:
        anchor = ((x0 + x1) / 2, (y0 + y1) / 2)
  boxes_of_views = crop_boxes(rng, (height, width), len(frames), crop_config, anchor, extent)
  views = _cut(rng, frames, boxes_of_views, crop_config, image_size)
  negatives = np.zeros((0, image_size, image_size, 3), np.uint8)
  if crop_config.negatives:
    point = np.asarray(anchor, np.float64).reshape(-1, 2)[0]
    centres = _background_points(rng, change, point, crop_config.negatives,
                                 min(height, width) * crop_config.scale[1])
    boxes = np.concatenate([crop_boxes(rng, (height, width), 1, crop_config, centre)
                            for centre in centres])
    negatives = _cut(rng, [frames[0]] * len(boxes), boxes, crop_config, image_size)
  if len(far):
    far_views = _cut(rng, list(far), np.repeat(boxes_of_views[:1], len(far), 0), crop_config,
                     image_size)
    negatives = np.concatenate([negatives, far_views])
  return views, negatives


def _cut(rng, frames, boxes, crop_config, image_size: int) -> np.ndarray:
  """[K, S, S, 3]: box k of frame k, resized, flipped at random when crop_config.flip."""
  flips = rng.random(len(frames)) < 0.5 if crop_config.flip else np.zeros(len(frames), bool)
  views = []
  for frame, box, flip in zip(frames, boxes, flips):
    view = Image.fromarray(frame).resize((image_size, image_size), Image.BILINEAR,
                                         box=tuple(box))
    if flip:
      view = view.transpose(Image.FLIP_LEFT_RIGHT)
    views.append(np.asarray(view))
  return np.stack(views)


def _background_points(rng, change, point, count: int, distance: float) -> np.ndarray:
  """[count, 2] (x, y) points where nothing moves, at least `distance` from `point` when
  the frame has room (else as far as it allows)."""
  change_map, factor = change
  rows, cols = np.indices(change_map.shape)
  x, y = (cols + 0.5) * factor, (rows + 0.5) * factor
  far = np.hypot(x - point[0], y - point[1])
  still = change_map <= 0.05 * max(change_map.max(), 1e-6)
  candidates = np.flatnonzero(still & (far >= distance))
  if not len(candidates):
    candidates = np.argsort(far.ravel())[-max(1, far.size // 10):]
  cells = rng.choice(candidates, count)
  return np.stack([x.ravel()[cells] + rng.uniform(-0.5, 0.5, count) * factor,
                   y.ravel()[cells] + rng.uniform(-0.5, 0.5, count) * factor], axis=1)


def _luma(x, xp):
  return (x[..., 0:1] * _LUMA[0] + x[..., 1:2] * _LUMA[1] + x[..., 2:3] * _LUMA[2])


def _rotate_hue(x, angle, xp):
  """Rotate chroma in YIQ space by `angle` [N] radians: a linear, branch-free hue shift."""
  to_yiq = xp.asarray(_RGB_TO_YIQ, dtype=x.dtype)
  to_rgb = xp.asarray(_YIQ_TO_RGB, dtype=x.dtype)
  cos, sin = xp.cos(angle), xp.sin(angle)
  one, zero = xp.ones_like(cos), xp.zeros_like(cos)
  rotation = xp.stack([xp.stack([one, zero, zero], -1),
                       xp.stack([zero, cos, -sin], -1),
                       xp.stack([zero, sin, cos], -1)], -2)  # [N, 3, 3]
  matrix = xp.einsum('ij,njk,kl->nil', to_rgb, rotation, to_yiq)
  return xp.einsum('nij,nhwj->nhwi', matrix, x)


def _rotate_colours(x, u, xp):
  """Turn RGB about mid-grey by a uniformly random orthogonal matrix, driven by u [N, 4].

  Distances between colours are kept, so every edge between two colours of an object stays
  as strong as it was, while which colour, and which side is lighter, is random: unlike
  grayscale or solarising, which erase a pattern whose colours share a luminance.
  """
  # Shoemake's uniform unit quaternion from three uniforms, then its rotation matrix.
  r1, r2 = xp.sqrt(1.0 - u[:, 0]), xp.sqrt(u[:, 0])
  w, i = r1 * xp.sin(2 * math.pi * u[:, 1]), r1 * xp.cos(2 * math.pi * u[:, 1])
  j, k = r2 * xp.sin(2 * math.pi * u[:, 2]), r2 * xp.cos(2 * math.pi * u[:, 2])
  rotation = xp.stack([
      xp.stack([1 - 2 * (j * j + k * k), 2 * (i * j - k * w), 2 * (i * k + j * w)], -1),
      xp.stack([2 * (i * j + k * w), 1 - 2 * (i * i + k * k), 2 * (j * k - i * w)], -1),
      xp.stack([2 * (i * k - j * w), 2 * (j * k + i * w), 1 - 2 * (i * i + j * j)], -1)], -2)
  sign = xp.where(u[:, 3] < 0.5, -1.0, 1.0).astype(x.dtype)[:, None, None]
  return 0.5 + xp.einsum('nij,nhwj->nhwi', sign * rotation.astype(x.dtype), x - 0.5)


def _gaussian_blur(x, sigma, xp):
  """Separable Gaussian blur with a per-image sigma [N] (pixels), as two matrix products."""
  size = x.shape[1]
  grid = xp.arange(size, dtype=x.dtype)
  kernel = xp.exp(-(grid[None, :, None] - grid[None, None, :])**2
                  / (2 * sigma[:, None, None]**2))
  kernel = kernel / xp.sum(kernel, axis=2, keepdims=True)  # [N, S, S]; rows sum to 1.
  x = xp.einsum('nij,njwc->niwc', kernel, x)
  return xp.einsum('nij,nhjc->nhic', kernel, x)


def photometric(images, u, config, xp=np):
  """Colour rotation, SimCLR-style colour jitter, grayscale, blur, solarise, invert on float
  images in [0, 1].

  images: [N, S, S, 3] (square); u: [N, num_draws(config)] uniforms in [0, 1).
  """
  dtype = images.dtype
  u = u.astype(dtype)
  jitter = u[:, 0] < config.jitter_prob

  def factor(strength, draw):
    return xp.where(jitter, 1.0 + strength * (2.0 * draw - 1.0), 1.0)[:, None, None, None]

  x = images
  if config.rotate_prob > 0:
    rotate = (u[:, 10] < config.rotate_prob)[:, None, None, None]
    x = xp.where(rotate, xp.clip(_rotate_colours(x, u[:, 11:15], xp), 0.0, 1.0), x)
  x = x * factor(config.brightness, u[:, 1])
  mean = xp.mean(_luma(x, xp), axis=(1, 2, 3), keepdims=True)
  x = (x - mean) * factor(config.contrast, u[:, 2]) + mean
  gray = _luma(x, xp)
  x = gray + (x - gray) * factor(config.saturation, u[:, 3])
  hue = xp.where(jitter, config.hue * (2.0 * u[:, 4] - 1.0), 0.0)
  x = xp.clip(_rotate_hue(x, 2 * math.pi * hue, xp), 0.0, 1.0)
  to_gray = (u[:, 5] < config.grayscale_prob)[:, None, None, None]
  x = xp.where(to_gray, xp.broadcast_to(_luma(x, xp), x.shape), x)
  if config.blur_prob > 0:
    # SimCLR's sigma in [0.1, 2.0] px at 224 px, scaled to this image size.
    sigma = (0.1 + 1.9 * u[:, 7]) * x.shape[1] / 224
    blur = (u[:, 6] < config.blur_prob)[:, None, None, None]
    x = xp.where(blur, _gaussian_blur(x, sigma, xp), x)
  solarise = (u[:, 8] < config.solarize_prob)[:, None, None, None]
  x = xp.where(solarise & (x >= 0.5), 1.0 - x, x)
  # Solarising and inverting flip which parts of a thing are light and which dark: two
  # frames of one object share that pattern even under colour jitter and grayscale, and
  # matching it tells instances apart without learning their shape.
  invert = (u[:, 9] < config.invert_prob)[:, None, None, None]
  x = xp.where(invert, 1.0 - x, x)
  return x.astype(dtype)


def photometric_uint8(views, u, config):
  """Host path: uint8 [K, S, S, 3] in, uint8 out."""
  x = photometric(views.astype(np.float32) / 255.0, u, config, np)
  return np.round(x * 255.0).astype(np.uint8)


def check_config(data_config):
  """config.data.crop and config.data.photometric: one ConfigError naming the field."""
  crop = data_config.crop
  require(crop.mode in CROP_MODES, f'config.data.crop.mode: unknown {crop.mode!r}; '
          f'expected one of {", ".join(CROP_MODES)}')
  require(crop.anchor in ANCHORS, f'config.data.crop.anchor: unknown {crop.anchor!r}; '
          f'expected one of {", ".join(ANCHORS)}')
  require(0 <= crop.uniform_share <= 1,
          f'config.data.crop.uniform_share must be in [0, 1], got {crop.uniform_share}')
  require(0 <= crop.jitter <= 0.5,
          f'config.data.crop.jitter must be in [0, 0.5] (beyond half a crop the anchor point '
          f'leaves it), got {crop.jitter}')
  require(0 < crop.scale[0] <= crop.scale[1] <= 1,
          f'config.data.crop.scale must satisfy 0 < low <= high <= 1, got {tuple(crop.scale)}')
  require(0 < crop.margin[0] <= crop.margin[1],
          f'config.data.crop.margin must satisfy 0 < low <= high, got {tuple(crop.margin)}')
  require(not crop.fit or (crop.mode == 'anchored' and crop.anchor == 'motion'),
          "config.data.crop.fit needs crop.mode='anchored' and crop.anchor='motion'")
  require(0 <= crop.swap_prob <= 1,
          f'config.data.crop.swap_prob must be in [0, 1], got {crop.swap_prob}')
  require(isinstance(crop.negatives, int) and crop.negatives >= 0,
          f'config.data.crop.negatives must be an integer >= 0, got {crop.negatives!r}')
  require(crop.mode == 'anchored' or not crop.negatives,
          "config.data.crop.negatives needs crop.mode='anchored' (they avoid the anchor)")
  require(0 < crop.ratio[0] <= crop.ratio[1],
          f'config.data.crop.ratio must satisfy 0 < low <= high, got {tuple(crop.ratio)}')
  photometric = data_config.photometric
  for name in ('jitter_prob', 'grayscale_prob', 'blur_prob', 'solarize_prob', 'invert_prob',
               'rotate_prob'):
    require(0 <= photometric[name] <= 1,
            f'config.data.photometric.{name} must be in [0, 1], got {photometric[name]}')
