"""arrayrecord:DIR: frames prepared by `python -m vidjax.prepare`; the layout, its reader
(the source) and its writer, so that the format is written and read in one place.

OUT/
  prepare.json                 the options the frames were prepared with
  shards/shard-00000.array_record   JPEG-encoded frames, one record each (group_size:1, so
                               any record is read without decoding its neighbours)
  shards/shard-00000.json      that shard's videos: source path, frame rate, size, and per
                               kept frame its index in the source and its timestamp
  index.json, index.npz        all shards' videos, and per frame (video, frame_index,
                               timestamp): the consolidated index the source reads
  report.json                  the last run's report (frames kept/dropped, files skipped)

A video's frames are consecutive records of one shard. A shard counts as finished only once
its .json exists; both are written under a temporary name and renamed, so a crash never
leaves a half-written file under a final name.
"""
import io
import json
import os

import numpy as np
from array_record.python import array_record_module
from PIL import Image

from vidjax import atomic
from vidjax.data.sources import base
from vidjax.errors import ConfigError

SHARDS = 'shards'
RECORD_OPTIONS = 'group_size:1'  # Random access: one record per chunk.
READ_OPTIONS = 'readahead_buffer_size:0,max_parallelism:0'


def shard_path(root: str, number: int, suffix: str) -> str:
  return os.path.join(root, SHARDS, f'shard-{number:05d}{suffix}')


def finished_shards(root: str) -> list:
  """[(number, its videos)] for every shard whose .json was written, in shard order."""
  folder = os.path.join(root, SHARDS)
  names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
  shards = []
  for name in names:
    if name.startswith('shard-') and name.endswith('.json'):
      number = int(name[len('shard-'):-len('.json')])
      with open(os.path.join(folder, name)) as f:
        shards.append((number, json.load(f)['videos']))
  return shards


def write_index(root: str):
  """index.json (per video) + index.npz (per frame) from the finished shards."""
  videos, frame_video, frame_index, timestamp = [], [], [], []
  for number, shard_videos in finished_shards(root):
    for video in shard_videos:
      frame_video.append(np.full(len(video['frame_index']), len(videos), np.int32))
      frame_index.append(np.asarray(video['frame_index'], np.int64))
      timestamp.append(np.asarray(video['timestamp'], np.float64))
      videos.append({k: v for k, v in video.items() if k not in ('frame_index', 'timestamp')}
                    | {'shard': number, 'num_frames': len(video['frame_index'])})
  buffer = io.BytesIO()
  concat = lambda arrays, dtype: np.concatenate(arrays) if arrays else np.zeros(0, dtype)
  np.savez(buffer, video=concat(frame_video, np.int32), frame_index=concat(frame_index, np.int64),
           timestamp=concat(timestamp, np.float64))
  atomic.write_bytes(os.path.join(root, 'index.npz'), buffer.getvalue())
  atomic.write_json(os.path.join(root, 'index.json'), {'videos': videos})


def discard_unfinished(root: str):
  """Removes temporary files and shards without their .json: the leftovers of a crash."""
  folder = os.path.join(root, SHARDS)
  names = set(os.listdir(folder))
  for name in names:
    stem, extension = os.path.splitext(name)
    if extension == '.tmp' or extension == '.array_record' and stem + '.json' not in names:
      os.remove(os.path.join(folder, name))


class ShardWriter:
  """Appends frames to the open shard; closes it (rename, then its .json) when full."""

  def __init__(self, root: str, number: int, shard_frames: int):
    self.root, self.number, self.shard_frames = root, number, shard_frames
    self.writer, self.records, self.videos = None, 0, []

  def add_frame(self, jpeg: bytes):
    if self.writer is None:
      self.writer = array_record_module.ArrayRecordWriter(
          shard_path(self.root, self.number, '.array_record.tmp'), RECORD_OPTIONS)
      self.records, self.videos = 0, []
    self.writer.write(jpeg)
    self.records += 1

  def add_video(self, video: dict):
    """Ends a video whose frames were the last len(video['frame_index']) added."""
    video['first_record'] = self.records - len(video['frame_index'])
    self.videos.append(video)
    if self.records >= self.shard_frames:
      self.close()

  def close(self):
    if self.writer is None:
      return
    self.writer.close()
    self.writer = None
    stem = shard_path(self.root, self.number, '')
    os.replace(stem + '.array_record.tmp', stem + '.array_record')
    atomic.write_json(stem + '.json', {'videos': self.videos}, indent=None)
    self.number += 1

  def abandon(self):
    """Closes an unfinished shard, which stays under its temporary name."""
    if self.writer is not None:
      self.writer.close()
      self.writer = None


class ArrayRecordFrames(base.FileSource):
  """arrayrecord:DIR: frames prepared by `python -m vidjax.prepare` (see the module docstring).

  Frames are stored at the prepared size; config.data.frame_size resizes them on reading
  when it differs. Timestamps come from the index, so with near-duplicate removal the frame
  index counts kept frames, not time.
  """

  def __init__(self, root: str, frame_size: int):
    with open(os.path.join(root, 'index.json')) as f:
      videos = json.load(f)['videos']
    with np.load(os.path.join(root, 'index.npz')) as frames:
      self._frame_video = frames['video']
      self._timestamp = frames['timestamp']
      self._frame_index = frames['frame_index']
    self.root = root
    self._shard = np.asarray([v['shard'] for v in videos], np.int64)
    self._first_record = np.asarray([v['first_record'] for v in videos], np.int64)
    counts = [v['num_frames'] for v in videos]
    self._first_frame = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    super().__init__([v['path'] for v in videos], counts, [v['fps'] for v in videos],
                     [base.scaled_size(v['height'], v['width'], frame_size) for v in videos],
                     [])
    self._readers = base.PerThread(dict)  # shard number -> ArrayRecordReader

  def timestamp(self, video: int, t: int) -> float:
    return float(self._timestamp[self._first_frame[video] + t])

  def source_position(self, video: int, t: int) -> int:
    return int(self._frame_index[self._first_frame[video] + t])

  def _reader(self, shard: int):
    readers = self._readers.get()
    if shard not in readers:
      readers[shard] = array_record_module.ArrayRecordReader(
          shard_path(self.root, shard, '.array_record'), READ_OPTIONS)
    return readers[shard]

  def frame(self, video: int, t: int) -> np.ndarray:
    self._check(video, t)
    record = self._reader(int(self._shard[video])).read([int(self._first_record[video] + t)])[0]
    height, width = self.size(video)
    with Image.open(io.BytesIO(record)) as image:
      image.draft('RGB', (width, height))  # JPEG decodes straight to a smaller scale.
      pixels = np.asarray(image.convert('RGB'))
    return base.resize(pixels, (height, width))


def open_prepared(root: str, frame_size: int, where: str):
  """The arrayrecord: source, or a ConfigError when root holds no prepared index."""
  if not os.path.isfile(os.path.join(root, 'index.json')):
    raise ConfigError(f'{where}: {root} has no index.json; expected the output folder of '
                      'python -m vidjax.prepare')
  source = ArrayRecordFrames(root, frame_size)
  missing = sorted({shard_path(root, int(s), '.array_record') for s in source._shard
                    if not os.path.isfile(shard_path(root, int(s), '.array_record'))})
  if missing:
    raise ConfigError(f'{where}: {len(missing)} shard files its index lists are missing (e.g. '
                      f'{missing[0]}); re-run python -m vidjax.prepare on it')
  return source
