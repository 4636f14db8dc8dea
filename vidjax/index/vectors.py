"""The faiss side of a corpus index: the index type from the corpus size, training on a
sample, nprobe from measured recall, filling it from the embedded parts in bounded memory,
and the on-disk merge of shards.

Vectors are L2-normalised float32 and searched by inner product (cosine). The type follows
autofaiss's published heuristics (its package pins numpy < 2 and cannot sit beside JAX):
exact search below EXACT_BELOW vectors, IVF-Flat while the raw vectors fit in the memory
budget, OPQ + IVF-PQ beyond; about 4 sqrt(N) inverted lists, trained on at least 39 vectors
per list.
"""
import contextlib
import math
import os
import sys

import faiss
import numpy as np

EXACT_BELOW = 100_000
MIN_TRAIN_PER_LIST = 39
MAX_TRAIN_PER_LIST = 256
ADD_CHUNK = 65536
RECALL_TARGET = 0.95
ONDISK_LISTS = 'index.ivfdata'  # A merged index's inverted lists, beside index.faiss.


def nlist_for(count: int) -> int:
  """A power of two near 4 sqrt(count), with at least MIN_TRAIN_PER_LIST vectors per list."""
  wanted = 2 ** round(math.log2(max(1.0, 4 * math.sqrt(count))))
  while wanted > 1 and wanted * MIN_TRAIN_PER_LIST > count:
    wanted //= 2
  return max(1, wanted)


def pq_size(dim: int) -> int:
  """Sub-quantisers for PQ: the most among common sizes that divides dim, at most dim / 2."""
  for m in (64, 48, 32, 24, 16, 12, 8, 4, 2, 1):
    if dim % m == 0 and m <= max(1, dim // 2):
      return m
  return 1


def choose_factory(count: int, dim: int, memory_bytes: float) -> str:
  if count < EXACT_BELOW:
    return 'Flat'
  nlist = nlist_for(count)
  if count * dim * 4 * 1.2 < memory_bytes:
    return f'IVF{nlist},Flat'
  m = pq_size(dim)
  return f'OPQ{m},IVF{nlist},PQ{m}'


def is_ivf(index) -> bool:
  try:
    faiss.extract_index_ivf(index)
    return True
  except RuntimeError:
    return False


def new_index(factory: str, dim: int):
  return faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)


class Parts:
  """The embedded vectors of a build: a list of [n_i, D] float32 .npy files read memory-mapped,
  seen as one array of sum(n_i) rows in file order (row r has faiss id r)."""

  def __init__(self, paths):
    self.paths = list(paths)
    self.arrays = [np.load(p, mmap_mode='r') for p in self.paths]
    self.offsets = np.cumsum([0] + [len(a) for a in self.arrays])
    self.dim = self.arrays[0].shape[1] if self.arrays else 0

  def __len__(self):
    return int(self.offsets[-1])

  def take(self, rows) -> np.ndarray:
    """Rows (sorted or not) copied into memory."""
    rows = np.asarray(rows, np.int64)
    out = np.empty((len(rows), self.dim), np.float32)
    which = np.searchsorted(self.offsets, rows, side='right') - 1
    for part in np.unique(which):
      here = which == part
      out[here] = self.arrays[part][rows[here] - self.offsets[part]]
    return out

  def chunks(self, size: int = ADD_CHUNK):
    """(first row, [n, D] array) over all rows, at most `size` rows in memory at a time."""
    for part, array in enumerate(self.arrays):
      for start in range(0, len(array), size):
        yield int(self.offsets[part]) + start, np.ascontiguousarray(array[start:start + size])


