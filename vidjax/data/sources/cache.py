"""A small on-disk cache for what is slow to compute at open time (video indexes, lengths).

Entries live in $VIDJAX_CACHE (default ~/.cache/vidjax), one file per key, written under a
temporary name and renamed. A key must change whenever the input does (include file sizes
and modification times). A cache that cannot be written is only a slower next start.
"""
import hashlib
import os
import pickle

CACHE_DIR = os.environ.get('VIDJAX_CACHE', os.path.join(os.path.expanduser('~'), '.cache',
                                                        'vidjax'))


def file_stamp(path: str) -> tuple:
  """What changes when a file does: (absolute path, size, modification time in ns)."""
  stat = os.stat(path)
  return os.path.abspath(path), stat.st_size, stat.st_mtime_ns


def cached(kind: str, key, compute):
  """compute(), or its value stored under (kind, repr(key)) by an earlier call."""
  digest = hashlib.sha1(repr(key).encode()).hexdigest()
  path = os.path.join(CACHE_DIR, kind, f'{digest}.pkl')
  try:
    with open(path, 'rb') as f:
      return pickle.load(f)
  except (OSError, pickle.UnpicklingError, EOFError, AttributeError):
    pass
  value = compute()
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f'{path}.{os.getpid()}.tmp'
    with open(tmp, 'wb') as f:
      pickle.dump(value, f)
    os.replace(tmp, path)
  except OSError:
    pass
  return value
