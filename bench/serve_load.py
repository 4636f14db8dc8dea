r"""Load on the search server: latency under concurrent clients, and hostile input beside it.

  python bench/serve_load.py --index=/tmp/world_index --queries=/tmp/world/query

Starts `python -m vidjax.serve` on the index (a separate process, as a user runs it), then:
1. for each number of concurrent clients (--clients), every client sends --searches
   searches by an uploaded crop (files of --queries, an imagefolder) one after another;
   prints latency p50/p99 and searches/s;
2. sends --hostile hostile requests (oversized bodies with and without Content-Length,
   non-images, empty files, a 30k x 30k PNG, bad ids, path traversal, malformed JSON, bad
   label names) from 8 clients while 4 others search and answer; counts the answers by
   status, checks that every valid request got 200, that the server process is alive, and
   that every answer it acknowledged is in the index's SQLite (labels lost).
Writes bench/results/serve.json.
"""
import concurrent.futures
import io
import json
import logging
import os
import sqlite3
import subprocess
import sys
import time

import httpx
import numpy as np
from absl import app, flags
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT = 2**20  # The server's body limit in this benchmark (--max_upload_mb=1).


def _bomb() -> bytes:
  out = io.BytesIO()
  Image.new('1', (30000, 30000)).save(out, 'PNG')  # 110 KB; 900 Mpixels decoded.
  return out.getvalue()


