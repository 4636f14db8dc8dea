"""An index folder is checked as it is opened: a damaged file is one line naming it and the
command that rebuilds the folder, never a faiss or SQLite traceback (or, worse, hits that
point at the wrong rows).

What is checked: index.json reads; index.faiss reads (faiss checks its own sizes as it
reads); metadata.sqlite passes SQLite's quick_check; the vector counts of index.json, the
faiss index and the metadata agree.
"""
import json
import os
import re
import sqlite3

from vidjax.errors import ConfigError
from vidjax.index import store, vectors


class DamagedIndex(ConfigError):
  """A file of an index folder is unreadable or disagrees with the others."""


def rebuild_command(folder: str, summary: dict | None) -> str:
  """The command that rebuilds `folder` (the answers given on it are carried over)."""
  summary = summary or {}
  workdir = summary.get('workdir', 'RUN')
  corpus = summary.get('corpus', 'CORPUS')
  return (f'python -m vidjax.index --workdir={workdir} --corpus={corpus} --output={folder} '
          '--overwrite (with the options in index.json)')


def _damaged(folder: str, name: str, what: str, summary) -> DamagedIndex:
  return DamagedIndex(f'--index={folder}: {name} is damaged ({what}); rebuild the index: '
                      f'{rebuild_command(folder, summary)}')


def read_summary(folder: str) -> dict:
  try:
    with open(os.path.join(folder, 'index.json')) as f:
      summary = json.load(f)
  except (OSError, ValueError) as e:
    raise _damaged(folder, 'index.json', f'not readable JSON: {e}', None) from None
  if not isinstance(summary, dict) or 'vectors' not in summary or 'options' not in summary:
    raise _damaged(folder, 'index.json', 'it lacks the vector count or the options', None)
  return summary


def open_faiss(folder: str, summary: dict):
  """The faiss index of the folder, its size checked against index.json."""
  path = os.path.join(folder, 'index.faiss')
  try:
    index = vectors.load(path)
  except RuntimeError as e:  # faiss's read errors; the last line says what failed.
    reason = str(e).strip().splitlines()[-1] if str(e).strip() else 'unreadable'
    reason = reason.split('failed:', 1)[-1].replace(f' in {path}', '')
    reason = re.sub(r'\s*\([^()]*\)\s*$', '', reason).strip()  # faiss appends a stale errno.
    raise _damaged(folder, 'index.faiss', f'faiss: {reason[:200]}', summary) from None
  if index.ntotal != summary['vectors']:
    raise _damaged(folder, 'index.faiss', f'{index.ntotal} vectors, index.json records '
                   f'{summary["vectors"]}', summary)
  return index


def open_metadata(folder: str, summary: dict) -> sqlite3.Connection:
  """The folder's metadata, read-only, after SQLite's quick_check and a count of its rows."""
  path = os.path.join(folder, 'metadata.sqlite')
  if not os.path.isfile(path):
    raise _damaged(folder, 'metadata.sqlite', 'missing', summary)
  db = store.connect(path, readonly=True)
  try:
    problems = [row[0] for row in db.execute('PRAGMA quick_check')]
    if problems != ['ok']:
      lines = [line for p in problems for line in p.splitlines() if not line.startswith('***')]
      raise _damaged(folder, 'metadata.sqlite', f'SQLite quick_check: {lines[0]}' + (
          f', and {len(lines) - 1} more problems' if len(lines) > 1 else ''), summary)
    rows = db.execute('SELECT COUNT(*) FROM vectors').fetchone()[0]
  except sqlite3.DatabaseError as e:
    db.close()
    raise _damaged(folder, 'metadata.sqlite', f'SQLite: {e}', summary) from None
  except DamagedIndex:
    db.close()
    raise
  if rows != summary['vectors']:
    db.close()
    raise _damaged(folder, 'metadata.sqlite', f'{rows} vector rows, index.json records '
                   f'{summary["vectors"]}', summary)
  return db
