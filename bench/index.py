r"""Corpus index benchmark: embedding throughput, memory flat in corpus size, and faiss build
time, peak memory, queries/s and recall@10 for 1M clustered vectors and a real corpus.

  python bench/index.py                                   # all, about 10 minutes on 2 cores
  python bench/index.py --world=/tmp/world --workdir=runs/npair   # + the exported world

Each measurement runs in its own process so its peak memory (ru_maxrss) is its own. Prints
one table and writes bench/results/index.json.
"""
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

flags.DEFINE_string('child', '', 'Internal: run one measurement (embed | clustered | world).')
flags.DEFINE_integer('videos', 20, 'Internal: videos for an embed measurement.')
flags.DEFINE_list('regions', [], 'Internal: regions for an embed measurement.')
flags.DEFINE_integer('vectors', 1_000_000, 'Vectors in the clustered benchmark.')
flags.DEFINE_integer('dim', 128, 'Their dimension.')
flags.DEFINE_integer('queries', 10_000, 'Queries timed.')
flags.DEFINE_string('world', '', 'An exported world (python -m vidjax.world --export) to index.')
flags.DEFINE_string('workdir', '', 'The training run whose encoder indexes --world.')
flags.DEFINE_string('out', os.path.join(ROOT, 'bench', 'results', 'index.json'), 'JSON output.')


def peak_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def clustered(count, dim, rng, centres):
  points = centres[rng.integers(len(centres), size=count)]
  points = points + 0.35 * rng.normal(size=points.shape).astype(np.float32)
  return points / np.linalg.norm(points, axis=1, keepdims=True)


def timed_queries(index, queries, k=10):
  started = time.time()
  _, ids = index.search(queries, k)
  return ids, len(queries) / (time.time() - started)


def child_embed(f) -> dict:
  """Index f.videos videos of the embedded world with the default model at random init."""
  from configs import npair
  from vidjax import workdir as runs
  from vidjax.index import build, command
  with tempfile.TemporaryDirectory() as tmp:
    config = npair.get_config()
    runs.save_config(tmp, config)
    started = time.time()
    command.run(command.arguments(workdir=tmp, init='random', corpus='synthetic',
                                  output=os.path.join(tmp, 'index'), fps=2.0, dedup=0.0,
                                  regions=f.regions, max_videos=f.videos))
    seconds = time.time() - started
    summary = build.read_summary(os.path.join(tmp, 'index'))
  frames = f.videos * int(np.ceil(config.synthetic.num_frames / 5))  # 10 fps read at 2.
  return dict(videos=f.videos, regions=','.join(f.regions) or 'frames only', frames=frames,
              vectors=summary['vectors'], seconds=round(seconds, 1),
              frames_per_s=round(frames / seconds, 1),
              vectors_per_s=round(summary['vectors'] / seconds, 1), peak_mb=round(peak_mb()))


def child_clustered(f) -> dict:
  """Build, tune and query an index of f.vectors clustered vectors through the build code."""
  import faiss
  from vidjax.index import vectors
  rng = np.random.default_rng(0)
  centres = rng.normal(size=(1000, f.dim)).astype(np.float32)
  with tempfile.TemporaryDirectory() as tmp:
    paths = []
    for i, start in enumerate(range(0, f.vectors, 100_000)):
      paths.append(os.path.join(tmp, f'part-{i:05d}.npy'))
      np.save(paths[-1], clustered(min(100_000, f.vectors - start), f.dim, rng, centres))
    parts = vectors.Parts(paths)
    memory = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2
    factory = vectors.choose_factory(len(parts), f.dim, memory)
    started = time.time()
    index = vectors.train(factory, parts)
    train_s = time.time() - started
    vectors.fill(index, parts)
    build_s = time.time() - started
    nprobe, tuned_recall = vectors.tune_nprobe(index, parts)
    tune_s = time.time() - started - build_s
    queries = clustered(f.queries, f.dim, rng, centres)
    ids, qps = timed_queries(index, queries)
    _, true_ids = vectors.exact_neighbours(parts, queries[:1000], 10)
    recall = vectors.recall_at(ids[:1000], true_ids, 10)
  return dict(vectors=len(parts), dim=f.dim, factory=factory, nprobe=nprobe,
              train_s=round(train_s, 1), build_s=round(build_s, 1), tune_s=round(tune_s, 1),
              recall_at_10_tuning=round(tuned_recall, 4), queries=f.queries,
              queries_s=round(f.queries / qps, 2), queries_per_s=round(qps),
              recall_at_10=round(recall, 4), peak_mb=round(peak_mb()))


