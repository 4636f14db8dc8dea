"""An index folder opened for queries: its faiss index (memory-mapped), metadata, the encoder
it was built with, and the corpus it points at, to show the frames hits come from."""
import functools
import os
import threading

import faiss
import jax
import numpy as np
from PIL import Image

from vidjax import parallel, workdir as runs
from vidjax.data.sources import open_source
from vidjax.errors import ConfigError, NotFound
from vidjax.evaluate import encoders
from vidjax.evaluate.knn import l2_normalize
from vidjax.index import embedding, integrity, regions, store, vectors


def parse_time(text: str) -> float:
  """Seconds from 'SS.s', 'MM:SS.s' or 'HH:MM:SS.s'."""
  try:
    seconds = 0.0
    for part in text.split(':'):
      seconds = seconds * 60 + float(part)
  except ValueError:
    raise ConfigError(f'time {text!r}: expected SS.s, MM:SS.s or HH:MM:SS.s') from None
  return seconds


def format_time(seconds: float) -> str:
  minutes, rest = divmod(float(seconds), 60)
  hours, minutes = divmod(int(minutes), 60)
  return f'{hours:02d}:{minutes:02d}:{rest:04.1f}'


def parse_box(text: str, name: str = '--box'):
  """(x0, y0, x1, y1) from 'x0,y0,x1,y1'; `name` is what the message calls the input."""
  try:
    box = tuple(float(v) for v in text.split(','))
  except ValueError:
    box = ()
  if len(box) != 4 or not np.isfinite(box).all() or box[2] <= box[0] or box[3] <= box[1]:
    raise ConfigError(f'{name}={text}: expected x0,y0,x1,y1 in pixels with x1 > x0, y1 > y0')
  return box


def check_box_overlaps(box, image_shape, what: str, name: str = '--box'):
  """A ConfigError unless `box` overlaps an image of `image_shape` (H, W, ...). A box may
  stick out of it (the square crops of regions near an edge do; edges are repeated)."""
  height, width = image_shape[:2]
  if box[0] >= width or box[1] >= height or box[2] <= 0 or box[3] <= 0:
    raise ConfigError(f'{name}={",".join(f"{v:g}" for v in box)}: outside {what} '
                      f'({width}x{height} pixels; the box must overlap it)')


def read_image(path: str) -> np.ndarray:
  """An image file as HxWx3 uint8, or a ConfigError saying why not."""
  if not os.path.isfile(path):
    raise ConfigError(f'--image={path}: no such file')
  if not os.path.getsize(path):
    raise ConfigError(f'--image={path}: empty file (0 bytes); expected a JPEG, PNG or other '
                      'image')
  try:
    with Image.open(path) as image:
      return np.asarray(image.convert('RGB'))
  except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
    raise ConfigError(f'--image={path}: not a readable image ({e})') from None


