"""Embedding one shard of a corpus into OUTPUT.partial/shard-I-of-N/: vectors in part files,
their metadata in rows.sqlite, resumable after a kill.

A part is written (temporary name, then rename) before the one SQLite transaction that
records its rows and marks its videos done; on a restart, part files without that record
are deleted and every video not marked done is embedded again, so a kill loses at most the
videos of one unfinished part (at most PART_ROWS vectors or PART_SECONDS of work).
"""
import glob
import os
import sys
import time

import numpy as np

from vidjax.evaluate.knn import l2_normalize
from vidjax.index import regions, store
from vidjax.metrics_log import format_duration

PART_ROWS = 16384
PART_SECONDS = 60.0
EMBED_BATCH = 512


class IndexBuildError(ValueError):
  """Bad input or options for the index: the message is the whole story."""


class FirstVideos:
  """The first `count` videos of a source (--max_videos), everything else passed through."""

  def __init__(self, source, count: int):
    self.source, self.count = source, min(count, len(source))

  def __len__(self):
    return self.count

  def __getattr__(self, name):
    return getattr(self.source, name)


def differences(saved: dict, options: dict) -> str:
  """'name=saved value' for each option that differs, e.g. 'encoder={...}, fps=1.0'."""
  return ', '.join(f'{k}={saved.get(k)}' for k in sorted(set(saved) | set(options))
                   if saved.get(k) != options.get(k))


def shard_dir(output: str, shard: int, count: int) -> str:
  return os.path.join(f'{output}.partial', f'shard-{shard:04d}-of-{count:04d}')


def part_path(directory: str, part: int) -> str:
  return os.path.join(directory, f'part-{part:05d}.npy')


def _save_part(path: str, vectors: np.ndarray):
  tmp = f'{path}.tmp.npy'
  np.save(tmp, vectors)
  os.replace(tmp, path)


def _discard_unfinished(db, directory: str):
  committed = {row['part'] for row in db.execute('SELECT part FROM parts')}
  for path in glob.glob(os.path.join(directory, 'part-*.npy*')):
    name = os.path.basename(path)
    if name.endswith('.tmp.npy') or int(name[5:10]) not in committed:
      os.remove(path)


class _Progress:
  def __init__(self, total_videos: int):
    self.total, self.start, self.shown = total_videos, time.time(), 0.0
    self.tty = sys.stderr.isatty()

  def show(self, videos: int, frames: int, vectors: int, final=False):
    now = time.time()
    if not final and now - self.shown < 2:
      return
    self.shown = now
    elapsed = max(now - self.start, 1e-9)
    eta = (self.total - videos) * elapsed / videos if videos else float('nan')
    line = (f'index: {videos}/{self.total} videos | {frames} frames, {vectors} vectors | '
            f'{frames / elapsed:.1f} frames/s | ETA {format_duration(eta)}')
    print(('\r' if self.tty else '') + line, end='\n' if final or not self.tty else '',
          file=sys.stderr, flush=True)


