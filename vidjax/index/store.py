"""The index's metadata in SQLite: one row per vector (its id is the faiss id), what was
embedded with what, and, while a shard is being built, which videos are finished."""
import json
import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
  id INTEGER PRIMARY KEY,     -- the vector's faiss id
  source TEXT NOT NULL,       -- the corpus spec it came from (videos:DIR, synthetic, ...)
  video TEXT NOT NULL,        -- the video's path (or the source's name for it)
  video_index INTEGER NOT NULL,
  frame INTEGER NOT NULL,     -- frame index in the source, as opened with the index's options
  timestamp REAL NOT NULL,    -- seconds from the video's first frame
  kind TEXT NOT NULL,         -- frame | grid | motion
  x0 REAL NOT NULL, y0 REAL NOT NULL, x1 REAL NOT NULL, y1 REAL NOT NULL,
  label TEXT                  -- label state; NULL until someone labels it
);
CREATE INDEX IF NOT EXISTS vectors_by_video ON vectors (video, frame);
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS videos (
  video_index INTEGER PRIMARY KEY, path TEXT NOT NULL,
  state TEXT NOT NULL,        -- done | skipped
  reason TEXT, vectors INTEGER NOT NULL DEFAULT 0, part INTEGER
);
CREATE TABLE IF NOT EXISTS parts (part INTEGER PRIMARY KEY, rows INTEGER NOT NULL);
"""
COLUMNS = ('id', 'source', 'video', 'video_index', 'frame', 'timestamp', 'kind',
           'x0', 'y0', 'x1', 'y1', 'label')


def connect(path: str, readonly: bool = False) -> sqlite3.Connection:
  """A connection in WAL mode (readers never block the writer), rows as sqlite3.Row."""
  if readonly:
    db = sqlite3.connect(f'file:{path}?mode=ro', uri=True, check_same_thread=False)
  else:
    db = sqlite3.connect(path, timeout=30, check_same_thread=False)
    db.execute('PRAGMA journal_mode=WAL')
    db.executescript(SCHEMA)
  db.row_factory = sqlite3.Row
  return db


def set_info(db, values: dict):
  db.executemany('INSERT OR REPLACE INTO info (key, value) VALUES (?, ?)',
                 [(key, json.dumps(value)) for key, value in values.items()])


def info(db) -> dict:
  return {row['key']: json.loads(row['value']) for row in db.execute('SELECT key, value FROM info')}


def rows(db, ids) -> list:
  """The metadata rows (dicts) of faiss ids, in the order given; a missing id gives None."""
  ids = [int(i) for i in ids]
  found = {}
  for start in range(0, len(ids), 500):  # SQLite caps the number of parameters.
    chunk = ids[start:start + 500]
    marks = ','.join('?' * len(chunk))
    for row in db.execute(f'SELECT * FROM vectors WHERE id IN ({marks})', chunk):
      found[row['id']] = dict(row)
  return [found.get(i) for i in ids]


def insert_vectors(db, records):
  """records: dicts with COLUMNS but label."""
  db.executemany(
      'INSERT INTO vectors (id, source, video, video_index, frame, timestamp, kind, x0, y0, '
      'x1, y1) VALUES (:id, :source, :video, :video_index, :frame, :timestamp, :kind, :x0, '
      ':y0, :x1, :y1)', records)