def _chunks():  # No Content-Length: the server must count the bytes as they arrive.
  for _ in range(9):
    yield b'x' * (LIMIT // 8)


BOMB = _bomb()
HOSTILE = (
    ('empty file', lambda c: c.post('/api/search', files={'image': ('q.png', b'')})),
    ('not an image', lambda c: c.post('/api/search', files={'image': ('q.png', b'%PDF-1.4')})),
    ('30k x 30k PNG', lambda c: c.post('/api/search', files={'image': ('q.png', BOMB)})),
    ('body over the limit', lambda c: c.post('/api/search', files={
        'image': ('q.png', b'x' * (LIMIT + 1))})),
    ('chunked body over the limit', lambda c: c.post('/api/search', content=_chunks(), headers={
        'content-type': 'multipart/form-data; boundary=x'})),
    ('traversal in a file name', lambda c: c.post('/api/search', files={
        'image': ('../../etc/passwd', b'root:x:0:0')})),
    ('traversal in a path', lambda c: c.get('/static/..%2f..%2f..%2fetc%2fpasswd')),
    ('traversal in a label', lambda c: c.post('/api/labels', json={'name': '../../etc'})),
    ('malformed JSON', lambda c: c.post('/api/answers', content=b'{"id": 1,',
                                        headers={'content-type': 'application/json'})),
    ('bad id', lambda c: c.get('/api/thumbnails/987654321')),
    ('non-numeric id', lambda c: c.get('/api/frames/../../x')),
    ('answer to no label', lambda c: c.post('/api/answers', json={
        'id': 0, 'label': 'no such label', 'answer': 'accept'})),
)


def start_server(index: str, port: int) -> subprocess.Popen:
  server = subprocess.Popen(
      [sys.executable, '-m', 'vidjax.serve', f'--index={index}', f'--port={port}',
       '--max_upload_mb=1'], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True)
  deadline = time.time() + 300
  while time.time() < deadline:
    if server.poll() is not None:
      sys.exit(f'error: the server stopped: {server.stdout.read()}')
    try:
      if httpx.get(f'http://127.0.0.1:{port}/api/health', timeout=5).status_code == 200:
        return server
    except httpx.HTTPError:
      time.sleep(0.5)
  sys.exit('error: the server did not answer within 300 s')


def query_images(folder: str, count: int) -> list:
  paths = sorted(os.path.join(d, f) for d, _, files in os.walk(folder) for f in files
                 if f.lower().endswith(('.png', '.jpg', '.jpeg')))
  if not paths:
    sys.exit(f'error: --queries={folder}: no PNG or JPEG files')
  picks = np.random.default_rng(0).permutation(len(paths))[:count]
  out = []
  for i in picks:
    with open(paths[i], 'rb') as f:
      out.append(f.read())
  return out


def search(client, image: bytes, k: int = 20) -> float:
  started = time.perf_counter()
  response = client.post('/api/search', files={'image': ('q.png', image)}, data={'k': str(k)})
  if response.status_code != 200:
    raise RuntimeError(f'search answered {response.status_code}: {response.text[:200]}')
  return time.perf_counter() - started


def latency(url: str, images: list, clients: int, searches: int) -> dict:
  def client_run(i):
    with httpx.Client(base_url=url, timeout=300) as client:
      return [search(client, images[(i * searches + j) % len(images)]) for j in range(searches)]

  started = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(clients) as pool:
    times = np.concatenate(list(pool.map(client_run, range(clients)))) * 1000
  wall = time.perf_counter() - started
  return dict(clients=clients, searches=len(times),
              p50_ms=round(float(np.percentile(times, 50)), 1),
              p99_ms=round(float(np.percentile(times, 99)), 1),
              searches_per_s=round(len(times) / wall, 1))


def hostile_load(url: str, images: list, count: int, server) -> dict:
  per_client = count // 8
  with httpx.Client(base_url=url, timeout=300) as client:
    client.post('/api/labels', json={'name': 'load test', 'who': 'bench'})
    ids = [h['id'] for h in client.post('/api/search', files={'image': ('q.png', images[0])},
                                        data={'k': '50', 'window': '0'}).json()['hits']]

  def attack(i):
    statuses = []
    with httpx.Client(base_url=url, timeout=300) as client:
      for j in range(per_client):
        name, send = HOSTILE[(i + j) % len(HOSTILE)]
        try:
          statuses.append((name, send(client).status_code))
        except httpx.HTTPError as e:  # A refused body may end the connection early.
          statuses.append((name, f'connection: {type(e).__name__}'))
    return statuses

  def work(i):
    statuses, acknowledged = [], 0
    with httpx.Client(base_url=url, timeout=300) as client:
      for j in range(25):
        statuses.append(client.post('/api/search', files={'image': (
            'q.png', images[(i + j) % len(images)])}, data={'k': '10'}).status_code)
        answer = client.post('/api/answers', json={
            'id': ids[(7 * i + j) % len(ids)], 'label': 'load test',
            'answer': ('accept', 'reject', 'skip')[j % 3], 'who': f'client {i}'})
        statuses.append(answer.status_code)
        acknowledged += answer.status_code == 200
    return statuses, acknowledged

  started = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(12) as pool:
    attacks = [pool.submit(attack, i) for i in range(8)]
    works = [pool.submit(work, i) for i in range(4)]
    hostile = [s for f in attacks for s in f.result()]
    valid = [f.result() for f in works]
  by_status = {}
  for name, status in hostile:
    by_status.setdefault(str(status), {}).setdefault(name, 0)
    by_status[str(status)][name] += 1
  valid_statuses = [s for statuses, _ in valid for s in statuses]
  acknowledged = sum(n for _, n in valid)
  alive = server.poll() is None and httpx.get(f'{url}/api/health').status_code == 200
  return dict(hostile_sent=len(hostile),
              hostile_4xx=sum(isinstance(s, int) and 400 <= s < 500 for _, s in hostile),
              hostile_5xx=sum(isinstance(s, int) and s >= 500 for _, s in hostile),
              by_status=by_status, valid_sent=len(valid_statuses),
              valid_200=valid_statuses.count(200), answers_acknowledged=acknowledged,
              alive=alive, seconds=round(time.perf_counter() - started, 1))


def stored_answers(index: str) -> int:
  db = sqlite3.connect(f'file:{os.path.join(index, "metadata.sqlite")}?mode=ro', uri=True)
  count = db.execute("SELECT COUNT(*) FROM answers WHERE label = 'load test'").fetchone()[0]
  db.close()
  return count


def main(argv):
  del argv
  f = flags.FLAGS
  logging.getLogger('httpx').setLevel(logging.WARNING)  # One line per request otherwise.
  images = query_images(f.queries, 200)
  before = stored_answers(f.index) if os.path.exists(os.path.join(f.index, 'metadata.sqlite')) \
      else 0
  server = start_server(f.index, f.port)
  url = f'http://127.0.0.1:{f.port}'
  try:
    with httpx.Client(base_url=url, timeout=300) as client:
      health = client.get('/api/health').json()
      for image in images[:5]:  # Warm up: compile the encoder, page in the index.
        search(client, image)
    rows = [latency(url, images, int(n), f.searches) for n in f.clients]
    load = hostile_load(url, images, f.hostile, server)
  finally:
    server.terminate()
    server.wait(timeout=60)
  load['answers_stored'] = stored_answers(f.index) - before
  load['labels_lost'] = load['answers_acknowledged'] - load['answers_stored']
  print(f'index: {health["vectors"]} vectors ({health["factory"]}, nprobe {health["nprobe"]})')
  print(f'{"clients":>8} {"searches":>9} {"p50 ms":>8} {"p99 ms":>8} {"searches/s":>11}')
  for r in rows:
    print(f'{r["clients"]:>8} {r["searches"]:>9} {r["p50_ms"]:>8} {r["p99_ms"]:>8} '
          f'{r["searches_per_s"]:>11}')
  print(f'hostile: {load["hostile_sent"]} sent, {load["hostile_4xx"]} answered 4xx, '
        f'{load["hostile_5xx"]} 5xx; valid beside them: {load["valid_200"]}/{load["valid_sent"]} '
        f'answered 200; server alive: {load["alive"]}; answers acknowledged '
        f'{load["answers_acknowledged"]}, stored {load["answers_stored"]}, lost '
        f'{load["labels_lost"]}')
  os.makedirs(os.path.dirname(f.out), exist_ok=True)
  with open(f.out, 'w') as file:
    json.dump(dict(index=health, latency=rows, hostile=load), file, indent=1)
  print(f'written: {f.out}')


if __name__ == '__main__':
  flags.DEFINE_string('index', None, 'An index folder (python -m vidjax.index).')
  flags.DEFINE_string('queries', None, 'A folder of query crops (PNG/JPEG, any depth).')
  flags.DEFINE_integer('port', 8765, 'Loopback port for the server.')
  flags.DEFINE_list('clients', ['1', '4', '16'], 'Concurrent clients to measure.')
  flags.DEFINE_integer('searches', 50, 'Searches per client.')
  flags.DEFINE_integer('hostile', 1000, 'Hostile requests to send.')
  flags.DEFINE_string('out', os.path.join(ROOT, 'bench', 'results', 'serve.json'), 'JSON output.')
  flags.mark_flags_as_required(['index', 'queries'])
  app.run(main)
