r"""The embedded world written out as a user's data: mp4 videos and labelled crop folders.

  python -m vidjax.world --export=/tmp/world                     # the textures family
  python -m vidjax.world --export=/tmp/glyphs --family=glyphs
  python main.py --config=configs/npair.py --workdir=runs/world_npair \
      --config.data.train=videos:/tmp/world/videos
  python -m vidjax.evaluate --workdir=runs/world_npair --init=all \
      --support=imagefolder:/tmp/world/support --query=imagefolder:/tmp/world/query

Writes DIR/videos/<00000>.mp4 (the training videos, H.264, a keyframe every 10 frames),
DIR/support/<category>/<n>.png and DIR/query/<category>/<n>.png (labelled object crops from
videos disjoint from the training videos and from each other), each with a crops.csv
(path, category, context = the background photograph, typeface (glyphs family), video,
frame, box), and world.json (the options). Everything is written into DIR.partial and renamed to DIR when complete;
an existing DIR is never touched.
"""
import csv
import json
import multiprocessing
import os
import shutil
import sys
import time

from absl import app, flags
from PIL import Image

from vidjax import cli
from vidjax.data.sources import world, world_crops
from vidjax.data.sources.videos import write_video
from vidjax.evaluate.datasets import CROPS_CSV
from vidjax.metrics_log import format_duration

_FPS = 10.0


def folder_name(category: str) -> str:
  return category.replace(' ', '_')


def _write_one(task):
  """Renders and encodes one training video; returns its path."""
  path, seed, video, num_frames, frame_size, family = task
  source = world.SyntheticWorld(seed, 'train', video + 1, num_frames, frame_size, _FPS, family)
  write_video(path, (source.frame(video, t) for t in range(num_frames)), _FPS)
  return path


def write_crops(out: str, crops: world_crops.LabelledCrops):
  """out/<category>/<n>.png for every crop, and out/crops.csv describing them."""
  rows = []
  for n, (image, label) in enumerate(zip(crops.images, crops.labels)):
    category = folder_name(crops.class_names[label])
    relative = os.path.join(category, f'{n:05d}.png')
    os.makedirs(os.path.join(out, category), exist_ok=True)
    Image.fromarray(image).save(os.path.join(out, relative))
    rows.append({'path': relative, 'category': category, 'context': crops.contexts[n],
                 'typeface': crops.typefaces[n], 'video': int(crops.videos[n]),
                 'frame': int(crops.times[n]),
                 'box': ' '.join(f'{v:.1f}' for v in crops.boxes[n])})
  with open(os.path.join(out, CROPS_CSV), 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)


def export(out: str, *, seed=0, num_videos=1000, num_frames=64, frame_size=96,
           support_per_class=50, query_per_class=100, crop_size=64, workers=0,
           family='textures'):
  """Writes the world to `out` (see the module docstring)."""
  if os.path.exists(out):
    raise ValueError(f'--export={out} exists; give a new folder (nothing in it is touched)')
  if family not in world.FAMILIES:
    raise ValueError(f'--family={family}: unknown; expected one of {", ".join(world.FAMILIES)}')
  partial = f'{out}.partial'
  shutil.rmtree(partial, ignore_errors=True)  # A crashed export's leftovers.
  os.makedirs(os.path.join(partial, 'videos'))
  options = dict(family=family, seed=seed, num_videos=num_videos, num_frames=num_frames,
                 frame_size=frame_size, fps=_FPS, support_per_class=support_per_class,
                 query_per_class=query_per_class, crop_size=crop_size)
  for split, per_class in (('support', support_per_class), ('query', query_per_class)):
    write_crops(os.path.join(partial, split), world_crops.labelled_crops(
        seed, split, per_class, crop_size, frame_size=frame_size, family=family))
  tasks = [(os.path.join(partial, 'videos', f'{video:05d}.mp4'), seed, video, num_frames,
            frame_size, family) for video in range(num_videos)]
  started = time.time()
  with multiprocessing.get_context('spawn').Pool(workers) if workers else _Serial() as pool:
    for done, _ in enumerate(pool.imap_unordered(_write_one, tasks), 1):
      if done % 50 == 0 or done == len(tasks):
        rate = done / (time.time() - started)
        print(f'export: {done}/{len(tasks)} videos | ETA '
              f'{format_duration((len(tasks) - done) / rate)}', file=sys.stderr, flush=True)
  with open(os.path.join(partial, 'world.json'), 'w') as f:
    json.dump(options, f, indent=1)
  os.replace(partial, out)


class _Serial:
  """A stand-in for a process pool that maps in this process."""

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return False

  def imap_unordered(self, function, items):
    return map(function, items)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  f = flags.FLAGS
  if not f.export:
    sys.exit('error: --export=DIR is required (the folder to write)')
  try:
    export(os.path.expanduser(f.export), seed=f.seed, num_videos=f.num_videos,
           num_frames=f.num_frames, frame_size=f.frame_size,
           support_per_class=f.support_per_class, query_per_class=f.query_per_class,
           crop_size=f.crop_size, workers=f.workers, family=f.family)
  except ValueError as e:
    sys.exit(f'error: {e}')
  print(f'written: {f.export} (train with --config.data.train=videos:{f.export}/videos)')


def _define_flags():
  # Only when run as a program: importing export() must not claim flag names.
  flags.DEFINE_string('export', None, 'Output folder (must not exist yet).')
  flags.DEFINE_string('family', 'textures', 'World family: textures or glyphs '
                      '(vidjax/data/sources/world.py).')
  flags.DEFINE_integer('seed', 0, 'World seed (config.synthetic.seed).')
  flags.DEFINE_integer('num_videos', 1000, 'Training videos to write.')
  flags.DEFINE_integer('num_frames', 64, 'Frames per video.')
  flags.DEFINE_integer('frame_size', 96, 'Frame height; the width is 4/3 of it.')
  flags.DEFINE_integer('support_per_class', 50, 'Support crops per category.')
  flags.DEFINE_integer('query_per_class', 100, 'Query crops per category.')
  flags.DEFINE_integer('crop_size', 64, 'Side of the saved crops in pixels.')
  flags.DEFINE_integer('workers', min(os.cpu_count() or 1, 8), 'Rendering processes.')


def run():
  """The vidjax-world console script."""
  _define_flags()
  cli.run(main)


if __name__ == '__main__':
  run()
