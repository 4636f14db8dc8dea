"""arrayrecord:DIR: frames prepared by `python -m vidjax.prepare`; the layout, its reader
(the source) and its writer, so that the format is written and read in one place.

OUT/
  prepare.json                 the options the frames were prepared with
  shards/shard-00000.array_record   frames, one record each (group_size:1, so any record is
                               read without decoding its neighbours): JPEG, or with
                               --codec=raw the uint8 pixels (10-20x the disk, no decoding)
  shards/shard-00000.json      that shard's videos: source path, frame rate, size, and per
                               kept frame its index in the source and its timestamp
  shards/shard-00000.motion.npz  per record, where it changes before the video's next frame
                               (motion.pooled_motion_map; zeros for a video's last frame):
                               what the default motion anchors draw from, computed once
                               here instead of for every training sample
  index.json, index.npz        all shards' videos, and per frame (video, frame_index,
                               timestamp): the consolidated index the source reads
  report.json                  the last run's report (frames kept/dropped, files skipped)

A video's frames are consecutive records of one shard. A shard counts as finished only once
its .json exists; both are written under a temporary name and renamed, so a crash never
leaves a half-written file under a final name. Its motion file is written after it, the
same way; a shard without one (a crash between the two, or prepared before motion files
existed) is read with the anchors computed per sample, and a re-run of prepare adds it.
"""
import io
import json
import os
import zipfile

import numpy as np
from array_record.python import array_record_module
from PIL import Image

from vidjax import atomic
from vidjax.data import motion
from vidjax.data.sources import base
from vidjax.errors import ConfigError

SHARDS = 'shards'
# Random access: one record per chunk. Uncompressed: JPEG does not shrink further, and
# raw frames read 4x faster than through the default brotli (which saves a third of them).
RECORD_OPTIONS = 'group_size:1,uncompressed'
READ_OPTIONS = 'readahead_buffer_size:0,max_parallelism:0'
CODECS = ('jpeg', 'raw')
_MOTION_CHUNK = 128  # Records read at once while mapping motion.


def encode_frame(frame: np.ndarray, codec: str, quality: int) -> bytes:
  if codec == 'raw':
    return np.ascontiguousarray(frame, np.uint8).tobytes()
  buffer = io.BytesIO()
  Image.fromarray(frame).save(buffer, 'JPEG', quality=quality)
  return buffer.getvalue()


def decode_frame(record: bytes, codec: str, stored_hw, draft_hw=None) -> np.ndarray:
  """HxWx3 uint8 of one record; draft_hw lets JPEG decode straight to a smaller scale."""
  if codec == 'raw':
    return np.frombuffer(record, np.uint8).reshape(*stored_hw, 3)
  with Image.open(io.BytesIO(record)) as image:
    if draft_hw:
      image.draft('RGB', tuple(draft_hw[::-1]))
    return np.asarray(image.convert('RGB'))


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


def npz_bytes(**arrays) -> bytes:
  """np.savez's file, but the same bytes for the same arrays (np.savez stamps each member
  with the time of writing), so that serial and worker runs write identical folders."""
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, 'w') as archive:
    for name, array in arrays.items():
      member = io.BytesIO()
      np.save(member, array)
      archive.writestr(zipfile.ZipInfo(f'{name}.npy'), member.getvalue())  # Dated 1980.
  return buffer.getvalue()


def motion_path(root: str, number: int) -> str:
  return shard_path(root, number, '.motion.npz')


def write_motion(task) -> int:
  """(root, shard number, its videos, codec) -> frames mapped: the shard's motion file, each
  frame's pooled motion map against the next frame of its video."""
  root, number, videos, codec = task
  reader = array_record_module.ArrayRecordReader(shard_path(root, number, '.array_record'),
                                                 READ_OPTIONS)
  maps, cells = [], []
  try:
    for video in videos:
      count, first = len(video['frame_index']), video['first_record']
      hw = (video['height'], video['width'])
      previous = None
      # In chunks, two frames decoded at a time: a video may be hours long.
      for start in range(first, first + count, _MOTION_CHUNK):
        for record in reader.read(list(range(start, min(start + _MOTION_CHUNK, first + count)))):
          frame = decode_frame(record, codec, hw)
          if previous is not None:
            change, cell = motion.pooled_motion_map(previous, frame)
            maps.append(change)
            cells.append(cell)
          previous = frame
      change, cell = motion.pooled_motion_map(previous, previous)  # The last: all zeros.
      maps.append(change)
      cells.append(cell)
  finally:
    reader.close()
  atomic.write_bytes(motion_path(root, number), npz_bytes(
      maps=np.concatenate([m.ravel() for m in maps]).astype(np.float16),
      offsets=np.cumsum([0] + [m.size for m in maps]),
      shapes=np.asarray([m.shape for m in maps], np.int32).reshape(-1, 2),
      cell=np.asarray(cells, np.int32)))
  return len(maps)


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
  concat = lambda arrays, dtype: np.concatenate(arrays) if arrays else np.zeros(0, dtype)
  atomic.write_bytes(os.path.join(root, 'index.npz'), npz_bytes(
      video=concat(frame_video, np.int32), frame_index=concat(frame_index, np.int64),
      timestamp=concat(timestamp, np.float64)))
  atomic.write_json(os.path.join(root, 'index.json'), {'videos': videos})


def discard_unfinished(root: str):
  """Removes temporary files and shards without their .json: the leftovers of a crash."""
  folder = os.path.join(root, SHARDS)
  names = set(os.listdir(folder))
  for name in names:
    stem, extension = os.path.splitext(name)
    unfinished = extension == '.array_record' and stem + '.json' not in names
    orphan = name.endswith('.motion.npz') and name[:-len('.motion.npz')] + '.json' not in names
    if extension == '.tmp' or unfinished or orphan:
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
    self._stored_hw = [(v['height'], v['width']) for v in videos]
    with open(os.path.join(root, 'prepare.json')) as f:
      self.codec = json.load(f).get('codec', 'jpeg')  # Folders from before --codec: JPEG.
    self._motion = {}  # shard number -> its motion file's arrays (None: it has none)

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
    size = self.size(video)
    return base.resize(decode_frame(record, self.codec, self._stored_hw[video], size), size)

  def motion(self, video: int, t0: int, t1: int):
    """(where the frames change from t0 to t1, its cell side in the frames' pixels): the
    stored maps of the frames between them summed, or None when the shard has none."""
    shard = int(self._shard[video])
    if shard not in self._motion:  # Threads may both load it; either copy will do.
      path = motion_path(self.root, shard)
      self._motion[shard] = dict(np.load(path)) if os.path.isfile(path) else None
    stored = self._motion[shard]
    if stored is None:
      return None
    early, late = sorted((t0, t1))
    first = int(self._first_record[video]) + early
    records = range(first, first + max(late - early, 1))  # t0 == t1: that frame's map.
    rows, cols = stored['shapes'][records[0]]
    offsets = stored['offsets']
    change = sum(stored['maps'][offsets[r]:offsets[r + 1]].astype(np.float32)
                 for r in records).reshape(rows, cols)
    scale = self.size(video)[0] / self._stored_hw[video][0]
    return change, float(stored['cell'][records[0]]) * scale

  def __getstate__(self):
    return {**self.__dict__, '_motion': {}}  # Each Grain worker loads what it reads.


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
