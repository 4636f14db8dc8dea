"""What every file source shares: the source interface, file discovery, open-time probing,
resizing, and the per-thread readers that let Grain workers and threads read in parallel.

A frame source is an object with
  __len__()               number of videos
  num_frames(video)       frames in that video
  frame(video, t)         HxWx3 uint8
  video_name(video)       a human-readable id (path, or synthetic/train/00012)
and is picklable, so Grain worker processes can read from it. File sources also have
  fps(video)              frames per second of the frame index t
  timestamp(video, t)     seconds from the first frame to frame t
  size(video)             (height, width) of its frames
  skipped                 [(path, reason)]: files left out at open time or found unreadable
"""
import collections
import concurrent.futures
import os
import re
import threading

import numpy as np
from absl import logging
from PIL import Image

VIDEO_EXTENSIONS = ('.mp4', '.mov', '.avi', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg', '.ts',
                    '.flv', '.wmv')
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')
DEFAULT_FPS = 30.0
IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
_OPEN_THREADS = 8  # Open-time probing is mostly file I/O and C code that releases the GIL.


class Unreadable(Exception):
  """A file that cannot be used; the message says why."""


class PerThread:
  """One value per thread, made by `make()` on first use in that thread, never pickled.

  Open files, readers and decoders cannot cross into a Grain worker process, and one
  decoder must not serve two threads at once: each thread of each process makes its own.
  """

  def __init__(self, make=dict):
    self._make = make
    self._local = threading.local()

  def get(self):
    try:
      return self._local.value
    except AttributeError:
      value = self._local.value = self._make()
      return value

  def __getstate__(self):
    return {'make': self._make}

  def __setstate__(self, state):
    self.__init__(state['make'])


def natural_key(path: str):
  """Sort key putting frame_2 before frame_10."""
  return [int(part) if part.isdigit() else part.lower() for part in re.split(r'(\d+)', path)]


def scaled_size(height: int, width: int, frame_size):
  """(height, width) with the shorter side frame_size: only ever smaller (unchanged when
  frame_size is 0 or None, or not below the shorter side), since enlarging adds pixels to
  decode, resize and search for motion but nothing to see."""
  if not frame_size or frame_size >= min(height, width):
    return height, width
  scale = frame_size / min(height, width)
  return max(1, round(height * scale)), max(1, round(width * scale))


def thumbnail(frame: np.ndarray) -> np.ndarray:
  """The near-duplicate descriptor (vidjax.prepare --dedup, the index): a 16x16 grey
  thumbnail in [0, 1]."""
  grey = Image.fromarray(frame).convert('L').resize((16, 16), Image.BILINEAR)
  return np.asarray(grey, np.float32) / 255


def resize(frame: np.ndarray, size) -> np.ndarray:
  """HxWx3 uint8 resized to `size` (height, width); PIL's bilinear filter antialiases."""
  if frame.shape[:2] == tuple(size):
    return frame
  return np.asarray(Image.fromarray(frame).resize(size[::-1], Image.BILINEAR))


def probe_all(paths, probe):
  """([(path, probe(path))] for the usable files, [(path, reason)] for the others)."""
  with concurrent.futures.ThreadPoolExecutor(_OPEN_THREADS) as pool:
    futures = [pool.submit(probe, path) for path in paths]
  usable, skipped = [], []
  for path, future in zip(paths, futures):
    try:
      usable.append((path, future.result()))
    except Unreadable as e:
      logging.warning('skipping %s: %s', path, e)
      skipped.append((path, str(e)))
  return usable, skipped


def find_files(root: str, extensions) -> list:
  """Every file under root whose name ends with one of `extensions`, in natural order."""
  return sorted((os.path.join(dirpath, name) for dirpath, _, names in os.walk(root)
                 for name in names if name.lower().endswith(extensions)), key=natural_key)


def find_frame_folders(root: str) -> dict:
  """{folder: its image files in natural order} for every folder under root holding images."""
  folders = collections.defaultdict(list)
  for path in find_files(root, IMAGE_EXTENSIONS):
    folders[os.path.dirname(path)].append(path)
  return dict(folders)


class FileSource:
  """What the file sources share: names, frame rate, size, the skipped-file list."""

  def __init__(self, paths, frame_counts, fps, sizes, skipped):
    self.paths = list(paths)
    self._sizes = [None if size is None else tuple(size) for size in sizes]
    self._frame_counts = np.asarray(frame_counts, np.int64)
    self._fps = np.broadcast_to(np.asarray(fps, np.float64), (len(self.paths),)).copy()
    self.skipped = list(skipped)

  def __len__(self) -> int:
    return len(self.paths)

  def num_frames(self, video: int) -> int:
    return int(self._frame_counts[video])

  def fps(self, video: int) -> float:
    return float(self._fps[video])

  def video_name(self, video: int) -> str:
    return self.paths[video]

  def timestamp(self, video: int, t: int) -> float:
    """Seconds from the video's first frame to frame t."""
    return t / self.fps(video)

  def size(self, video: int) -> tuple:
    """(height, width) of the frames it returns."""
    return self._sizes[video]

  def source_position(self, video: int, t: int) -> int:
    """Which frame of the stored file frame t is (they differ once a video is resampled)."""
    return t

  def _check(self, video: int, t: int):
    if not 0 <= t < self._frame_counts[video]:
      raise IndexError(f'frame {t} of {self.paths[video]} (it has '
                       f'{self._frame_counts[video]} frames)')
