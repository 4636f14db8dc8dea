"""videos:DIR: every video file under DIR as a frame source, decoded with PyAV; and
`write_video`, which encodes frames as H.264 mp4.

Open time, per file: one demux pass (no decoding) lists every frame's timestamp and the
keyframes. Container frame counts are not trusted: a truncated mp4 still declares all its
frames. One frame is decoded to prove the file readable. Frame t of the resampled video is
the decoded frame nearest t / fps seconds (fps <= the native rate: never upsampled). The
scan reads every file once; its result is cached per file (keyed by path, size and
modification time; cache.py), so a collection opens at disk speed the first time and in
moments afterwards.

Reading: each reading thread keeps one forward decoding run (an open container, the decoder
position and the last KEEP decoded frames, still YUV). Frame t is served from the run when
it holds it, by decoding on when t lies ahead within reach, else by seeking to the last
keyframe at or before t. A sample's K frames lie within a few frames of each other and are
read one after another by one thread: one seek, one forward pass. Non-reference frames far
before t are not decoded at all, and only the frames asked for are converted (swscale,
area filter, straight to the output size). Decoding from the keyframe dominates the cost,
so long-GOP video is worth re-encoding (ffmpeg -g 16) or preparing (python -m
vidjax.prepare). With keyframes_only the video is its keyframes alone and nothing else is
decoded.

A frame that fails to decode during training is replaced by the nearest decoded one (or the
video's first frame), counted in `frame_errors` and logged once per file.
"""
import collections
import dataclasses
import fractions
import itertools
import os

import av
import numpy as np
from absl import logging

from vidjax.data.sources import base, cache

KEEP = 17  # Decoded frames each reading thread keeps, at most: covers |offsets| <= 8.
_OPEN_PER_THREAD = 2  # Open containers each reading thread keeps.
_DECODE_ERRORS = (av.FFmpegError, OSError, ValueError, EOFError)


@dataclasses.dataclass
class _Index:
  pts: np.ndarray  # int64 [frames]: sorted presentation timestamps, stream time base.
  keyframes: np.ndarray  # int64: sorted timestamps of the keyframes.
  picks: np.ndarray  # int32 [resampled frames]: resampled frame t -> position in pts.
  numbers: np.ndarray  # int64 [resampled frames]: frame t's number among all the file's.
  seconds: np.ndarray  # float64 [resampled frames]: time of frame t from the first frame.
  fps: float  # Of the resampled frames.
  size: tuple  # Output (height, width).

  def __post_init__(self):
    self.is_pick = np.zeros(len(self.pts), bool)
    self.is_pick[self.picks] = True
    self.key_positions = np.searchsorted(self.pts, self.keyframes)

  def keyframe_at(self, position: int) -> int:
    """Position of the last keyframe at or before `position`."""
    i = np.searchsorted(self.key_positions, position, 'right') - 1
    return int(self.key_positions[max(i, 0)])


def _probe(path: str, fps: float, frame_size: int, keyframes_only: bool = False) -> _Index:
  try:
    with av.open(path) as container:
      if not container.streams.video:
        raise base.Unreadable('no video stream')
      stream = container.streams.video[0]
      stamps, keys = [], []
      for packet in container.demux(stream):
        stamp = packet.pts if packet.pts is not None else packet.dts
        if packet.size and stamp is not None and not packet.is_discard:
          stamps.append(stamp)
          if packet.is_keyframe:
            keys.append(stamp)
      if not stamps:
        raise base.Unreadable('no video frames')
      pts = np.unique(np.asarray(stamps, np.int64))
      keyframes = np.unique(np.asarray(keys, np.int64)) if keys else pts[:1]
      numbers = np.arange(len(pts))
      if keyframes_only:
        numbers = np.searchsorted(pts, keyframes)
        pts = keyframes
      container.seek(int(keyframes[0]), stream=stream, backward=True)
      first = next(container.decode(stream), None)
      if first is None:
        raise base.Unreadable('no frame decodes')
      native = 0.0 if keyframes_only else float(stream.average_rate or 0)
      time_base = float(stream.time_base)
  except _DECODE_ERRORS as e:
    raise base.Unreadable(f'cannot decode: {e}') from None
  times = (pts - pts[0]) * time_base
  if native <= 0:
    native = (len(pts) - 1) / times[-1] if len(pts) > 1 and times[-1] > 0 else base.DEFAULT_FPS
  if not fps or fps >= native * (1 - 1e-3):
    picks, fps = np.arange(len(pts)), native
  else:
    duration = times[-1] + 1 / native
    wanted = np.arange(max(1, int(np.floor(duration * fps + 1e-6)))) / fps
    picks = _nearest(times, wanted)
    if keyframes_only:
      picks = np.unique(picks)  # Irregular keyframes: one may be nearest to several times.
  return _Index(pts, keyframes, picks.astype(np.int32), numbers[picks], times[picks], fps,
                base.scaled_size(first.height, first.width, frame_size))


