"""Frame sources: random access to frames by (video, frame index).

Every source is an object with
  __len__()               number of videos
  num_frames(video)       frames in that video
  frame(video, t)         HxWx3 uint8
  video_name(video)       a human-readable id (path, or synthetic/train/00012)
and is picklable, so Grain worker processes can read from it. File sources also have
  fps(video)              frames per second of the frame index t
  timestamp(video, t)     seconds from the first frame to frame t
  size(video)             (height, width) of its frames
  skipped                 [(path, reason)]: files left out at open time or found unreadable

Spec strings (config.data.train):
  synthetic     the embedded synthetic world (config.synthetic)
  videos:DIR    every video file under DIR, decoded with PyAV and resampled to config.data.fps
                (0 = each video's own rate; see video_files.py)
  frames:DIR    every folder under DIR that holds images is one video, frames in natural name
                order (frame_2 before frame_10)
  npy:DIR       every N x H x W x 3 uint8 .npy file under DIR is one video, memory-mapped
  arrayrecord:DIR  the output of `python -m vidjax.prepare` (JPEG frames in ArrayRecord
                shards; vidjax/data/prepared.py)
  tfds:NAME[:SPLIT]  a prepared TFDS video dataset, without TensorFlow (tfds_source.py)
File sources resize frames so the shorter side is config.data.frame_size (0 = as stored).
frames: and npy: store no frame rate: fps() is config.data.fps, or DEFAULT_FPS (30) when that
is 0; their frames are never resampled.

Bad input never stops a run mid-epoch: unreadable files are left out at open time with a
warning; a frame image found broken later is replaced by its nearest readable neighbour
(and added to `skipped` in the process that read it). A missing or empty folder, or one
where nothing is readable, is a ConfigError at open time.
"""
import collections
import concurrent.futures
import os
import re
import threading

import numpy as np
from absl import logging
from PIL import Image

from vidjax.config_checks import ConfigError
from vidjax.data.synthetic import SyntheticWorld

SOURCE_KINDS = ('synthetic', 'videos:DIR', 'frames:DIR', 'npy:DIR', 'arrayrecord:DIR',
                'tfds:NAME[:SPLIT]')
VIDEO_EXTENSIONS = ('.mp4', '.mov', '.avi', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg', '.ts',
                    '.flv', '.wmv')
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')
DEFAULT_FPS = 30.0
_OPEN_THREADS = 8  # Open-time probing is mostly file I/O and C code that releases the GIL.
_IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class Unreadable(Exception):
  """A file that cannot be used; the message says why."""


def natural_key(path: str):
  """Sort key putting frame_2 before frame_10."""
  return [int(part) if part.isdigit() else part.lower() for part in re.split(r'(\d+)', path)]


def scaled_size(height: int, width: int, frame_size):
  """(height, width) with the shorter side frame_size (unchanged when it is 0 or None)."""
  if not frame_size:
    return height, width
  scale = frame_size / min(height, width)
  return max(1, round(height * scale)), max(1, round(width * scale))


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


class FrameFolders(FileSource):
  """frames:DIR: each folder of images is one video. See the module docstring.

  `folders` maps a folder to its frame files in order (find_frame_folders).
  """

  def __init__(self, folders: dict, fps, frame_size):
    self.frame_size = frame_size

    def probe(folder):
      """The output size, from the first of the folder's first few images that decodes."""
      for path in folders[folder][:5]:
        try:
          with Image.open(path) as image:
            image.load()
            width, height = image.size
          return scaled_size(height, width, frame_size)
        except _IMAGE_ERRORS as e:
          error = e
      raise Unreadable(f'none of its first {min(5, len(folders[folder]))} images decodes: '
                       f'{error}')

    usable, skipped = probe_all(sorted(folders, key=natural_key), probe)
    self._files = [folders[folder] for folder, _ in usable]
    super().__init__([folder for folder, _ in usable], [len(f) for f in self._files],
                     fps or DEFAULT_FPS, [size for _, size in usable], skipped)
    self._broken = set()

  def frame(self, video: int, t: int) -> np.ndarray:
    self._check(video, t)
    files = self._files[video]
    size = self._sizes[video]
    # The nearest readable frame: t, t-1, t+1, t-2, ...
    for offset in range(2 * len(files)):
      i = t + (offset + 1) // 2 * (1 if offset % 2 == 0 else -1)
      if not 0 <= i < len(files) or files[i] in self._broken:
        continue
      try:
        with Image.open(files[i]) as image:
          pixels = np.asarray(image.convert('RGB'))
      except _IMAGE_ERRORS as e:
        logging.warning('unreadable frame %s (using a neighbour): %s', files[i], e)
        self._broken.add(files[i])
        self.skipped.append((files[i], str(e)))
        continue
      return resize(pixels, size)
    return np.zeros(size + (3,), np.uint8)  # Every frame broke after the open-time check.


