r"""How much faster the labelling loop finds a rare thing than browsing for it.

  python bench/labelling.py --workdir=runs/npair --out=/tmp/labelling

Builds a corpus from the embedded world's support-split videos (disjoint from training) in
which one category (--category) is rare: videos without it, plus as many with it as make
its regions about --rare_share of the region crops. It is written as npy videos of 2
frames per second and indexed (grid + moving regions) three times: by the workdir's
trained encoder, by raw pixels and by the same model at random init. A region shows the
category when it overlaps one of its objects at IoU >= 0.3 (the world's own boxes).

A scripted labeller starts from one crop of the category cut from the query split (videos
disjoint from both), reviews the search's top 10, then the loop's proposals
(vidjax.labels.propose: nearest to the accepted crops, then a linear probe) 10 at a time,
answering each truthfully, until it has found 90% of the rare regions or reviewed
--max_reviews. Browsing in random order needs, on average, f R (N + 1) / (R + 1) reviews to
find a share f of R rare regions among N. Prints a table, writes OUT/labelling.json.
"""
import json
import os
import sys

import numpy as np
from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from vidjax.data.sources import world, world_crops  # noqa: E402
from vidjax.data.sources.npy import NpyArrays  # noqa: E402
from vidjax.index import command, regions  # noqa: E402
from vidjax.labels import propose  # noqa: E402
from vidjax.search import corpus  # noqa: E402

STEP = 5  # World frames (10 fps) per corpus frame: 2 fps.
IOU = 0.3
BATCH = 10
# Reviews after which the share found is recorded.
CHECKPOINTS = (100, 500, 1000, 2000, 4000, 8000, 16000, 32000)


def shows(source, video: int, t: int, box, category: int) -> bool:
  rows = source.boxes(video, t)
  rows = rows[rows['category'] == category]
  if not len(rows):
    return False
  boxes = np.stack([rows[c] for c in ('x0', 'y0', 'x1', 'y1')], axis=1)
  return bool((regions.iou(box, boxes) >= IOU).any())


def region_truth(source, corpus_source, video: int, world_video: int, category: int) -> list:
  """(kind, frame, box, shows the category) of every region the index will cut from it."""
  found = []
  for t in range(corpus_source.num_frames(video)):
    frame = corpus_source.frame(video, t)
    for kind, box in regions.frame_regions(corpus_source, video, t, frame, ['grid', 'motion'],
                                           [0.5, 0.33]):
      found.append((kind, t, box, shows(source, world_video, t * STEP, box, category)))
  return found


def write_corpus(f, out: str) -> dict:
  """Writes OUT/corpus/*.npy; returns the world video of each file and the truth counts."""
  source = world.SyntheticWorld(seed=0, split='support', num_videos=f.candidates)
  category = world.CATEGORIES.index(f.category)
  folder = os.path.join(out, 'corpus')
  os.makedirs(folder, exist_ok=True)
  chosen, total, rare = [], 0, 0
  for video in range(f.candidates):
    has = any((source.boxes(video, t)['category'] == category).any()
              for t in range(0, source.num_frames(video), STEP))
    if has and total and rare / total >= f.rare_share:
      continue
    if not has and len(chosen) - sum(c[1] for c in chosen) >= f.common_videos:
      continue
    path = os.path.join(folder, f'{video:05d}.npy')
    np.save(path, np.stack([source.frame(video, t)
                            for t in range(0, source.num_frames(video), STEP)]))
    truth = region_truth(source, NpyArrays([path], 2.0, 96), 0, video, category)
    total += len(truth)
    rare += sum(t[3] for t in truth)
    chosen.append((video, has))
    if len(chosen) - sum(c[1] for c in chosen) >= f.common_videos and rare / total >= \
        f.rare_share:
      break
  print(f'corpus: {len(chosen)} videos ({sum(c[1] for c in chosen)} with {f.category}), '
        f'{total} region crops, {rare} show it ({rare / total:.2%})', flush=True)
  return dict(folder=folder, videos={f'{v:05d}.npy': v for v, _ in chosen}, regions=total,
              rare=rare, category=category)


def truth_of(index, corpus_info) -> np.ndarray:
  """[N] bool: which vectors of the index show the rare category."""
  source = world.SyntheticWorld(seed=0, split='support', num_videos=max(
      corpus_info['videos'].values()) + 1)
  positive = np.zeros(len(index), bool)
  rows = index.db.execute('SELECT id, video, frame, kind, x0, y0, x1, y1 FROM vectors')
  for row in rows:
    if row['kind'] == 'frame':
      continue
    video = corpus_info['videos'][os.path.basename(row['video'])]
    positive[row['id']] = shows(source, video, row['frame'] * STEP,
                                (row['x0'], row['y0'], row['x1'], row['y1']),
                                corpus_info['category'])
  return positive


