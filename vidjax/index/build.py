"""From embedded shards to the finished index folder, built beside it and swapped in.

OUTPUT/ after a build:
  index.faiss       the faiss index (index.ivfdata beside it: a merged index's on-disk lists)
  metadata.sqlite   one row per vector (store.SCHEMA), the info table
  index.json        type, nprobe and its measured recall@10, counts, encoder, options
  report.json       videos indexed and skipped (with reasons), time taken
  encoder/          the encoder's config.json and checkpoint, so queries embed alike
"""
import json
import os
import shutil
import sqlite3
import sys
import time

import faiss
import numpy as np

from vidjax import atomic, disk_space
from vidjax.index import embedding, store, vectors

FINAL = 'final'
FINISHED = '.partial.finished'  # OUTPUT.partial once its index is swapped in.


def shard_dirs(output: str, count: int) -> list:
  return [embedding.shard_dir(output, i, count) for i in range(count)]


def check_shards(output: str, count: int, options: dict, corpus: str) -> list:
  """The shard folders of a finished embedding of `corpus` with `options`, or an
  IndexBuildError naming what is missing or different."""
  dirs = shard_dirs(output, count)
  expected = dict(options, corpus=corpus)
  for directory in dirs:
    path = os.path.join(directory, 'rows.sqlite')
    if not os.path.exists(path):
      raise embedding.IndexBuildError(
          f'{directory}: missing; run the shard ({os.path.basename(directory)}) first')
    db = store.connect(path, readonly=True)
    info = store.info(db)
    db.close()
    if not info.get('complete'):
      raise embedding.IndexBuildError(f'{directory}: not finished; rerun that shard to resume')
    seen = dict(info['options'], corpus=info['source'])
    if seen != expected:
      raise embedding.IndexBuildError(
          f'{directory}: embedded with another {embedding.differences(seen, expected)} than '
          'this merge asks for; merge with the flags the shards were embedded with')
  return dirs


def _shard_parts(directory: str) -> list:
  db = store.connect(os.path.join(directory, 'rows.sqlite'), readonly=True)
  parts = [embedding.part_path(directory, row['part'])
           for row in db.execute('SELECT part FROM parts ORDER BY part')]
  db.close()
  return parts


def finalise(output: str, count: int, factory: str, memory_bytes: float, encoder_dir: str,
             options: dict, description: dict) -> dict:
  """Builds OUTPUT from its `count` finished shards, which must have been embedded with
  `options`; returns index.json's contents."""
  started = time.time()
  dirs = check_shards(output, count, options, description['corpus'])
  per_shard = [vectors.Parts(_shard_parts(d)) for d in dirs]
  everything = vectors.Parts([p for parts in per_shard for p in parts.paths])
  if not len(everything):
    raise embedding.IndexBuildError(f'--output={output}: the corpus gave no vectors (every '
                                    'video skipped? see the shards\' rows.sqlite)')
  # The faiss index holds each vector once more; the metadata about 200 bytes a row.
  disk_space.warn_if_short(os.path.dirname(output), '--output',
                           len(everything) * (everything.dim * 4 + 200), 'the index')
  final = os.path.join(f'{output}.partial', FINAL)
  shutil.rmtree(final, ignore_errors=True)
  os.makedirs(final)
  with atomic.removed_on_error(final):  # Half an index: the space goes back.
    factory = factory or vectors.choose_factory(len(everything), everything.dim, memory_bytes)
    index = vectors.train(factory, everything)
    offsets = np.cumsum([0] + [len(p) for p in per_shard])
    if vectors.is_ivf(index) and count > 1:
      shard_files = []
      for i, parts in enumerate(per_shard):
        shard_index = faiss.clone_index(index)
        vectors.fill(shard_index, parts, int(offsets[i]))
        shard_files.append(os.path.join(final, f'shard-{i:04d}.faiss'))
        faiss.write_index(shard_index, shard_files[-1])
        del shard_index
      vectors.merge_shards(index, shard_files, os.path.join(final, vectors.ONDISK_LISTS))
      for path in shard_files:
        os.remove(path)
    else:
      vectors.fill(index, everything)
    nprobe, recall = vectors.tune_nprobe(index, everything)
    faiss.write_index(index, os.path.join(final, 'index.faiss'))
    del index

    summary = dict(description, factory=factory, nprobe=nprobe, recall_at_10=round(recall, 4),
                   vectors=len(everything), dim=everything.dim, shards=count,
                   built=time.strftime('%Y-%m-%d %H:%M:%S'))
    report = _merge_metadata(dirs, offsets, os.path.join(final, 'metadata.sqlite'), summary)
    if encoder_dir:
      shutil.copytree(encoder_dir, os.path.join(final, 'encoder'))
    atomic.write_json(os.path.join(final, 'index.json'), summary)
    atomic.write_json(os.path.join(final, 'report.json'), dict(
        report, vectors=len(everything), finalise_seconds=round(time.time() - started, 1)))
    old_metadata = os.path.join(output, 'metadata.sqlite')
    if os.path.exists(old_metadata):  # Labels people gave on the index being replaced.
      try:
        carried = store.carry_answers(old_metadata, os.path.join(final, 'metadata.sqlite'))
      except sqlite3.DatabaseError as e:
        kept = f'{output}.damaged-{time.strftime("%Y%m%d-%H%M%S")}.sqlite'
        shutil.copyfile(old_metadata, kept)
        print(f'warning: the previous index\'s metadata.sqlite is damaged ({e}): its answers '
              f'were not carried over; it is kept as {kept}', file=sys.stderr)
      else:
        if carried:
          print(f'carried over {carried} answers from the previous index')
  atomic.replace_folder(final, output)
  # Renamed first, then removed: a run killed while removing the embedded shards finds a
  # finished index and a leftover, not an unfinished build.
  os.replace(f'{output}.partial', f'{output}{FINISHED}')
  shutil.rmtree(f'{output}{FINISHED}', ignore_errors=True)
  return summary


def _merge_metadata(dirs, offsets, path: str, summary: dict) -> dict:
  """The shards' rows, ids shifted to the shard's place, into one database; the report of
  videos indexed and skipped."""
  db = store.connect(path)
  failed, at_open, videos = [], {}, 0
  with db:
    for directory, offset in zip(dirs, offsets):
      shard_db = store.connect(os.path.join(directory, 'rows.sqlite'), readonly=True)
      cursor = shard_db.execute(f'SELECT {", ".join(store.COLUMNS)} FROM vectors ORDER BY id')
      while batch := cursor.fetchmany(10000):
        store.insert_vectors(db, [dict(r, id=r['id'] + int(offset)) for r in batch])
      videos += shard_db.execute('SELECT COUNT(*) FROM videos').fetchone()[0]
      failed += [dict(r) for r in shard_db.execute(
          "SELECT path, reason FROM videos WHERE state = 'skipped'")]
      # Every shard opened the whole corpus, so each lists the same unopenable files.
      at_open = {item['path']: item for item in store.info(shard_db)['skipped_at_open']}
      shard_db.close()
    store.set_info(db, summary)
  db.close()
  skipped = list(at_open.values()) + failed
  return dict(videos_indexed=videos - len(failed), videos_skipped=len(skipped), skipped=skipped)


def read_summary(folder: str) -> dict:
  with open(os.path.join(folder, 'index.json')) as f:
    return json.load(f)
