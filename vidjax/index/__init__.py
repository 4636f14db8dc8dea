"""A corpus index: every kept frame (and region) of a video corpus embedded by an encoder,
in faiss with SQLite metadata; `python -m vidjax.index` builds one, vidjax.search queries it.

  regions.py    which frames and boxes get a vector
  embedding.py  one shard's vectors and rows, resumable
  vectors.py    the faiss side: type by size, training, nprobe by recall, on-disk merge
  build.py      shards -> the finished folder (its layout), swapped in
  store.py      the SQLite schema
"""