def _nearest(sorted_values: np.ndarray, queries) -> np.ndarray:
  """Positions in sorted_values of the values nearest each query (ties: the earlier)."""
  if len(sorted_values) == 1:
    return np.zeros(np.shape(queries), np.int64)
  right = np.clip(np.searchsorted(sorted_values, queries), 1, len(sorted_values) - 1)
  left = right - 1
  return np.where(queries - sorted_values[left] <= sorted_values[right] - queries, left, right)


def _packets_from(container, stream, start: int, keyframes):
  """Demuxed packets of `stream` from a keyframe at or before timestamp `start` on."""
  container.seek(start, stream=stream, backward=True)
  packets = container.demux(stream)
  first = next(packets, None)
  stamp = None if first is None else first.pts if first.pts is not None else first.dts
  if stamp is None or stamp <= start:
    return itertools.chain([first] if first is not None else [], packets)
  # Imprecise seeking (MPEG-TS) landed past the keyframe: go back one more keyframe (the
  # frames before `start` are dropped, so it does not matter where exactly this lands).
  earlier = keyframes[keyframes < start]
  if len(earlier):
    container.seek(int(earlier[-1]), stream=stream, backward=True)
  else:
    container.seek(0)  # The beginning of the file.
  return container.demux(stream)


class VideoFiles(base.FileSource):
  """Every video file under a folder; see the module docstring."""

  def __init__(self, paths, fps: float, frame_size: int, keyframes_only: bool = False):
    def probe(path):
      return cache.cached('videos', (cache.file_stamp(path), fps, frame_size, keyframes_only,
                                       'downscale only'),
                          lambda: _probe(path, fps, frame_size, keyframes_only))

    usable, skipped = base.probe_all(paths, probe)
    self.keyframes_only = keyframes_only
    self.frame_size = frame_size
    self._index = [index for _, index in usable]
    super().__init__([path for path, _ in usable], [len(i.picks) for i in self._index],
                     [i.fps for i in self._index], [i.size for i in self._index], skipped)
    self.frame_errors = collections.Counter()  # path -> frames replaced by a neighbour.
    # Per reading thread: 'run' (the forward decoding run) and 'containers' (open files).
    self._decoding = base.PerThread(dict)

  def timestamp(self, video: int, t: int) -> float:
    return float(self._index[video].seconds[t])

  def source_position(self, video: int, t: int) -> int:
    return int(self._index[video].numbers[t])

  def frame(self, video: int, t: int) -> np.ndarray:
    self._check(video, t)
    index = self._index[video]
    want = int(index.picks[t])
    run = self._run()
    if run.get('video') != video or want not in run['frames'] and not (
        run['position'] < want and run['position'] >= index.keyframe_at(want) - 1):
      self._start_run(video, want)
    # Frames no sample will ask for need not be decoded unless other frames refer to them.
    run['skip_before'] = index.pts[index.picks[max(0, t - KEEP // 2)]]
    if want not in run['frames']:
      self._decode_to(want)
    frames = run['frames']
    if want not in frames:
      self._count_error(video, f'frame {t} did not decode')
      if not frames:
        self._start_run(video, 0)
        run['skip_before'] = -2**62
        self._decode_to(0)
        frames = run['frames']
        if not frames:
          return np.zeros(index.size + (3,), np.uint8)
      want = min(frames, key=lambda position: abs(position - want))
    return frames[want].reformat(width=index.size[1], height=index.size[0], format='rgb24',
                                 interpolation='AREA').to_ndarray()

  def _run(self) -> dict:
    """This thread's decoding run: one video, forward only."""
    return self._decoding.get().setdefault('run', {'video': None})

  def _count_error(self, video: int, reason: str):
    path = self.paths[video]
    if not self.frame_errors[path]:
      logging.warning('%s: %s; using the nearest frame that did (counted in frame_errors)',
                      path, reason)
    self.frame_errors[path] += 1

  def _container(self, video: int):
    """This thread's open container for the video."""
    containers = self._decoding.get().setdefault('containers', collections.OrderedDict())
    if video not in containers:
      containers[video] = av.open(self.paths[video])
      while len(containers) > _OPEN_PER_THREAD:
        containers.popitem(last=False)[1].close()
    containers.move_to_end(video)
    return containers[video]

  def _drop_container(self, video: int):
    container = self._decoding.get().get('containers', {}).pop(video, None)
    if container is not None:
      container.close()

  def _start_run(self, video: int, want: int):
    """Points this thread's run at the last keyframe at or before position `want`."""
    index = self._index[video]
    start = int(index.pts[index.keyframe_at(want)])
    run = self._run()
    run.update(video=video, frames={}, position=-1, decoder=self._decode_from(video, start, run))

  def _decode_to(self, want: int):
    """Decodes forward up to position `want`, keeping the last KEEP resampled frames."""
    run = self._run()
    index, frames = self._index[run['video']], run['frames']
    for position, frame in run['decoder']:
      run['position'] = position
      if index.is_pick[position]:
        frames[position] = frame
        if len(frames) > KEEP:
          del frames[next(iter(frames))]
      if position >= want:
        return
    run['position'] = len(index.pts)  # Ended early (damaged): do not continue this run.

  def _decode_from(self, video: int, start: int, run: dict):
    """Yields (position in pts, av.VideoFrame) from the keyframe at timestamp `start` on.

    Non-reference frames (most B-frames) before run['skip_before'] are not decoded: the
    frames kept are the same, and for B-frame-heavy video it halves the decoding work.
    """
    index = self._index[video]
    position, skipping = None, False
    try:
      container = self._container(video)
      stream = container.streams.video[0]
      if self.keyframes_only:
        stream.codec_context.skip_frame = 'NONKEY'
      for packet in _packets_from(container, stream, start, index.keyframes):
        skip = packet.pts is not None and packet.pts < run['skip_before']
        if skip != skipping and not self.keyframes_only:
          stream.codec_context.skip_frame = 'NONREF' if skip else 'DEFAULT'
          skipping = skip
        try:
          frames = packet.decode()
        except _DECODE_ERRORS:
          continue  # A damaged packet: its frame and those depending on it are lost.
        for frame in frames:
          if frame.pts is None:
            position = int(np.searchsorted(index.pts, start)) if position is None else position + 1
          elif frame.pts < start:
            continue  # Leading frames of an open GOP: their references were not decoded.
          else:
            position = int(_nearest(index.pts, frame.pts))
          yield position, frame
    except _DECODE_ERRORS as e:
      self._drop_container(video)
      logging.warning('%s: decoding stopped: %s', self.paths[video], e)


def write_video(path: str, frames, fps: float, keyframe_every: int = 10, crf: int = 18):
  """Encodes HxWx3 uint8 `frames` (an iterable, all one size) as H.264 (yuv420p, so odd
  sizes are padded to even) at `path`, under a temporary name renamed when complete.

  Keyframes every `keyframe_every` frames keep random access cheap for training.
  """
  tmp = f'{path}.tmp'
  try:
    with av.open(tmp, 'w', format='mp4') as container:
      stream = None
      for frame in frames:
        if stream is None:
          height, width = frame.shape[:2]
          stream = container.add_stream(
              'libx264', rate=fractions.Fraction(fps).limit_denominator(1001))
          stream.width, stream.height = width + width % 2, height + height % 2
          stream.pix_fmt = 'yuv420p'
          stream.options = {'g': str(keyframe_every), 'crf': str(crf)}
        if frame.shape[0] % 2 or frame.shape[1] % 2:
          frame = np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)),
                         mode='edge')
        container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')))
      if stream is None:
        raise ValueError(f'{path}: no frames to write')
      container.mux(stream.encode())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