class CorpusIndex:
  """Query side of an index folder (layout in vidjax/index/build.py)."""

  def __init__(self, folder: str, mesh=None):
    if not os.path.isdir(folder):
      raise ConfigError(f'--index={folder}: no such folder; build one with python -m '
                        'vidjax.index --output=...')
    if not os.path.isfile(os.path.join(folder, 'index.json')):
      raise ConfigError(f'--index={folder}: not an index folder (no index.json); build one '
                        'with python -m vidjax.index')
    self.folder = folder
    self.summary = integrity.read_summary(folder)
    self.options = self.summary['options']
    self.index = integrity.open_faiss(folder, self.summary)
    vectors.set_nprobe(self.index, self.summary['nprobe'])
    self.db = integrity.open_metadata(folder, self.summary)
    self._lock = threading.Lock()  # One sqlite connection; reads come from server threads.
    self._direct_map = False
    encoder_dir = os.path.join(folder, 'encoder')
    self.config = runs.load_config(encoder_dir, '--index')
    mesh = mesh or parallel.make_mesh(jax.local_devices())
    self._encode, _ = encoders.load_encoder(self.config, encoder_dir, self.summary['init'], mesh)
    self._source = None

  def __len__(self):
    return int(self.index.ntotal)

  @property
  def source(self):
    """The corpus, opened as the index read it (on first use: probing files takes time)."""
    if self._source is None:
      config = self.config.copy_and_resolve_references()
      config.data.fps, config.data.frame_size = self.options['fps'], self.options['frame_size']
      self._source = open_source(self.summary['corpus'], config,
                                 f'the index\'s corpus {self.summary["corpus"]}',
                                 self.options['keyframes_only'])
      if self.options.get('max_videos'):
        self._source = embedding.FirstVideos(self._source, self.options['max_videos'])
      self._names = {self._source.video_name(v): v for v in range(len(self._source))}
    return self._source

  def embed(self, image: np.ndarray, box=None) -> np.ndarray:
    """The unit vector [D] of an image (or of its `box`), cut as the index cut its regions."""
    size = self.options['image_size']
    crop = (regions.square_crop(image, box, size) if box is not None
            else regions.resize_square(image, size))
    vector = l2_normalize(self._encode(crop[None]))[0]
    if vector.shape[-1] != self.index.d:
      raise ConfigError(f'--index={self.folder}: its encoder gives {vector.shape[-1]}-d vectors '
                        f'but its faiss index holds {self.index.d}-d ones; the folder mixes two '
                        'indexes: rebuild it with python -m vidjax.index')
    return vector

  def video_index(self, name: str) -> int:
    """The source video whose name is `name` or ends with it (a path, or its file name)."""
    self.source  # pylint: disable=pointless-statement
    if name in self._names:
      return self._names[name]
    matches = [v for n, v in self._names.items() if n.endswith(os.sep + name) or
               os.path.basename(n) == name]
    if len(matches) != 1:
      raise ConfigError(f'--frame={name}@...: {"no" if not matches else "more than one"} video '
                        f'of the corpus {self.summary["corpus"]} is called that')
    return matches[0]

  def frame_at(self, name: str, seconds: float):
    """(video index, frame index, HxWx3 frame) of the frame of video `name` nearest `seconds`."""
    video = self.video_index(name)
    stamps = self._timestamps(video)
    t = int(np.argmin(np.abs(stamps - seconds)))
    return video, t, self.source.frame(video, t)

  @functools.lru_cache(maxsize=64)  # noqa: B019 (one CorpusIndex per process)
  def _timestamps(self, video: int) -> np.ndarray:
    return np.array([regions.timestamp(self.source, video, t)
                     for t in range(self.source.num_frames(video))])

  def row(self, vector_id: int) -> dict:
    """The metadata row of a faiss id, or NotFound."""
    if not 0 <= vector_id < len(self):
      raise NotFound(f'no vector {vector_id}: the index holds ids 0 to {len(self) - 1}')
    return self.rows([vector_id])[0]

  def rows(self, ids) -> list:
    """The metadata rows (dicts, None for an unknown id) of faiss ids, in their order."""
    with self._lock:
      return store.rows(self.db, ids)

  def vectors_of(self, ids) -> np.ndarray:
    """[n, D] the stored vectors of faiss ids (PQ indexes give their approximation)."""
    ids = np.asarray(ids, np.int64)
    if not len(ids):
      return np.zeros((0, self.index.d), np.float32)
    with self._lock:
      if not self._direct_map and vectors.is_ivf(self.index):
        faiss.extract_index_ivf(self.index).make_direct_map()
      self._direct_map = True
    return self.index.reconstruct_batch(ids)

  def frame_of(self, hit: dict) -> np.ndarray:
    return self.source.frame(hit['video_index'], hit['frame'])

  def crop_of(self, hit: dict, size: int) -> np.ndarray:
    box = (hit['x0'], hit['y0'], hit['x1'], hit['y1'])
    frame = self.frame_of(hit)
    return (regions.resize_square(frame, size) if hit['kind'] == 'frame'
            else regions.square_crop(frame, box, size))

  def search(self, vector: np.ndarray, k: int, exclude_video: str = None,
             window_seconds: float = 0.0, kinds=None) -> list:
    """The top k hits (metadata dicts with 'score'), best first: none from `exclude_video`,
    none within window_seconds of a better hit in the same video, only `kinds` if given."""
    total = len(self)
    asked = min(total, max(4 * k, 32))
    while True:
      scores, ids = self.index.search(vector[None].astype(np.float32), asked)
      hits = self._filter(scores[0], ids[0], k, exclude_video, window_seconds, kinds)
      if len(hits) >= k or asked >= total:
        return hits
      asked = min(total, asked * 4)

  def _filter(self, scores, ids, k, exclude_video, window_seconds, kinds):
    kept = []
    for score, row in zip(scores, self.rows(ids[ids >= 0])):
      if row is None or (exclude_video and row['video'] == exclude_video):
        continue
      if kinds and row['kind'] not in kinds:
        continue
      if window_seconds and any(h['video'] == row['video'] and
                                abs(h['timestamp'] - row['timestamp']) < window_seconds
                                for h in kept):
        continue
      kept.append(dict(row, score=float(score)))
      if len(kept) == k:
        break
    return kept

  def close(self):
    self.db.close()
