"""The search and labelling server: one FastAPI app over one index folder, loaded once and kept
in memory (the faiss index memory-mapped), answering JSON under /api, images under
/api/thumbnails and /api/frames, and the page at /. The OpenAPI page is /docs."""
import collections
import contextlib
import functools
import io
import os
import threading
import time
import uuid
import zipfile

import numpy as np
from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image, ImageDraw

from vidjax.errors import ConfigError, NotFound
from vidjax.index import regions
from vidjax.labels import export, propose
from vidjax.labels.store import LabelStore
from vidjax.search import corpus
from vidjax.serve import models
from vidjax.serve.limits import BodyLimit, decode_image

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'static')
HISTOGRAM_OF = 1000  # The nearest vectors a search's similarity histogram counts.
HISTOGRAM_BINS = 20
SEEDS_KEPT = 512  # Recent query vectors kept as seeds of label proposals.


class _Seeds:
  """query_id -> query vector, the most recent SEEDS_KEPT."""

  def __init__(self):
    self._vectors = collections.OrderedDict()
    self._lock = threading.Lock()

  def add(self, vector) -> str:
    key = uuid.uuid4().hex
    with self._lock:
      self._vectors[key] = vector
      while len(self._vectors) > SEEDS_KEPT:
        self._vectors.popitem(last=False)
    return key

  def get(self, key: str):
    with self._lock:
      if key not in self._vectors:
        raise NotFound(f'no query {key!r} (the server keeps the last {SEEDS_KEPT}); search again')
      return self._vectors[key]


def _error(status: int, detail: str) -> JSONResponse:
  return JSONResponse({'detail': detail}, status_code=status)


def _validation_message(error: RequestValidationError) -> str:
  parts = []
  for problem in error.errors():
    where = '.'.join(str(p) for p in problem.get('loc', ()) if p != 'body') or 'body'
    if problem.get('type') == 'json_invalid':
      parts.append(f'malformed JSON body ({problem.get("ctx", {}).get("error", "invalid")})')
    else:
      parts.append(f'{where}: {problem.get("msg")}')
  return '; '.join(parts)


def _png(image: np.ndarray) -> Response:
  out = io.BytesIO()
  Image.fromarray(image).save(out, 'PNG')
  return Response(out.getvalue(), media_type='image/png',
                  headers={'Cache-Control': 'max-age=3600'})


def _jpeg(image: Image.Image, headers=None) -> Response:
  out = io.BytesIO()
  image.save(out, 'JPEG', quality=90)
  return Response(out.getvalue(), media_type='image/jpeg', headers=headers)


def _parse_kinds(text: str) -> list:
  kinds = [k for k in text.split(',') if k]
  unknown = set(kinds) - {'frame', *regions.REGION_KINDS}
  if unknown:
    raise ConfigError(f'kinds: unknown {", ".join(sorted(unknown))}; expected frame, grid, motion')
  return kinds


