"""Frame sources: random access to frames by (video, frame index); `open_source(spec)`.

Spec strings (config.data.train), one module each:
  synthetic[:FAMILY] the embedded synthetic world (config.synthetic), of one of    world.py
                     world.FAMILIES (default textures)
  videos:DIR         every video file under DIR, decoded with PyAV and resampled  videos.py
                     to config.data.fps (0 = each video's own rate)
  frames:DIR         every folder of images under DIR is one video                frames.py
  npy:DIR            every N x H x W x 3 uint8 .npy file under DIR, memory-mapped npy.py
  arrayrecord:DIR    the output of `python -m vidjax.prepare`                     arrayrecord.py
  tfds:NAME[:SPLIT]  a prepared TFDS video dataset, without TensorFlow            tfds.py
The interface every source offers is in base.py. File sources resize frames so the shorter
side is config.data.frame_size (0 = as stored).

Bad input never stops a run mid-epoch: unreadable files are left out at open time with a
warning, and a frame found broken later is replaced by a readable neighbour. A missing or
empty folder, or one where nothing is readable, is a ConfigError at open time.
"""
import os

from absl import logging

from vidjax.data.sources import base, world
from vidjax.data.sources.frames import FrameFolders
from vidjax.data.sources.npy import NpyArrays
from vidjax.data.sources.world import SyntheticWorld
from vidjax.errors import ConfigError

SOURCE_KINDS = ('synthetic[:FAMILY]', 'videos:DIR', 'frames:DIR', 'npy:DIR', 'arrayrecord:DIR',
                'tfds:NAME[:SPLIT]')
_EXPECTED = {
    'videos': f'video files ({", ".join(e[1:] for e in base.VIDEO_EXTENSIONS)})',
    'frames': f'folders of images ({", ".join(e[1:] for e in base.IMAGE_EXTENSIONS)})',
    'npy': 'N x H x W x 3 uint8 .npy files',
    'arrayrecord': 'frames prepared by python -m vidjax.prepare',
}


def world_family(spec: str, where: str) -> str:
  """The family of the embedded world that a 'synthetic[:FAMILY]' spec names."""
  family = spec.partition(':')[2] or 'textures'
  if family not in world.FAMILIES:
    raise ConfigError(f'{where}: unknown world family {family!r}; expected synthetic or '
                      f'synthetic:FAMILY with FAMILY one of {", ".join(world.FAMILIES)}')
  return family


def open_source(spec: str, config, where: str = '', keyframes_only: bool = False):
  """The frame source named by a spec string such as 'synthetic' or 'videos:/data/clips'.

  where: how errors name the spec (default config.data.train=...); keyframes_only: decode
  only the keyframes of video files.
  """
  kind, _, root = spec.partition(':')
  where = where or f'config.data.train={spec!r}'
  if keyframes_only and kind != 'videos':
    raise ConfigError(f'{where}: keyframes only applies to videos:DIR sources, not {kind}')
  if kind == 'synthetic':
    return SyntheticWorld(split='train', family=world_family(spec, where), **config.synthetic)
  # PyAV, ArrayRecord and TFDS (slow to import) load only when their kind of source is used.
  if kind == 'tfds':
    from vidjax.data.sources.tfds import open_tfds
    return open_tfds(root, config, where)
  if kind not in _EXPECTED:
    raise ConfigError(f'{where}: unknown source kind {kind!r}; expected one of: '
                      f'{", ".join(SOURCE_KINDS)}')
  if not root:
    raise ConfigError(f'{where}: no folder given; expected {kind}:DIR')
  root = os.path.expanduser(root)
  if not os.path.isdir(root):
    problem = 'is not a folder' if os.path.exists(root) else 'does not exist'
    raise ConfigError(f'{where}: {root} {problem}; expected a folder of {_EXPECTED[kind]}')
  fps, frame_size = config.data.fps or 0, config.data.frame_size or 0
  if kind == 'videos':
    from vidjax.data.sources.videos import VideoFiles
    source = VideoFiles(base.find_files(root, base.VIDEO_EXTENSIONS), fps, frame_size,
                        keyframes_only)
  elif kind == 'arrayrecord':
    from vidjax.data.sources.arrayrecord import open_prepared
    source = open_prepared(root, frame_size, where)
  elif kind == 'frames':
    source = FrameFolders(base.find_frame_folders(root), fps, frame_size)
  else:
    source = NpyArrays(base.find_files(root, ('.npy',)), fps, frame_size)
  if not len(source):
    if not source.skipped:
      raise ConfigError(f'{where}: no {_EXPECTED[kind]} under {root}')
    path, reason = source.skipped[0]
    raise ConfigError(f'{where}: none of the {len(source.skipped)} candidates under {root} '
                      f'is readable (e.g. {path}: {reason}); expected {_EXPECTED[kind]}')
  if source.skipped:
    logging.warning('%s: using %d videos, skipped %d unreadable (listed in source.skipped)',
                    where, len(source), len(source.skipped))
  return source
