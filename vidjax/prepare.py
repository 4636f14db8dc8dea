r"""Videos or frame folders -> sharded ArrayRecord files of frames plus an index.

  python -m vidjax.prepare --input=/data/drives --output=/data/drives_prepared --fps=5 --size=160
  python main.py --config=configs/simsiam.py --config.data.train=arrayrecord:/data/drives_prepared

Every video file under --input (any container/codec FFmpeg reads) and every folder of images
(one video, frames in natural name order, taken at --folder_fps) is resampled to --fps,
shrunk to shorter side --size (never enlarged) and JPEG-encoded (--codec=raw: stored
uncompressed, 10-20x the disk, for a training input that does not decode). Each frame's
map of what moves before the next frame is stored beside it, so that training draws
its motion anchors without computing them per sample. --dedup drops a frame whose 16x16 grey
thumbnail differs from the last kept frame's by less than that mean absolute difference (in
[0, 1]; parked car, static camera); --keyframes_only keeps only the video's keyframes (no
other frame is decoded). Unreadable files are skipped and named in the report.

Resumable: a re-run with the same options skips the videos of finished shards and adds
the motion files its shards lack (also those of folders prepared before motion files
existed); an unfinished shard from a crash is discarded and redone. The layout is in
vidjax/data/sources/arrayrecord.py.
"""
import json
import multiprocessing
import os
import sys
import time

import numpy as np
from absl import app, flags

from vidjax import atomic, cli, disk_space, writer_lock
from vidjax.data.sources import arrayrecord, base
from vidjax.data.sources.frames import FrameFolders
from vidjax.data.sources.videos import VideoFiles
from vidjax.errors import ConfigError
from vidjax.metrics_log import format_duration

flags.DEFINE_string('input', None, 'Folder of video files and/or folders of frame images.')
flags.DEFINE_string('output', None, 'Output folder (created; a re-run resumes it).')
flags.DEFINE_float('fps', 0.0, 'Frames per second to keep (0 = each video\'s own rate).')
flags.DEFINE_integer('size', 160, 'Shorter side of the stored frames; smaller ones are '
                     'kept as decoded (0 = always as decoded).')
flags.DEFINE_integer('jpeg_quality', 90, 'JPEG quality of the stored frames (1-95).')
flags.DEFINE_enum('codec', 'jpeg', arrayrecord.CODECS, 'How frames are stored: jpeg, or raw '
                  '(uint8 pixels: no decoding when training reads them, 10-20x the disk).')
flags.DEFINE_float('dedup', 0.0, 'Drop a frame whose grey thumbnail is within this mean '
                   'absolute difference of the last kept frame (0 = keep all; try 0.02).')
flags.DEFINE_bool('keyframes_only', False, 'Keep only the videos\' keyframes.')
flags.DEFINE_float('folder_fps', base.DEFAULT_FPS, 'Frame rate of the frame folders.')
flags.DEFINE_integer('shard_frames', 10000, 'Start a new shard after this many frames '
                     '(a video is never split).')
flags.DEFINE_integer('workers', min(os.cpu_count() or 1, 8), 'Decoding processes (0 = '
                     'decode in this process).')

CHUNK = 128  # Frames per task: bounds the memory of one task's encoded frames.
OPTIONS = ('fps', 'size', 'jpeg_quality', 'dedup', 'keyframes_only', 'folder_fps', 'codec')
# What an option was before prepare.json recorded it.
OPTION_DEFAULTS = {'codec': 'jpeg'}


class PrepareError(ConfigError):
  """Bad input or output: the message is the whole story."""


_worker_sources = None  # Set in each decoding process by _init_worker.


def _init_worker(worker_sources):
  global _worker_sources
  _worker_sources = worker_sources


