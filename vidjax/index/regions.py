"""What of a frame gets a vector: which frames of a video are kept, and which boxes of a kept
frame are embedded (the whole frame, a multi-scale grid, the regions that move)."""
import numpy as np
from PIL import Image
from scipy import ndimage

from vidjax.data import motion
from vidjax.data.sources.base import thumbnail

REGION_KINDS = ('grid', 'motion')
MOTION_GAP_SECONDS = 0.3  # The second frame the motion detector compares a kept frame with.
MOTION_MARGIN = 1.3  # Moving regions are cut with this margin, like the labelled crops.
MIN_REGION_SIDE = 12  # Moving regions smaller than this many pixels are dropped.


def frame_rate(source, video: int) -> float:
  """Frames per second of the source's frame index (file sources know it per video)."""
  rate = getattr(source, 'fps', None)
  rate = rate(video) if callable(rate) else rate
  return float(rate or 30.0)


def timestamp(source, video: int, t: int) -> float:
  stamp = getattr(source, 'timestamp', None)
  return float(stamp(video, t)) if stamp else t / frame_rate(source, video)


def sampled_frames(source, video: int, fps: float) -> np.ndarray:
  """Frame indices at about `fps` per second (all frames when fps is 0 or above the rate)."""
  count, rate = source.num_frames(video), frame_rate(source, video)
  if not fps or fps >= rate:
    return np.arange(count)
  slots = np.floor(np.arange(count) * fps / rate)
  return np.flatnonzero(np.diff(slots, prepend=-1) > 0)


class NearDuplicates:
  """Drops a frame whose 16x16 grey thumbnail is within `threshold` mean absolute difference
  of the last kept one (vidjax.prepare's --dedup); threshold 0 keeps everything."""

  def __init__(self, threshold: float):
    self.threshold, self.last = threshold, None

  def keep(self, frame) -> bool:
    if not self.threshold:
      return True
    thumb = thumbnail(frame)
    if self.last is not None and np.abs(thumb - self.last).mean() < self.threshold:
      return False
    self.last = thumb
    return True


def grid_boxes(height: int, width: int, scales) -> list:
  """Square windows of side scale x the shorter side for each scale, overlapping by half,
  the last row and column flush with the frame's edges: [(x0, y0, x1, y1)]."""
  boxes = []
  for scale in scales:
    side = max(1, int(round(scale * min(height, width))))
    stride = max(1, side // 2)
    for top in _starts(height, side, stride):
      for left in _starts(width, side, stride):
        boxes.append((float(left), float(top), float(left + side), float(top + side)))
  return boxes


def _starts(length: int, side: int, stride: int) -> list:
  starts = list(range(0, max(1, length - side + 1), stride))
  if starts[-1] + side < length:
    starts.append(length - side)
  return starts


def moving_boxes(frame, other) -> list:
  """Boxes of the regions that move on their own between `frame` and `other` (the training
  views' motion detector), widened by MOTION_MARGIN: [(x0, y0, x1, y1)]."""
  change, factor = motion.motion_map(frame, other)
  mask = motion.moving_mask(change, factor, frame.shape[:2]) > 0.5
  regions, _ = ndimage.label(mask)
  boxes = []
  for rows, cols in ndimage.find_objects(regions):
    x0, x1, y0, y1 = cols.start, cols.stop, rows.start, rows.stop
    if max(x1 - x0, y1 - y0) < MIN_REGION_SIDE:
      continue
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, MOTION_MARGIN * max(x1 - x0, y1 - y0) / 2
    boxes.append((cx - half, cy - half, cx + half, cy + half))
  return boxes


def square_crop(frame: np.ndarray, box, size: int) -> np.ndarray:
  """The square of side max(box width, height) centred on `box` (frame edges repeated where
  it sticks out), resized bilinearly to size x size."""
  x0, y0, x1, y1 = box
  side = max(1, int(round(max(x1 - x0, y1 - y0))))
  left, top = int(round((x0 + x1 - side) / 2)), int(round((y0 + y1 - side) / 2))
  rows = np.clip(np.arange(top, top + side), 0, frame.shape[0] - 1)
  cols = np.clip(np.arange(left, left + side), 0, frame.shape[1] - 1)
  return resize_square(frame[rows[:, None], cols[None, :]], size)


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
  if image.shape[:2] == (size, size):
    return image
  return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def iou(box, boxes) -> np.ndarray:
  """Intersection over union of one box (x0, y0, x1, y1) with each row of boxes [n, 4]."""
  boxes = np.asarray(boxes, np.float64)
  x0 = np.maximum(box[0], boxes[:, 0])
  y0 = np.maximum(box[1], boxes[:, 1])
  x1 = np.minimum(box[2], boxes[:, 2])
  y1 = np.minimum(box[3], boxes[:, 3])
  inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
  area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
  return inter / np.maximum(area(np.asarray(box, np.float64)) + area(boxes) - inter, 1e-9)


def frame_regions(source, video: int, t: int, frame, kinds, grid_scales):
  """[(kind, box, crop source image)] for a kept frame: the whole frame, then its regions."""
  height, width = frame.shape[:2]
  regions = [('frame', (0.0, 0.0, float(width), float(height)))]
  if 'grid' in kinds:
    regions += [('grid', box) for box in grid_boxes(height, width, grid_scales)]
  if 'motion' in kinds:
    gap = max(1, int(round(MOTION_GAP_SECONDS * frame_rate(source, video))))
    last = source.num_frames(video) - 1
    other_t = t + gap if t + gap <= last else max(0, t - gap)
    if other_t != t:
      regions += [('motion', box) for box in moving_boxes(frame, source.frame(video, other_t))]
  return regions


def region_image(frame, kind: str, box, size: int) -> np.ndarray:
  """What the encoder sees of a region: the whole frame squeezed to a square, or its crop."""
  return resize_square(frame, size) if kind == 'frame' else square_crop(frame, box, size)