def label_loop(index, query: np.ndarray, positive: np.ndarray, max_reviews: int) -> dict:
  """Reviews until 90% of the positives are found or max_reviews; the share found after
  each of CHECKPOINTS reviews and the reviews it took to find 50% and 90%."""
  vector = index.embed(query)
  states, reviewed, found, marks, curve, probe_cache = {}, 0, 0, {}, {}, {}
  total = int(positive.sum())
  hits = index.search(vector, BATCH)
  methods = []
  while hits and reviewed < max_reviews:
    for hit in hits:
      reviewed += 1
      states[hit['id']] = 'accept' if positive[hit['id']] else 'reject'
      found += int(positive[hit['id']])
      for share in (0.5, 0.9):
        if share not in marks and found >= share * total:
          marks[share] = reviewed
      if reviewed in CHECKPOINTS:
        curve[reviewed] = found / total
    if 0.9 in marks:
      break
    hits, method = propose.propose(index, states, BATCH, seeds=vector[None],
                                   probe_cache=probe_cache)
    methods.append(method)
  return dict(reviews_to_50=marks.get(0.5), reviews_to_90=marks.get(0.9), reviewed=reviewed,
              found=found, found_after=curve,
              probe_from_batch=(methods.index('probe') + 2) if 'probe' in methods else None)


def main(argv):
  del argv
  f = flags.FLAGS
  if not f['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  os.makedirs(f.out, exist_ok=True)
  info_path = os.path.join(f.out, 'corpus.json')
  if os.path.exists(info_path):
    with open(info_path) as file:
      corpus_info = json.load(file)
  else:
    corpus_info = write_corpus(f, f.out)
    with open(info_path, 'w') as file:
      json.dump(corpus_info, file)
  crops = world_crops.labelled_crops(seed=0, split='query', per_class=f.queries, crop_size=64)
  queries = crops.images[crops.labels == corpus_info['category']]
  results = {}
  for init in f.inits:
    folder = os.path.join(f.out, f'index_{init}')
    if not os.path.exists(os.path.join(folder, 'index.json')):
      command.run(command.arguments(
          workdir=f.workdir, init=init, corpus=f'npy:{corpus_info["folder"]}', output=folder,
          fps=2.0, frame_size=96, regions=['grid', 'motion'], dedup=0.0))
    index = corpus.CorpusIndex(folder)
    positive = truth_of(index, corpus_info)
    runs = [label_loop(index, query, positive, f.max_reviews) for query in queries]
    index.close()
    n, r = len(positive), int(positive.sum())
    browse = {share: share * r * (n + 1) / (r + 1) for share in (0.5, 0.9)}
    summary = dict(vectors=n, rare=r, runs=runs, browsing_50=round(browse[0.5]),
                   browsing_90=round(browse[0.9]))
    for share in ('50', '90'):
      reached = [run[f'reviews_to_{share}'] for run in runs]
      summary[f'median_reviews_to_{share}'] = (float(np.median(reached)) if None not in reached
                                               else None)
    summary['found_after'] = {
        c: float(np.mean([run['found_after'].get(c, run['found'] / r) for run in runs]))
        for c in CHECKPOINTS if c <= f.max_reviews}
    results[init] = summary
    print(f'{init:8s} | {n} vectors, {r} rare ({r / n:.2%}) | reviews to 50%: median '
          f'{summary["median_reviews_to_50"]} (browsing {browse[0.5]:.0f}) | to 90%: median '
          f'{summary["median_reviews_to_90"]} (browsing {browse[0.9]:.0f}) | share found after '
          + ', '.join(f'{k}: {v:.3f} (browsing {k / n:.3f})'
                      for k, v in summary['found_after'].items()) + f' | {len(runs)} queries',
          flush=True)
  with open(os.path.join(f.out, 'labelling.json'), 'w') as file:
    json.dump(dict(category=f.category, results=results, max_reviews=f.max_reviews), file,
              indent=1)


if __name__ == '__main__':
  flags.DEFINE_string('workdir', None, 'The training run whose encoder is measured.')
  flags.DEFINE_string('out', '/tmp/labelling', 'Where the corpus and indexes go.')
  flags.DEFINE_list('inits', ['trained', 'pixels', 'random'], 'Encoders to compare.')
  flags.DEFINE_string('category', 'striped disc', 'The category made rare.')
  flags.DEFINE_float('rare_share', 0.01, 'Share of region crops that show it.')
  flags.DEFINE_integer('common_videos', 120, 'Videos without the category.')
  flags.DEFINE_integer('candidates', 400, 'Support-split videos to choose from.')
  flags.DEFINE_integer('queries', 5, 'Labelling runs, each from its own query crop.')
  flags.DEFINE_integer('max_reviews', 32000, 'A run stops after this many reviews.')
  flags.mark_flags_as_required(['workdir'])
  app.run(main)