def _read_chunk(task):
  """(kind, video, frame numbers, codec, quality) -> (encoded frames, thumbnails, frames
  replaced)."""
  kind, video, numbers, codec, quality = task
  source = _worker_sources[kind]
  errors_before = _error_count(source)
  frames = [source.frame(video, int(t)) for t in numbers]
  return ([arrayrecord.encode_frame(f, codec, quality) for f in frames],
          np.stack([base.thumbnail(f) for f in frames]), _error_count(source) - errors_before)


def _error_count(source) -> int:
  """Frames a source replaced by a readable neighbour so far (in this process)."""
  return sum(getattr(source, 'frame_errors', {}).values()) + len(source.skipped)


def _frame_numbers(source, video: int, kind: str, fps: float, folder_fps: float):
  """The source frames to keep: videos are already resampled; folders are subsampled here."""
  count = source.num_frames(video)
  if kind == 'videos' or not fps or fps >= folder_fps:
    return np.arange(count)
  slots = np.floor(np.arange(count) * fps / folder_fps)
  return np.flatnonzero(np.diff(slots, prepend=-1) > 0)


def _check_options(output: str, options: dict):
  path = os.path.join(output, 'prepare.json')
  if os.path.exists(path):
    with open(path) as f:
      before = json.load(f)
    for name in OPTIONS:
      was = before.get(name, OPTION_DEFAULTS.get(name))
      if was != options[name]:
        raise PrepareError(
            f'--{name}={options[name]} differs from the {was} {output} was '
            'prepared with; use the same options to resume it, or another --output')
  else:
    atomic.write_json(path, options)


def _find_inputs(input_dir: str):
  """(video files, {frame folder: its images}) under input_dir; an error when neither."""
  videos = base.find_files(input_dir, base.VIDEO_EXTENSIONS)
  folders = base.find_frame_folders(input_dir)
  if not videos and not folders:
    raise PrepareError(f'--input={input_dir}: no video files or folders of images under it')
  return videos, folders


def _open_inputs(videos, folders, input_dir: str, fps: float, size: int, keyframes_only: bool,
                 folder_fps: float):
  """{kind: source}, and [(path relative to input_dir, reason)] for the unreadable files."""
  opened = {'videos': VideoFiles(videos, fps, size, keyframes_only),
            'frames': FrameFolders(folders, folder_fps, size)}
  skipped = [(os.path.relpath(p, input_dir), reason)
             for s in opened.values() for p, reason in s.skipped]
  for source in opened.values():
    source.skipped = []  # From here on it counts frames replaced while reading.
  return opened, skipped


class _Progress:
  """A progress line with rate and ETA, at most once a second (and once at the end)."""

  def __init__(self, total_frames: int):
    self.total, self.done, self.start, self.shown = total_frames, 0, time.time(), 0.0
    self.tty = sys.stderr.isatty()

  def advance(self, frames: int, videos_done: int, videos_total: int, final=False):
    self.done += frames
    now = time.time()
    if not final and now - self.shown < 1:
      return
    self.shown = now
    rate = self.done / max(now - self.start, 1e-9)
    eta = (self.total - self.done) / rate if rate > 0 else float('nan')
    percent = 100 * self.done / max(self.total, 1)
    line = (f'prepare: {self.done}/{self.total} frames ({percent:.0f}%) | {videos_done}/'
            f'{videos_total} videos | {rate:.0f} frames/s | ETA {format_duration(eta)}')
    print(('\r' if self.tty else '') + line, end='\n' if final or not self.tty else '',
          file=sys.stderr, flush=True)


def prepare(input_dir: str, output: str, *, fps=0.0, size=160, jpeg_quality=90, dedup=0.0,
            keyframes_only=False, folder_fps=base.DEFAULT_FPS, shard_frames=10000,
            workers=0, codec='jpeg') -> dict:
  """Prepares (or resumes preparing) `output` from `input_dir`; returns the report."""
  if not os.path.isdir(input_dir):
    raise PrepareError(f'--input={input_dir}: not a folder; expected a folder of videos or '
                       'frame folders')

  def kept():
    arrayrecord.discard_unfinished(output)  # The shard being written gives its space back.
    done = sum(len(videos) for _, videos in arrayrecord.finished_shards(output))
    what = f'the {done} videos in finished shards are kept' if done else 'no video was finished'
    return f'{what}; free some space and run the same command again to resume'

  with writer_lock.hold(output, '--output'), disk_space.reporting(output, '--output', kept):
    return _prepare(input_dir, output, fps=fps, size=size, jpeg_quality=jpeg_quality,
                    dedup=dedup, keyframes_only=keyframes_only, folder_fps=folder_fps,
                    shard_frames=shard_frames, workers=workers, codec=codec)


