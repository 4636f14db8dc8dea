r"""Do region queries of an object find that object's category in a corpus index?

  python -m vidjax.world --export=/tmp/world --num_videos=200
  python bench/index_quality.py --world=/tmp/world --workdir=runs/npair

Builds one index of the exported world's mp4 files (WORLD/videos, read as videos:) per
encoder (the workdir's trained checkpoint, the same model at random init, raw pixels), then
queries each with object crops of WORLD/query (videos disjoint from the corpus) and reports
precision@10: the share of the top 10 region hits (--kinds) that show an object of the
query's category, judged by the world's own object boxes (a hit shows the object whose box
it overlaps most, at IoU >= --iou; otherwise background). Hits are one per video and
time window, as `vidjax.search` gives them by default. Writes
WORKDIR/index_quality/index_quality_<kinds>.json.
"""
import json
import os
import sys

import numpy as np
from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from vidjax.data.sources import world  # noqa: E402
from vidjax.evaluate import datasets  # noqa: E402
from vidjax.index import command, regions  # noqa: E402
from vidjax.search import corpus  # noqa: E402
from vidjax.world import folder_name  # noqa: E402


class Truth:
  """The category name a hit shows, from the world that rendered the corpus videos."""

  def __init__(self, world_options: dict):
    self.world = world.SyntheticWorld(seed=world_options['seed'], split='train',
                                      num_videos=world_options['num_videos'],
                                      num_frames=world_options['num_frames'],
                                      frame_size=world_options['frame_size'])
    self.fps = world_options['fps']
    self.scale = 1.0  # World pixels per pixel of the frames as the index read them.

  def category(self, hit: dict, threshold: float) -> str:
    video = int(os.path.splitext(os.path.basename(hit['video']))[0])
    t = min(int(round(hit['timestamp'] * self.fps)), self.world.num_frames(video) - 1)
    rows = self.world.boxes(video, t)
    if not len(rows):
      return 'background'
    boxes = np.stack([rows[c] for c in ('x0', 'y0', 'x1', 'y1')], axis=1)
    box = np.array([hit[c] for c in ('x0', 'y0', 'x1', 'y1')]) * self.scale
    overlaps = regions.iou(box, boxes)
    best = int(np.argmax(overlaps))
    if overlaps[best] < threshold:
      return 'background'
    return folder_name(world.CATEGORIES[rows['category'][best]])


def measure(index_folder: str, queries, truth: Truth, f) -> dict:
  index = corpus.CorpusIndex(index_folder)
  truth.scale = world.frame_shape(truth.world.frame_size)[0] / index.source.size(0)[0]
  precisions, shown = [], {}
  for image, label in queries:
    hits = index.search(index.embed(image), f.k, kinds=f.kinds)
    found = [truth.category(h, f.iou) for h in hits]
    precisions.append(np.mean([c == label for c in found]))
    for c in found:
      shown[c] = shown.get(c, 0) + 1
  index.close()
  precisions = np.asarray(precisions)
  return dict(precision_at_10=float(precisions.mean()),
              ci95=float(1.96 * precisions.std(ddof=1) / np.sqrt(len(precisions))),
              background_share=shown.get('background', 0) / max(1, sum(shown.values())),
              vectors=index.summary['vectors'], queries=len(precisions))


def define_flags():
  """The command's flags (defined only when run, so tests can import Truth)."""
  flags.DEFINE_string('world', None, 'A folder written by python -m vidjax.world --export.')
  flags.DEFINE_string('workdir', None, 'The training run whose encoder is measured.')
  flags.DEFINE_string('out', '', 'Where the indexes go (default WORKDIR/index_quality/).')
  flags.DEFINE_list('inits', ['trained', 'random', 'pixels'], 'Encoders to compare.')
  flags.DEFINE_list('regions', ['grid', 'motion'], 'Region kinds to index.')
  flags.DEFINE_list('kinds', ['grid', 'motion'], 'Hit kinds that count (region queries).')
  flags.DEFINE_float('fps', 2.0, 'Frames per second indexed.')
  flags.DEFINE_integer('queries_per_class', 20, 'Query crops per category.')
  flags.DEFINE_integer('k', 10, 'Hits per query.')
  flags.DEFINE_float('iou', 0.3, 'Overlap with an object box for a hit to show that object.')


def main(argv):
  del argv
  f = flags.FLAGS
  if not f['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every restore at INFO.
  out = f.out or os.path.join(f.workdir, 'index_quality')
  with open(os.path.join(f.world, 'world.json')) as file:
    world_options = json.load(file)
  query_set = datasets.image_folder(os.path.join(f.world, 'query'), '--world')
  rng = np.random.default_rng(0)
  picks = [i for label in range(len(query_set.class_names)) for i in rng.permutation(
      np.flatnonzero(query_set.labels == label))[:f.queries_per_class]]
  queries = [(query_set.images(i, i + 1, 64)[0], query_set.class_names[query_set.labels[i]])
             for i in picks]
  truth = Truth(world_options)
  results = {}
  for init in f.inits:
    folder = os.path.join(out, init)
    if not os.path.exists(os.path.join(folder, 'index.json')):
      command.run(command.arguments(
          workdir=f.workdir, init=init, corpus=f'videos:{f.world}/videos', output=folder,
          fps=f.fps, regions=f.regions, frame_size=world_options['frame_size']))
    results[init] = measure(folder, queries, truth, f)
    r = results[init]
    print(f'{init:8s} precision@{f.k} {r["precision_at_10"]:.3f} ± {r["ci95"]:.3f} | '
          f'background hits {r["background_share"]:.2f} | {r["vectors"]} vectors', flush=True)
  chance = 1 / len(query_set.class_names)
  print(f'chance (a category at random) {chance:.3f}')
  with open(os.path.join(out, f'index_quality_{"+".join(f.kinds)}.json'), 'w') as file:
    json.dump(dict(results=results, chance=chance, flags={k: f[k].value for k in (
        'world', 'workdir', 'regions', 'kinds', 'fps', 'queries_per_class', 'k', 'iou')}),
              file, indent=1)


if __name__ == '__main__':
  define_flags()
  flags.mark_flags_as_required(['world', 'workdir'])
  app.run(main)