def train(factory: str, parts: Parts, seed: int = 0):
  """An empty index of type `factory`, trained on a random sample of the parts."""
  index = new_index(factory, parts.dim)
  if not index.is_trained:
    nlist = faiss.extract_index_ivf(index).nlist if is_ivf(index) else 1
    count = min(len(parts), max(MIN_TRAIN_PER_LIST * nlist, MAX_TRAIN_PER_LIST * nlist // 4))
    if count < MIN_TRAIN_PER_LIST * nlist:
      raise ValueError(f'--index={factory}: {nlist} lists need at least '
                       f'{MIN_TRAIN_PER_LIST * nlist} vectors to train, the corpus has '
                       f'{len(parts)}; use fewer lists or Flat')
    rows = np.sort(np.random.default_rng(seed).choice(len(parts), count, replace=False))
    index.train(parts.take(rows))
  return index


def fill(index, parts: Parts, first_id: int = 0, progress=None):
  """Adds every part's vectors; ids first_id + row (IVF) or in order (flat)."""
  for start, chunk in parts.chunks():
    if is_ivf(index):
      index.add_with_ids(chunk, np.arange(first_id + start, first_id + start + len(chunk)))
    else:
      index.add(chunk)
    if progress:
      progress(start + len(chunk))


def exact_neighbours(parts: Parts, queries: np.ndarray, k: int):
  """(scores, ids) of the exact top k by inner product, one part chunk in memory at a time."""
  best_scores = np.full((len(queries), k), -np.inf, np.float32)
  best_ids = np.full((len(queries), k), -1, np.int64)
  for start, chunk in parts.chunks():
    flat = faiss.IndexFlatIP(parts.dim)
    flat.add(chunk)
    scores, ids = flat.search(queries, min(k, len(chunk)))
    scores = np.concatenate([best_scores, scores], axis=1)
    ids = np.concatenate([best_ids, np.where(ids >= 0, ids + start, -1)], axis=1)
    order = np.argsort(-scores, axis=1)[:, :k]
    best_scores = np.take_along_axis(scores, order, 1)
    best_ids = np.take_along_axis(ids, order, 1)
  return best_scores, best_ids


def recall_at(found_ids, true_ids, k: int) -> float:
  """Mean share of the true top k found in the top k."""
  hits = [len(set(f[:k]) & set(t[:k])) for f, t in zip(found_ids, true_ids)]
  return float(np.mean(hits)) / k


def set_nprobe(index, nprobe: int):
  if is_ivf(index):
    faiss.extract_index_ivf(index).nprobe = int(nprobe)


def tune_nprobe(index, parts: Parts, num_queries: int = 1000, k: int = 10, seed: int = 1,
                target: float = RECALL_TARGET):
  """(nprobe, recall@k at it): the smallest power-of-two nprobe whose recall@k against exact
  search reaches `target`, measured on held-back corpus vectors used as queries (each query's
  own vector is left out of both result lists); the best nprobe when none does."""
  rows = np.random.default_rng(seed).choice(len(parts), min(num_queries, len(parts)),
                                            replace=False)
  queries = parts.take(rows)

  def without_self(ids):
    return [[i for i in row if i != own][:k] for row, own in zip(ids, rows)]

  _, true_ids = exact_neighbours(parts, queries, k + 1)
  true_ids = without_self(true_ids)
  if not is_ivf(index):
    _, ids = index.search(queries, k + 1)
    return 0, recall_at(without_self(ids), true_ids, k)
  nlist = faiss.extract_index_ivf(index).nlist
  best = (1, -1.0)
  nprobe = 1
  while True:
    set_nprobe(index, nprobe)
    _, ids = index.search(queries, k + 1)
    recall = recall_at(without_self(ids), true_ids, k)
    if recall > best[1] + 1e-9:
      best = (nprobe, recall)
    if recall >= target or nprobe >= nlist:
      break
    nprobe = min(nlist, nprobe * 2)
  set_nprobe(index, best[0])
  return best


def merge_shards(trained_index, shard_paths, ivfdata_path: str):
  """IVF shards (each the trained index filled with its own ids) merged into
  `trained_index` with inverted lists stored on disk at ivfdata_path (faiss's merge_ondisk)."""
  from faiss.contrib.ondisk import merge_ondisk
  merge_ondisk(trained_index, list(shard_paths), ivfdata_path)
  return trained_index


def load(path: str):
  """The index at `path`: memory-mapped, or, for a merged index, with its on-disk inverted
  lists (already memory-mapped) looked up beside it. (faiss 1.15 crashes in search when both
  flags are given for an on-disk index.)"""
  if not os.path.exists(os.path.join(os.path.dirname(path), ONDISK_LISTS)):
    return faiss.read_index(path, faiss.IO_FLAG_MMAP)
  with _stdout_to_stderr():  # faiss prints where it found the lists on the C stdout.
    return faiss.read_index(path, faiss.IO_FLAG_ONDISK_SAME_DIR)


@contextlib.contextmanager
def _stdout_to_stderr():
  sys.stdout.flush()
  saved = os.dup(1)
  os.dup2(2, 1)
  try:
    yield
  finally:
    os.dup2(saved, 1)
    os.close(saved)
