"""frames:DIR: every folder under DIR that holds images is one video, its frames in natural
name order (frame_2 before frame_10).

Folders store no frame rate: fps() is config.data.fps, or DEFAULT_FPS when that is 0; the
frames are never resampled. A frame image found broken while training is replaced by its
nearest readable neighbour (and added to `skipped` in the process that read it).
"""
import numpy as np
from absl import logging
from PIL import Image

from vidjax.data.sources import base


class FrameFolders(base.FileSource):
  """`folders` maps a folder to its frame files in order (base.find_frame_folders)."""

  def __init__(self, folders: dict, fps, frame_size):
    self.frame_size = frame_size

    def probe(folder):
      """The output size, from the first of the folder's first few images that decodes."""
      for path in folders[folder][:5]:
        try:
          with Image.open(path) as image:
            image.load()
            width, height = image.size
          return base.scaled_size(height, width, frame_size)
        except base.IMAGE_ERRORS as e:
          error = e
      raise base.Unreadable(f'none of its first {min(5, len(folders[folder]))} images '
                            f'decodes: {error}')

    usable, skipped = base.probe_all(sorted(folders, key=base.natural_key), probe)
    self._files = [folders[folder] for folder, _ in usable]
    super().__init__([folder for folder, _ in usable], [len(f) for f in self._files],
                     fps or base.DEFAULT_FPS, [size for _, size in usable], skipped)
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
      except base.IMAGE_ERRORS as e:
        logging.warning('unreadable frame %s (using a neighbour): %s', files[i], e)
        self._broken.add(files[i])
        self.skipped.append((files[i], str(e)))
        continue
      return base.resize(pixels, size)
    return np.zeros(size + (3,), np.uint8)  # Every frame broke after the open-time check.
