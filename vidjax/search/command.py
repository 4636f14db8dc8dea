"""What `python -m vidjax.search` does, given its flags as attributes of any object (absl's
FLAGS, or `arguments(**overrides)` from code and tests)."""
import os
import sys
import types

from vidjax.errors import ConfigError
from vidjax.search import corpus, outputs

DEFAULTS = dict(index=None, server='', image='', frame='', box='', k=20, kinds=[],
                exclude_same_video=False, window=2.0, json=False, sheet='', video='')


def arguments(**overrides):
  """The flags of `python -m vidjax.search` as a namespace: its defaults, then `overrides`."""
  unknown = set(overrides) - set(DEFAULTS)
  if unknown:
    raise TypeError(f'unknown vidjax.search flags: {", ".join(sorted(unknown))}')
  return types.SimpleNamespace(**{**DEFAULTS, **overrides})


def _query(index, f):
  """(query image for the sheet, its vector, the video to exclude or None)."""
  if bool(f.image) == bool(f.frame):
    raise ConfigError('give one of --image=FILE or --frame=VIDEO@TIME')
  box = corpus.parse_box(f.box) if f.box else None
  if f.image:
    image, video_name = corpus.read_image(f.image), None
  else:
    name, at, time = f.frame.rpartition('@')
    if not at or not name:
      raise ConfigError(f'--frame={f.frame}: expected VIDEO@TIME, e.g. drive_017.mp4@00:03:12.4')
    video, _, image = index.frame_at(name, corpus.parse_time(time))
    video_name = index.source.video_name(video)
  if box:
    corpus.check_box_overlaps(box, image.shape, f'--image={f.image}' if f.image else
                            f'the frame of --frame={f.frame} as the index read it')
  size = index.options['image_size']
  shown = (corpus.regions.square_crop(image, box, max(size, 96)) if box
           else corpus.regions.resize_square(image, 96))
  return shown, index.embed(image, box), video_name


def run_on_server(f):
  """The same query, sent to a server; prints its hits like run()."""
  import httpx
  if not f.image or f.frame or f.sheet or f.video or f.exclude_same_video:
    raise ConfigError('--server takes --image (with --box, -k, --kinds, --window, --json); '
                      '--frame, --sheet, --video and --exclude_same_video need --index')
  image_path = os.path.expanduser(f.image)
  corpus.read_image(image_path)  # The same one-line errors as without a server.
  with open(image_path, 'rb') as file:
    data = file.read()
  form = dict(k=str(f.k), kinds=','.join(f.kinds), window=str(f.window), box=f.box)
  url = f.server.rstrip('/') + '/api/search'
  try:
    response = httpx.post(url, files={'image': (os.path.basename(image_path), data)},
                          data=form, timeout=120)
  except httpx.HTTPError as e:
    raise ConfigError(f'--server={f.server}: no answer ({e}); is python -m vidjax.serve '
                      'running there?') from None
  if response.status_code != 200:
    try:
      detail = response.json().get('detail', response.text)
    except ValueError:
      detail = response.text[:200]
    raise ConfigError(f'--server={f.server}: {response.status_code}: {detail}')
  hits = [dict(h, x0=h['box'][0], y0=h['box'][1], x1=h['box'][2], y1=h['box'][3])
          for h in response.json()['hits']]
  print(outputs.as_json(hits) if f.json else outputs.table(hits))


def run(f):
  if f.k < 1:
    raise ConfigError(f'-k={f.k}: expected at least 1')
  if f.server:
    return run_on_server(f)
  index = corpus.CorpusIndex(os.path.expanduser(f.index))
  shown, vector, video_name = _query(index, f)
  hits = index.search(vector, f.k, video_name if f.exclude_same_video else None, f.window,
                      f.kinds)
  print(outputs.as_json(hits) if f.json else outputs.table(hits))
  if len(hits) < f.k:
    print(f'{len(hits)} hits: the others are within --window={f.window:g} s of a better hit in '
          'the same video, or filtered out (--window=0 keeps them)', file=sys.stderr)
  if f.sheet and hits:
    outputs.contact_sheet(shown, [index.crop_of(h, 96) for h in hits], hits, f.sheet)
    print(f'sheet: {f.sheet}', file=sys.stderr)
  if f.video and hits:
    outputs.hits_video([index.frame_of(h) for h in hits], hits, f.video)
    print(f'video: {f.video}', file=sys.stderr)
  index.close()