def _prepare(input_dir: str, output: str, *, fps, size, jpeg_quality, dedup, keyframes_only,
             folder_fps, shard_frames, workers, codec) -> dict:
  for name, value, ok in (('fps', fps, fps >= 0), ('size', size, size >= 0),
                          ('jpeg_quality', jpeg_quality, 1 <= jpeg_quality <= 95),
                          ('dedup', dedup, 0 <= dedup < 1),
                          ('folder_fps', folder_fps, folder_fps > 0),
                          ('shard_frames', shard_frames, shard_frames > 0),
                          ('codec', codec, codec in arrayrecord.CODECS)):
    if not ok:
      raise PrepareError(f'--{name}={value} is out of range; see --help')
  videos, folders = _find_inputs(input_dir)
  try:
    os.makedirs(os.path.join(output, arrayrecord.SHARDS), exist_ok=True)
  except OSError as e:
    raise PrepareError(f'--output={output}: cannot create it: {e.strerror}') from None
  if not os.access(output, os.W_OK):
    raise PrepareError(f'--output={output}: not writable')
  options = dict(fps=fps, size=size, jpeg_quality=jpeg_quality, dedup=dedup,
                 keyframes_only=keyframes_only, folder_fps=folder_fps, codec=codec)
  _check_options(output, options)
  arrayrecord.discard_unfinished(output)
  shards = arrayrecord.finished_shards(output)
  done = {video['path'] for _, shard_videos in shards for video in shard_videos}
  is_new = lambda path: os.path.relpath(path, input_dir) not in done
  opened, skipped = _open_inputs(
      [p for p in videos if is_new(p)], {f: files for f, files in folders.items() if is_new(f)},
      input_dir, fps, size, keyframes_only, folder_fps)

  todo = []  # (kind, video, frame numbers)
  for kind, source in opened.items():
    for video in range(len(source)):
      todo.append((kind, video, _frame_numbers(source, video, kind, fps, folder_fps)))
  tasks = [(kind, video, numbers[i:i + CHUNK], codec, jpeg_quality)
           for kind, video, numbers in todo for i in range(0, len(numbers), CHUNK)]
  report = {'videos_prepared': 0, 'videos_already_done': len(done), 'frames_kept': 0,
            'frames_dropped_as_duplicates': 0, 'frames_replaced_unreadable': 0,
            'skipped': [{'path': p, 'reason': r} for p, r in skipped]}
  progress = _Progress(sum(len(numbers) for _, _, numbers in todo))
  # JPEG at quality 90 takes about 1.5 bits a pixel; --size=0 keeps the videos' size.
  pixels = size * size if size else 640 * 480
  bits = 24 if codec == 'raw' else 1.5
  disk_space.warn_if_short(output, '--output', int(progress.total * pixels * bits / 8),
                           'the prepared frames')
  writer = arrayrecord.ShardWriter(output, (shards[-1][0] + 1) if shards else 0, shard_frames)
  unmapped = [n for n, _ in shards if not os.path.exists(arrayrecord.motion_path(output, n))]
  pool = (multiprocessing.get_context('spawn').Pool(workers, _init_worker, (opened,))
          if workers and (tasks or unmapped) else None)
  if pool is None:
    _init_worker(opened)
  try:
    results = pool.imap(_read_chunk, tasks) if pool else map(_read_chunk, tasks)
    remaining = {(kind, video): -(-len(numbers) // CHUNK) for kind, video, numbers in todo}
    current, last_thumb = None, None
    for (kind, video, numbers, _, _), (encoded, thumbs, errors) in zip(tasks, results):
      source = opened[kind]
      if current is None:
        current = _new_video(source, video, input_dir, min(fps or np.inf, source.fps(video)))
        last_thumb = None
      for t, frame, thumb in zip(numbers, encoded, thumbs):
        if last_thumb is not None and dedup and np.mean(np.abs(thumb - last_thumb)) < dedup:
          report['frames_dropped_as_duplicates'] += 1
          continue
        last_thumb = thumb
        writer.add_frame(frame)
        current['frame_index'].append(source.source_position(video, int(t)))
        current['timestamp'].append(round(source.timestamp(video, int(t)), 6))
      report['frames_replaced_unreadable'] += errors
      remaining[kind, video] -= 1
      if not remaining[kind, video]:
        report['frames_kept'] += len(current['frame_index'])
        report['videos_prepared'] += 1
        writer.add_video(current)
        current = None
      progress.advance(len(numbers), report['videos_prepared'], len(todo))
    writer.close()
    _write_motion(output, codec, pool)
  finally:
    if pool:
      pool.terminate()
    writer.abandon()  # Only does something when an exception left a shard open.
  progress.advance(0, report['videos_prepared'], len(todo), final=True)
  if report['videos_prepared'] or not os.path.exists(os.path.join(output, 'index.json')):
    arrayrecord.write_index(output)
  atomic.write_json(os.path.join(output, 'report.json'), report)
  return report


def _write_motion(output: str, codec: str, pool):
  """The motion file of every finished shard that lacks one (also of shards prepared
  before motion files existed)."""
  tasks = [(output, number, videos, codec)
           for number, videos in arrayrecord.finished_shards(output)
           if not os.path.exists(arrayrecord.motion_path(output, number))]
  if tasks:
    started, frames = time.time(), 0
    for frames_done in (pool.imap(arrayrecord.write_motion, tasks) if pool
                        else map(arrayrecord.write_motion, tasks)):
      frames += frames_done
    print(f'prepare: motion maps of {frames} frames in {len(tasks)} shards '
          f'({format_duration(time.time() - started)})', file=sys.stderr, flush=True)


def _new_video(source, video: int, input_dir: str, fps: float) -> dict:
  path = source.video_name(video)
  height, width = source.size(video)
  return {'path': os.path.relpath(path, input_dir), 'source': os.path.abspath(path),
          'fps': fps, 'height': height, 'width': width, 'frame_index': [], 'timestamp': []}


def print_report(report: dict, output: str):
  print(f"prepared {report['videos_prepared']} videos ({report['videos_already_done']} were "
        f"already done): {report['frames_kept']} frames kept, "
        f"{report['frames_dropped_as_duplicates']} dropped as near-duplicates, "
        f"{report['frames_replaced_unreadable']} unreadable (replaced by a neighbour)")
  if report['skipped']:
    print(f"skipped {len(report['skipped'])} files:")
    for item in report['skipped']:
      print(f"  {item['path']}: {item['reason']}")
  print(f'output: {output} (train with --config.data.train=arrayrecord:{output})')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  f = flags.FLAGS
  if not f.input or not f.output:
    sys.exit('error: --input and --output are required')
  try:
    report = prepare(os.path.expanduser(f.input), os.path.expanduser(f.output), fps=f.fps,
                     size=f.size, jpeg_quality=f.jpeg_quality, dedup=f.dedup,
                     keyframes_only=f.keyframes_only, folder_fps=f.folder_fps,
                     shard_frames=f.shard_frames, workers=f.workers, codec=f.codec)
  except ConfigError as e:  # PrepareError, FolderBusy, OutOfSpace.
    sys.exit(f'error: {e}')
  print_report(report, f.output)


def run():
  cli.run(main)


if __name__ == '__main__':
  run()
