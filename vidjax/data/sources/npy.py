"""npy:DIR: every N x H x W x 3 uint8 .npy file under DIR is one video, memory-mapped.

Arrays store no frame rate: fps() is config.data.fps, or DEFAULT_FPS when that is 0.
"""
import collections

import numpy as np

from vidjax.data.sources import base


class NpyArrays(base.FileSource):
  """Each reading thread keeps up to _MAX_OPEN arrays memory-mapped, least recently used
  dropped first."""

  _MAX_OPEN = 64  # Each memmap holds a file descriptor.

  def __init__(self, paths, fps, frame_size):
    usable, skipped = base.probe_all(paths, _probe_npy)
    self.frame_size = frame_size
    super().__init__([path for path, _ in usable], [shape[0] for _, shape in usable],
                     fps or base.DEFAULT_FPS,
                     [base.scaled_size(h, w, frame_size) for _, (_, h, w, _) in usable],
                     skipped)
    self._arrays = base.PerThread(collections.OrderedDict)

  def _array(self, video: int):
    arrays = self._arrays.get()
    array = arrays.get(video)
    if array is None:
      array = arrays[video] = np.load(self.paths[video], mmap_mode='r')
      if len(arrays) > self._MAX_OPEN:
        arrays.popitem(last=False)
    arrays.move_to_end(video)
    return array

  def frame(self, video: int, t: int) -> np.ndarray:
    self._check(video, t)
    return base.resize(np.array(self._array(video)[t]), self._sizes[video])


def _probe_npy(path):
  """The array's shape, if it is a non-empty N x H x W x 3 uint8 array."""
  try:
    array = np.load(path, mmap_mode='r')  # Reads the header only.
  except (OSError, ValueError, EOFError) as e:
    raise base.Unreadable(f'not a readable .npy file: {e}') from None
  if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3 or not array.size:
    raise base.Unreadable(f'array of shape {array.shape} and dtype {array.dtype}; expected '
                          'N x H x W x 3 uint8')
  return array.shape