def embed_shard(source, spec: str, encode, options: dict, directory: str, shard: int,
                count: int) -> dict:
  """Embeds the videos v of `source` with v % count == shard that are not done yet.

  encode: uint8 images [n, S, S, 3] -> [n, D] embeddings; options: what the frames and
  regions were chosen with (fps, dedup, regions, grid_scales, image_size), checked against
  the shard's saved options on a resume. Returns the shard's summary.
  """
  os.makedirs(directory, exist_ok=True)
  db = store.connect(os.path.join(directory, 'rows.sqlite'))
  saved = store.info(db).get('options')
  if saved is None:
    with db:
      store.set_info(db, {'options': options, 'source': spec, 'complete': False})
  elif saved != options or store.info(db).get('source') != spec:
    saved = dict(saved, corpus=store.info(db).get('source'))
    raise IndexBuildError(
        f'{directory} was started with another {differences(saved, dict(options, corpus=spec))}'
        f'; rerun with those, or delete {os.path.dirname(directory)}')
  with db:  # Files the source could not open at all (a rerun may see others).
    store.set_info(db, {'skipped_at_open': [dict(path=str(path), reason=str(reason)) for
                                            path, reason in getattr(source, 'skipped', [])]})
  _discard_unfinished(db, directory)
  with db:  # Rows of videos whose part was never committed.
    db.execute('DELETE FROM vectors WHERE video_index NOT IN (SELECT video_index FROM videos)')
  finished = {row['video_index'] for row in db.execute('SELECT video_index FROM videos')}
  mine = [v for v in range(len(source)) if v % count == shard]
  todo = [v for v in mine if v not in finished]
  next_part = db.execute('SELECT COALESCE(MAX(part) + 1, 0) FROM parts').fetchone()[0]
  next_id = db.execute('SELECT COALESCE(SUM(rows), 0) FROM parts').fetchone()[0]
  progress = _Progress(len(mine))
  videos_done, frames_seen = len(mine) - len(todo), 0

  pending = _Pending()
  for video in todo:
    name = source.video_name(video)
    try:
      records, vectors = _embed_video(source, video, spec, options, encode)
    except Exception as e:  # A file that breaks mid-way is skipped, counted and named.
      pending.videos.append((video, name, 'skipped', f'{type(e).__name__}: {e}', 0))
      continue
    pending.add(video, name, records, vectors)
    frames_seen += len({r['frame'] for r in records})
    videos_done += 1
    if pending.rows >= PART_ROWS or time.time() - pending.started > PART_SECONDS:
      next_id, next_part = pending.commit(db, directory, next_id, next_part)
    progress.show(videos_done, frames_seen, next_id + pending.rows)
  next_id, next_part = pending.commit(db, directory, next_id, next_part)
  with db:
    store.set_info(db, {'complete': True})
  progress.show(videos_done, frames_seen, next_id, final=True)
  skipped = store.info(db)['skipped_at_open'] + [
      dict(r) for r in db.execute("SELECT path, reason FROM videos WHERE state = 'skipped'")]
  db.close()
  return dict(videos=len(mine), vectors=next_id, skipped=skipped)


class _Pending:
  """Embedded videos not yet written: their vectors, rows and video records."""

  def __init__(self):
    self.vectors, self.records, self.videos = [], [], []
    self.rows, self.started = 0, time.time()

  def add(self, video, name, records, vectors):
    if len(vectors):
      self.vectors.append(vectors)
    self.records += records
    self.videos.append((video, name, 'done', None, len(records)))
    self.rows += len(records)

  def commit(self, db, directory, next_id, next_part):
    """Writes the part, then records it; returns the next (id, part)."""
    if not self.videos:
      return next_id, next_part
    part = next_part if self.rows else None
    if self.rows:
      _save_part(part_path(directory, part), np.concatenate(self.vectors).astype(np.float32))
    for offset, record in enumerate(self.records):
      record['id'] = next_id + offset
    with db:
      store.insert_vectors(db, self.records)
      if part is not None:
        db.execute('INSERT INTO parts (part, rows) VALUES (?, ?)', (part, self.rows))
      db.executemany('INSERT INTO videos (video_index, path, state, reason, vectors, part) '
                     'VALUES (?, ?, ?, ?, ?, ?)', [v + (part,) for v in self.videos])
    next_id += self.rows
    self.__init__()
    return next_id, next_part + (part is not None)


def _video_regions(source, video: int, spec: str, options: dict):
  """(metadata record, uint8 crop [S, S, 3]) of each kept frame and region of one video."""
  duplicates = regions.NearDuplicates(options['dedup'])
  name, size = source.video_name(video), options['image_size']
  for t in regions.sampled_frames(source, video, options['fps']):
    frame = source.frame(video, int(t))
    if not duplicates.keep(frame):
      continue
    stamp = regions.timestamp(source, video, int(t))
    for kind, box in regions.frame_regions(source, video, int(t), frame, options['regions'],
                                           options['grid_scales']):
      yield (dict(source=spec, video=name, video_index=video, frame=int(t), timestamp=stamp,
                  kind=kind, x0=box[0], y0=box[1], x1=box[2], y1=box[3]),
             regions.region_image(frame, kind, box, size))


def _embed_video(source, video: int, spec: str, options: dict, encode):
  """(records, L2-normalised vectors [n, D]) of one video, EMBED_BATCH crops in memory."""
  records, vectors, batch = [], [], []
  for record, image in _video_regions(source, video, spec, options):
    records.append(record)
    batch.append(image)
    if len(batch) == EMBED_BATCH:
      vectors.append(l2_normalize(encode(np.stack(batch))))
      batch = []
  if batch:
    vectors.append(l2_normalize(encode(np.stack(batch))))
  return records, (np.concatenate(vectors) if vectors else np.zeros((0, 0), np.float32))
