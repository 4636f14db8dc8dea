"""Labels and the answers people give, in the index's own SQLite (metadata.sqlite; the
tables are in vidjax/index/store.py).

A label is a name ("cow", "road blockage"). An answer says, for one vector (a frame or region
of the corpus) and one label, accept | reject | skip, who answered and when. Answers are
appended, never updated: the latest answer for a (vector, label) is its state, and the
whole history stays.

Writes go through one connection under a lock, each in its own transaction, in WAL mode:
concurrent clients never lose an answer, and readers never wait for the writer.
"""
import re
import sqlite3
import threading
import time

from vidjax.errors import ConfigError, NotFound
from vidjax.index import store as index_store

ANSWERS = ('accept', 'reject', 'skip')
# Label names become folder names on export: letters, digits, space, _ - . ; no path parts.
_LABEL_NAME = re.compile(r'^[\w][\w .-]{0,63}$')
_WHO = re.compile(r'^[\w .@+-]{1,64}$')


def check_label_name(name: str) -> str:
  if not isinstance(name, str) or not _LABEL_NAME.match(name) or name.strip() != name:
    raise ConfigError(f'label name {name!r}: expected 1-64 letters, digits, spaces, _ - or . '
                      '(starting with a letter or digit), as it becomes a folder name')
  return name


def check_who(who: str) -> str:
  if not isinstance(who, str) or not _WHO.match(who):
    raise ConfigError(f'who {who!r}: expected 1-64 letters, digits, spaces or . @ + - _')
  return who


class LabelStore:
  """Labels and answers of one index folder's metadata.sqlite."""

  def __init__(self, path: str):
    self.path = path
    self._lock = threading.Lock()
    self._db = sqlite3.connect(path, timeout=30, check_same_thread=False,
                               isolation_level=None)
    self._db.row_factory = sqlite3.Row
    self._db.execute('PRAGMA journal_mode=WAL')
    self._db.execute('PRAGMA synchronous=NORMAL')  # Durable in WAL mode up to a power cut.
    self._db.executescript(index_store.SCHEMA)
    self._readers = threading.local()

  def _reader(self) -> sqlite3.Connection:
    """This thread's read connection (a connection is not shared between threads' reads)."""
    db = getattr(self._readers, 'db', None)
    if db is None:
      db = sqlite3.connect(f'file:{self.path}?mode=ro', uri=True, check_same_thread=False)
      db.row_factory = sqlite3.Row
      self._readers.db = db
    return db

  def _write(self, sql: str, params=()):
    with self._lock:
      self._db.execute('BEGIN IMMEDIATE')
      try:
        cursor = self._db.execute(sql, params)
        self._db.execute('COMMIT')
      except BaseException:
        self._db.execute('ROLLBACK')
        raise
      return cursor

  def create_label(self, name: str, who: str = 'anonymous') -> bool:
    """Creates `name`; False when it already exists."""
    check_label_name(name)
    check_who(who)
    cursor = self._write('INSERT OR IGNORE INTO labels (name, created, created_by) '
                         'VALUES (?, ?, ?)', (name, time.time(), who))
    return cursor.rowcount == 1

  def labels(self) -> list:
    """[{name, created, created_by, accept, reject, skip}] counting each region's latest
    answer, in order of creation."""
    counts = {}
    for row in self.latest_answers():
      counts.setdefault(row['label'], dict.fromkeys(ANSWERS, 0))[row['answer']] += 1
    return [dict(row, **counts.get(row['name'], dict.fromkeys(ANSWERS, 0)))
            for row in self._reader().execute(
                'SELECT name, created, created_by FROM labels ORDER BY created, name')]

  def label(self, name: str) -> dict:
    """labels()'s row of one label, reading only its answers; NotFound if there is none."""
    row = self._reader().execute('SELECT name, created, created_by FROM labels WHERE name = ?',
                                 (name,)).fetchone()
    if row is None:
      raise NotFound(f'no label {name!r}; create it first')
    counts = dict.fromkeys(ANSWERS, 0)
    for answer in self.latest_answers(name):
      counts[answer['answer']] += 1
    return dict(row, **counts)

  def answer(self, region: dict, label: str, answer: str, who: str) -> int:
    """Records an answer for the vector whose metadata row is `region`; returns its seq."""
    if answer not in ANSWERS:
      raise ConfigError(f'answer {answer!r}: expected one of {", ".join(ANSWERS)}')
    check_who(who)
    if self._reader().execute('SELECT 1 FROM labels WHERE name = ?', (label,)).fetchone() is None:
      raise NotFound(f'no label {label!r}; create it first')
    cursor = self._write(
        'INSERT INTO answers (vector_id, label, answer, who, at, video, frame, kind, x0, y0, x1,'
        ' y1) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
        (int(region['id']), label, answer, who, time.time(),
         *(region[c] for c in index_store.REGION)))
    return cursor.lastrowid

  def latest_answers(self, label: str | None = None) -> list:
    """The latest answer for each (label, region), as dicts of the answers table, oldest
    first; only `label`'s if given."""
    sql, params = 'SELECT * FROM answers ORDER BY seq', ()
    if label is not None:
      sql, params = 'SELECT * FROM answers WHERE label = ? ORDER BY seq', (label,)
    latest = {}
    for row in self._reader().execute(sql, params):
      key = (row['label'],) + tuple(row[c] for c in index_store.REGION)
      latest.pop(key, None)  # Re-inserted: the dict keeps the order of latest answers.
      latest[key] = dict(row)
    return list(latest.values())

  def states(self, label: str) -> dict:
    """{vector id: latest answer} for `label` (answers whose region this index holds)."""
    return {row['vector_id']: row['answer'] for row in self.latest_answers(label)
            if row['vector_id'] >= 0}

  def answers_for(self, vector_ids) -> dict:
    """{vector id: {label: latest answer}} for the given ids (those with any answer)."""
    ids = [int(i) for i in vector_ids]
    found = {}
    for start in range(0, len(ids), 500):  # SQLite caps the number of parameters.
      chunk = ids[start:start + 500]
      for row in self._reader().execute(
          f'SELECT vector_id, label, answer FROM answers WHERE vector_id IN '
          f'({",".join("?" * len(chunk))}) ORDER BY seq', chunk):
        found.setdefault(row['vector_id'], {})[row['label']] = row['answer']
    return found

  def count_answers(self) -> int:
    return self._reader().execute('SELECT COUNT(*) FROM answers').fetchone()[0]

  def close(self):
    self._db.close()
    db = getattr(self._readers, 'db', None)
    if db is not None:
      db.close()