class NpyArrays(FileSource):
  """npy:DIR: one N x H x W x 3 uint8 .npy file per video, memory-mapped on first use."""

  _MAX_OPEN = 64  # Each memmap holds a file descriptor.

  def __init__(self, paths, fps, frame_size):
    usable, skipped = probe_all(paths, _probe_npy)
    self.frame_size = frame_size
    super().__init__([path for path, _ in usable], [shape[0] for _, shape in usable],
                     fps or DEFAULT_FPS,
                     [scaled_size(h, w, frame_size) for _, (_, h, w, _) in usable], skipped)
    self._reset()

  def _reset(self):
    self._arrays = collections.OrderedDict()
    self._lock = threading.Lock()

  def __getstate__(self):
    state = self.__dict__.copy()
    del state['_arrays'], state['_lock']  # Memmaps would pickle their whole contents.
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._reset()

  def _array(self, video: int):
    with self._lock:
      array = self._arrays.get(video)
      if array is None:
        array = self._arrays[video] = np.load(self.paths[video], mmap_mode='r')
        if len(self._arrays) > self._MAX_OPEN:
          self._arrays.popitem(last=False)
      self._arrays.move_to_end(video)
      return array

  def frame(self, video: int, t: int) -> np.ndarray:
    self._check(video, t)
    return resize(np.array(self._array(video)[t]), self._sizes[video])


def _probe_npy(path):
  """The array's shape, if it is a non-empty N x H x W x 3 uint8 array."""
  try:
    array = np.load(path, mmap_mode='r')  # Reads the header only.
  except (OSError, ValueError, EOFError) as e:
    raise Unreadable(f'not a readable .npy file: {e}') from None
  if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3 or not array.size:
    raise Unreadable(f'array of shape {array.shape} and dtype {array.dtype}; expected '
                     'N x H x W x 3 uint8')
  return array.shape


def open_source(spec: str, config):
  """The frame source named by a spec string such as 'synthetic' or 'videos:/data/clips'."""
  kind, _, root = spec.partition(':')
  if kind == 'synthetic':
    return SyntheticWorld(split='train', **config.synthetic)
  where = f'config.data.train={spec!r}'
  if kind == 'tfds':
    from vidjax.data.tfds_source import open_tfds  # TFDS is imported only when used.
    return open_tfds(root, config, where)
  expected = {'videos': f'video files ({", ".join(e[1:] for e in VIDEO_EXTENSIONS)})',
              'frames': f'folders of images ({", ".join(e[1:] for e in IMAGE_EXTENSIONS)})',
              'npy': 'N x H x W x 3 uint8 .npy files',
              'arrayrecord': 'frames prepared by python -m vidjax.prepare'}
  if kind not in expected:
    raise ConfigError(f'{where}: unknown source kind {kind!r}; expected one of: '
                      f'{", ".join(SOURCE_KINDS)}')
  if not root:
    raise ConfigError(f'{where}: no folder given; expected {kind}:DIR')
  root = os.path.expanduser(root)
  if not os.path.isdir(root):
    problem = 'is not a folder' if os.path.exists(root) else 'does not exist'
    raise ConfigError(f'{where}: {root} {problem}; expected a folder of {expected[kind]}')
  fps, frame_size = config.data.fps or 0, config.data.frame_size or 0
  if kind == 'videos':
    from vidjax.data.video_files import VideoFiles  # PyAV is only needed for videos.
    source = VideoFiles(find_files(root, VIDEO_EXTENSIONS), fps, frame_size)
  elif kind == 'arrayrecord':
    from vidjax.data.prepared import open_prepared
    source = open_prepared(root, frame_size, where)
  elif kind == 'frames':
    source = FrameFolders(find_frame_folders(root), fps, frame_size)
  else:
    source = NpyArrays(find_files(root, ('.npy',)), fps, frame_size)
  if not len(source):
    if not source.skipped:
      raise ConfigError(f'{where}: no {expected[kind]} under {root}')
    path, reason = source.skipped[0]
    raise ConfigError(f'{where}: none of the {len(source.skipped)} candidates under {root} '
                      f'is readable (e.g. {path}: {reason}); expected {expected[kind]}')
  if source.skipped:
    logging.warning('%s: using %d videos, skipped %d unreadable (listed in source.skipped)',
                    where, len(source), len(source.skipped))
  return source
