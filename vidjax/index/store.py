"""The index's metadata in SQLite: one row per vector (its id is the faiss id), what was
embedded with what, while a shard is being built which videos are finished, and the labels
and answers people give (vidjax.labels writes those)."""
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
  x0 REAL NOT NULL, y0 REAL NOT NULL, x1 REAL NOT NULL, y1 REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS vectors_by_video ON vectors (video, frame);
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS videos (
  video_index INTEGER PRIMARY KEY, path TEXT NOT NULL,
  state TEXT NOT NULL,        -- done | skipped
  reason TEXT, vectors INTEGER NOT NULL DEFAULT 0, part INTEGER
);
CREATE TABLE IF NOT EXISTS parts (part INTEGER PRIMARY KEY, rows INTEGER NOT NULL);
""" + """
CREATE TABLE IF NOT EXISTS labels (
  name TEXT PRIMARY KEY,
  created REAL NOT NULL,        -- seconds since the epoch
  created_by TEXT NOT NULL
);
-- Appended, never updated: the latest answer per (vector, label) is its state. The region
-- is recorded too, so answers carry over to a rebuilt index whose ids differ (vector_id -1:
-- the rebuilt index has no such region).
CREATE TABLE IF NOT EXISTS answers (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  vector_id INTEGER NOT NULL,
  label TEXT NOT NULL REFERENCES labels (name),
  answer TEXT NOT NULL CHECK (answer IN ('accept', 'reject', 'skip')),
  who TEXT NOT NULL,
  at REAL NOT NULL,             -- seconds since the epoch
  video TEXT NOT NULL, frame INTEGER NOT NULL, kind TEXT NOT NULL,
  x0 REAL NOT NULL, y0 REAL NOT NULL, x1 REAL NOT NULL, y1 REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS answers_by_label ON answers (label, vector_id);
"""
COLUMNS = ('id', 'source', 'video', 'video_index', 'frame', 'timestamp', 'kind',
           'x0', 'y0', 'x1', 'y1')
REGION = ('video', 'frame', 'kind', 'x0', 'y0', 'x1', 'y1')  # What identifies a vector's region.


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
  """records: dicts with COLUMNS."""
  db.executemany(
      'INSERT INTO vectors (id, source, video, video_index, frame, timestamp, kind, x0, y0, '
      'x1, y1) VALUES (:id, :source, :video, :video_index, :frame, :timestamp, :kind, :x0, '
      ':y0, :x1, :y1)', records)


def carry_answers(old_path: str, new_path: str) -> int:
  """Copies the labels and answers of the metadata at old_path into new_path's, each answer
  pointed at the new vector of the same region (or -1); returns how many answers."""
  db = connect(new_path)
  try:
    db.execute('ATTACH DATABASE ? AS old', (old_path,))
    tables = {r[0] for r in db.execute("SELECT name FROM old.sqlite_master WHERE type='table'")}
    if 'answers' not in tables:
      return 0
    match = ' AND '.join(f'v.{c} = a.{c}' for c in REGION)
    with db:
      db.execute('INSERT OR IGNORE INTO labels SELECT name, created, created_by FROM old.labels')
      columns = 'label, answer, who, at, ' + ', '.join(REGION)
      db.execute(f'INSERT INTO answers (vector_id, {columns}) SELECT COALESCE((SELECT v.id '
                 f'FROM vectors v WHERE {match}), -1), {columns} FROM old.answers a ORDER BY seq')
    return db.execute('SELECT COUNT(*) FROM answers').fetchone()[0]
  finally:
    db.close()