def child_world(f) -> dict:
  """Index the exported world's videos with the workdir's encoder, then time queries."""
  from vidjax.index import build, command, vectors
  with tempfile.TemporaryDirectory() as tmp:
    output = os.path.join(tmp, 'index')
    started = time.time()
    command.run(command.arguments(workdir=f.workdir, corpus=f'videos:{f.world}/videos',
                                  output=output, fps=2.0, regions=['grid', 'motion'],
                                  frame_size=96))
    build_s = time.time() - started
    summary = build.read_summary(output)
    index = vectors.load(os.path.join(output, 'index.faiss'))
    vectors.set_nprobe(index, summary['nprobe'])
    rng = np.random.default_rng(0)
    picks = rng.choice(index.ntotal, f.queries)
    queries = np.stack([index.reconstruct(int(i)) for i in picks]) if not vectors.is_ivf(
        index) else _ivf_vectors(index, picks)
    queries = queries + 0.05 * rng.normal(size=queries.shape).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    _, qps = timed_queries(index, queries)
  return dict(corpus=f.world, vectors=summary['vectors'], factory=summary['factory'],
              nprobe=summary['nprobe'], recall_at_10=summary['recall_at_10'],
              build_s=round(build_s, 1), queries=f.queries, queries_s=round(f.queries / qps, 2),
              queries_per_s=round(qps), peak_mb=round(peak_mb()))


def _ivf_vectors(index, picks):
  import faiss
  faiss.extract_index_ivf(index).make_direct_map()
  return np.stack([index.reconstruct(int(i)) for i in picks])


def run_child(*args) -> dict:
  result = subprocess.run([sys.executable, os.path.abspath(__file__), *args], cwd=ROOT,
                          capture_output=True, text=True)
  if result.returncode:
    sys.exit(f'error: {" ".join(args)} failed:\n{result.stderr[-3000:]}')
  return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv):
  del argv
  f = flags.FLAGS
  if f.child:
    print(json.dumps({'embed': child_embed, 'clustered': child_clustered,
                      'world': child_world}[f.child](f)))
    return
  results = dict(embedding=[run_child('--child=embed', f'--videos={n}', f'--regions={r}')
                            for r in ('', 'grid,motion') for n in (40, 160)])
  for row in results['embedding']:
    print(f'embed {row["videos"]:3d} videos, {row["regions"]:12s}: {row["frames_per_s"]:6.1f} '
          f'frames/s, {row["vectors_per_s"]:7.1f} vectors/s, peak {row["peak_mb"]} MB')
  results['clustered'] = run_child('--child=clustered', f'--vectors={f.vectors}',
                                   f'--dim={f.dim}', f'--queries={f.queries}')
  c = results['clustered']
  print(f'{c["vectors"]} x {c["dim"]} clustered: {c["factory"]} nprobe {c["nprobe"]} | build '
        f'{c["build_s"]} s (train {c["train_s"]} s) | {c["queries"]} queries in {c["queries_s"]}'
        f' s ({c["queries_per_s"]}/s) | recall@10 {c["recall_at_10"]} | peak {c["peak_mb"]} MB')
  if f.world:
    results['world'] = run_child('--child=world', f'--world={f.world}',
                                 f'--workdir={f.workdir}', f'--queries={f.queries}')
    w = results['world']
    print(f'world {w["vectors"]} vectors: {w["factory"]} nprobe {w["nprobe"]} | build '
          f'{w["build_s"]} s | {w["queries"]} queries in {w["queries_s"]} s | recall@10 '
          f'{w["recall_at_10"]} | peak {w["peak_mb"]} MB')
  os.makedirs(os.path.dirname(f.out), exist_ok=True)
  with open(f.out, 'w') as file:
    json.dump(results, file, indent=1)


if __name__ == '__main__':
  app.run(main)