def create_app(index_folder: str, max_upload_bytes: int = 20 * 2**20,
               max_image_pixels: int = 50_000_000, export_dir: str = '') -> FastAPI:
  """The app over `index_folder`. Bodies over max_upload_bytes get 413, uploaded images over
  max_image_pixels 413 before decoding; POST /api/export writes export_dir (default
  INDEX/exports/labelled)."""
  index = corpus.CorpusIndex(index_folder)
  labels = LabelStore(os.path.join(index.folder, 'metadata.sqlite'))
  export_dir = export_dir or os.path.join(index.folder, 'exports', 'labelled')
  seeds = _Seeds()
  probes = collections.defaultdict(dict)  # label -> its propose.propose probe_cache
  frame_of = functools.lru_cache(maxsize=64)(
      lambda video, t: index.source.frame(video, t))

  @contextlib.asynccontextmanager
  async def lifespan(_):
    yield
    labels.close()
    index.close()

  app = FastAPI(title='vidjax', lifespan=lifespan, summary='Search a video corpus index for '
                'similar frames and objects, and label what it finds.')
  app.add_middleware(BodyLimit, max_bytes=max_upload_bytes)
  app.state.index, app.state.labels = index, labels

  @app.exception_handler(ConfigError)
  async def bad_input(_: Request, error: ConfigError):
    return _error(400, str(error))

  @app.exception_handler(NotFound)
  async def not_found(_: Request, error: NotFound):
    return _error(404, str(error).strip('"\''))

  @app.exception_handler(RequestValidationError)
  async def invalid(_: Request, error: RequestValidationError):
    return _error(422, _validation_message(error))

  def hits_of(rows) -> list:
    answers = labels.answers_for([row['id'] for row in rows])
    return [models.Hit(
        id=row['id'], score=row['score'], video=row['video'], video_index=row['video_index'],
        frame=row['frame'], timestamp=row['timestamp'], kind=row['kind'],
        box=(row['x0'], row['y0'], row['x1'], row['y1']), source=row['source'],
        thumbnail=f'/api/thumbnails/{row["id"]}', frame_url=f'/api/frames/{row["id"]}',
        answers=answers.get(row['id'], {})) for row in rows]

  def search(vector, k, kinds, window, exclude_video=None) -> models.SearchResult:
    started = time.perf_counter()
    rows = index.search(vector, k, exclude_video, window, kinds)
    scores, _ = index.index.search(vector[None].astype(np.float32), min(HISTOGRAM_OF, len(index)))
    scores = scores[0][np.isfinite(scores[0])]
    counts, edges = np.histogram(scores, bins=HISTOGRAM_BINS)
    return models.SearchResult(
        query_id=seeds.add(vector), hits=hits_of(rows),
        histogram=models.Histogram(edges=edges.tolist(), counts=counts.tolist(), of=len(scores)),
        milliseconds=round(1000 * (time.perf_counter() - started), 2))

  def checked_box(box, image_shape, what):
    if box is None:
      return None
    if not (box[2] > box[0] and box[3] > box[1]):
      raise ConfigError(f'box={",".join(f"{v:g}" for v in box)}: expected x0,y0,x1,y1 with '
                        'x1 > x0 and y1 > y0')
    corpus.check_box_overlaps(box, image_shape, what, 'box')
    return box

  @app.get('/', include_in_schema=False)
  def page():
    return FileResponse(os.path.join(STATIC, 'index.html'))

  @app.get('/api/health', response_model=models.Health)
  def health():
    summary = index.summary
    return models.Health(status='ok', vectors=len(index), dim=index.index.d,
                         factory=summary['factory'], nprobe=summary['nprobe'],
                         encoder=summary['encoder'], corpus=summary['corpus'],
                         labels=len(labels.labels()), answers=labels.count_answers())

  @app.post('/api/search', response_model=models.SearchResult)
  def search_image(image: UploadFile = File(description='The query image.'),
                   k: int = Form(20, ge=1, le=500), kinds: str = Form(''),
                   window: float = Form(2.0, ge=0), box: str = Form('')):
    """Search by an uploaded image, or by a box of it (x0,y0,x1,y1 in its pixels)."""
    pixels = decode_image(image.file.read(), max_image_pixels)
    region = checked_box(corpus.parse_box(box, 'box'), pixels.shape, 'the image') if box else None
    return search(index.embed(pixels, region), k, _parse_kinds(kinds), window)

  @app.post('/api/search/region', response_model=models.SearchResult)
  def search_region(query: models.RegionQuery):
    """Search by a vector's region, or by another box of its frame."""
    row = index.row(query.id)
    frame = frame_of(row['video_index'], row['frame'])
    box = checked_box(query.box, frame.shape, f'the frame of vector {query.id}')
    if box is None and row['kind'] != 'frame':
      box = (row['x0'], row['y0'], row['x1'], row['y1'])
    return search(index.embed(frame, box), query.k, query.kinds, query.window,
                  row['video'] if query.exclude_same_video else None)

  @app.post('/api/search/frame', response_model=models.SearchResult)
  def search_frame(query: models.FrameQuery):
    """Search by the frame of a video nearest a time, or by a box of it."""
    video, t, frame = frame_at(query.video, query.time)
    box = checked_box(query.box, frame.shape, f'frame {t} of video {query.video}')
    return search(index.embed(frame, box), query.k, query.kinds, query.window,
                  index.source.video_name(video) if query.exclude_same_video else None)

  def frame_at(video: int, seconds: float):
    if not 0 <= video < len(index.source):
      raise NotFound(f'no video {video}: the corpus has videos 0 to {len(index.source) - 1}')
    return index.frame_at(index.source.video_name(video), seconds)

  @app.get('/api/videos', response_model=list[models.Video])
  def videos(response: Response, offset: int = Query(0, ge=0),
             limit: int = Query(100, ge=1, le=1000)):
    """The corpus's videos, `limit` from `offset`; the total in the X-Total-Count header."""
    source = index.source
    response.headers['X-Total-Count'] = str(len(source))
    listed = []
    for v in range(offset, min(offset + limit, len(source))):
      frames = source.num_frames(v)
      listed.append(models.Video(index=v, name=source.video_name(v), frames=frames,
                                 duration=regions.timestamp(source, v, frames - 1)))
    return listed

  @app.get('/api/videos/{video}/frame')
  def video_frame(video: int, time_s: float = Query(0.0, alias='time', ge=0)):
    """The frame of a video nearest `time` seconds (JPEG); its index and time in headers."""
    video, t, frame = frame_at(video, time_s)
    return _jpeg(Image.fromarray(frame), {
        'X-Frame-Index': str(t),
        'X-Timestamp': f'{regions.timestamp(index.source, video, t):.3f}'})

  @app.get('/api/thumbnails/{vector_id}')
  def thumbnail(vector_id: int, size: int = Query(128, ge=16, le=512)):
    """The crop of a vector's region as the encoder saw it, resized to size x size (PNG)."""
    row = index.row(vector_id)
    frame = frame_of(row['video_index'], row['frame'])
    box = (row['x0'], row['y0'], row['x1'], row['y1'])
    return _png(regions.region_image(frame, row['kind'], box, size))

  @app.get('/api/frames/{vector_id}')
  def frame_with_box(vector_id: int):
    """The whole frame of a vector, its region outlined (JPEG)."""
    row = index.row(vector_id)
    image = Image.fromarray(frame_of(row['video_index'], row['frame']))
    if row['kind'] != 'frame':
      ImageDraw.Draw(image).rectangle((row['x0'], row['y0'], row['x1'] - 1, row['y1'] - 1),
                                      outline=(255, 220, 0), width=2)
    return _jpeg(image)

  def counts(name: str) -> models.LabelCounts:
    """One label's counts (read on every answer: only that label's answers are read)."""
    row = labels.label(name)
    return models.LabelCounts(**{k: row[k] for k in models.LabelCounts.model_fields})

  @app.get('/api/labels', response_model=list[models.LabelCounts])
  def list_labels():
    return [models.LabelCounts(**{k: r[k] for k in models.LabelCounts.model_fields})
            for r in labels.labels()]

  @app.post('/api/labels', response_model=models.LabelCounts, status_code=201)
  def create_label(new: models.NewLabel):
    """Creates a label (answers 200 with its counts when it exists already)."""
    if not labels.create_label(new.name, new.who):
      return JSONResponse(counts(new.name).model_dump(), status_code=200)
    return counts(new.name)

  @app.get('/api/labels/{name}/proposals', response_model=models.Proposals)
  def proposals(name: str, k: int = Query(12, ge=1, le=200), seed: str = '',
                kinds: str = ''):
    """The unanswered crops to review next for a label: nearest to its accepted crops (and
    to the seed query), then ranked by a linear probe once there are enough answers."""
    counts(name)
    seed_vectors = seeds.get(seed)[None] if seed else None
    rows, method = propose.propose(index, labels.states(name), k, seed_vectors,
                                   kinds=_parse_kinds(kinds), probe_cache=probes[name])
    return models.Proposals(label=name, method=method, hits=hits_of(rows))

  @app.post('/api/answers', response_model=models.Answered)
  def answer(given: models.Answer):
    """Records accept / reject / skip for a crop and a label, with who answered (and when)."""
    seq = labels.answer(index.row(given.id), given.label, given.answer, given.who)
    return models.Answered(seq=seq, label=counts(given.label))

  @app.post('/api/export', response_model=models.Exported)
  def export_labels(request: models.ExportRequest | None = None):
    """Writes the labelled imagefolder and labels.csv (replacing the previous export whole)."""
    written = export.export(index, labels, export_dir, request.labels if request else None,
                            overwrite=True)
    return models.Exported(path=export_dir, written=written, download='/api/export.zip')

  @app.get('/api/export.zip')
  def export_zip():
    """The last export as a zip file."""
    if not os.path.isdir(export_dir):
      raise NotFound('nothing exported yet: POST /api/export first')
    out = io.BytesIO()
    with zipfile.ZipFile(out, 'w', zipfile.ZIP_DEFLATED) as archive:
      for folder, _, files in os.walk(export_dir):
        for name in sorted(files):
          path = os.path.join(folder, name)
          archive.write(path, os.path.relpath(path, export_dir))
    return Response(out.getvalue(), media_type='application/zip', headers={
        'Content-Disposition': 'attachment; filename="labelled.zip"'})

  app.mount('/static', StaticFiles(directory=STATIC), name='static')
  return app
