r"""Kills at random moments, counted: a training run, an index build and a server taking
answers, each SIGKILLed --kills times and restarted, then checked for anything lost.

  python bench/chaos.py --kills=20   # about half an hour on a 2-core CPU

- train: `main.py --config=configs/npair.py:smoke` (--train_steps, a checkpoint every 5)
  killed at a random moment and run again, until it has been killed --kills times and then
  finished; its logged losses must be those of an uninterrupted run, each step once.
- index: `python -m vidjax.index` over --videos videos of the embedded world, killed and run
  again the same way; its vectors and metadata rows must equal a build without kills.
- serve: `python -m vidjax.serve` on that index while 4 clients post answers; killed at a
  random moment and restarted --kills times; every answer it acknowledged (200 with a seq)
  must be in the index's SQLite, which must pass integrity_check.
A kill goes to the whole process group (SIGKILL: no handler runs). Kill times are uniform
over a window that covers start-up, work and saving. Writes bench/results/chaos.json.
"""
import json
import logging
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

import httpx
import numpy as np
from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from vidjax.index import vectors  # noqa: E402

KILLS = flags.DEFINE_integer('kills', 20, 'SIGKILLs per job.')
TRAIN_STEPS = flags.DEFINE_integer('train_steps', 1500, 'Steps of the smoke training run.')
VIDEOS = flags.DEFINE_integer('videos', 64, 'Videos of the embedded world to index (the '
                               'smoke config\'s world has 64).')
FPS = flags.DEFINE_float('fps', 8, 'Frames per second the index embeds.')
JOBS = flags.DEFINE_list('jobs', ['train', 'index', 'serve'], 'Which jobs to run.')
SEED = flags.DEFINE_integer('seed', 0, 'Seed of the kill times.')
OUT = flags.DEFINE_string('out', os.path.join(ROOT, 'bench', 'results', 'chaos.json'),
                          'Where the figures go.')


def _start(args, log):
  return subprocess.Popen([sys.executable] + args, cwd=ROOT, stdout=log, stderr=log,
                          start_new_session=True)


def _kill(process):
  try:
    os.killpg(process.pid, signal.SIGKILL)
  except ProcessLookupError:
    pass
  process.wait()


def _run_with_kills(args, kills, window, rng, log, finished=lambda: False):
  """Runs `args` again and again, SIGKILLing it at a time uniform in `window` (seconds) until
  it was killed `kills` times, then to the end; (kills, runs that ended by themselves).
  `finished()` tells a job that was killed after its work was done (a rerun then refuses
  to redo it) from one that failed."""
  killed = finished_early = 0
  while True:
    process = _start(args, log)
    if killed >= kills:
      if process.wait() != 0 and not finished():
        raise RuntimeError(f'{" ".join(args)} failed after the kills; see {log.name}')
      return killed, finished_early
    try:
      process.wait(timeout=rng.uniform(*window))
    except subprocess.TimeoutExpired:
      _kill(process)
      killed += 1
      continue
    if process.returncode != 0 and not finished():
      log.flush()
      with open(log.name) as f:
        last = f.read().strip().splitlines()[-1:]
      raise RuntimeError(f'{" ".join(args)} exited {process.returncode} after {killed} kills: '
                         f'{last}; see {log.name}')
    finished_early += 1
    return killed, finished_early


def _losses(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f]
  return [(r['step'], r['loss']) for r in rows if 'loss' in r]


def chaos_train(root, rng, log):
  args = ['main.py', '--config=configs/npair.py:smoke', f'--config.total_steps={TRAIN_STEPS.value}',
          '--config.checkpoint_every=5', '--config.eval_every=100000']
  straight = os.path.join(root, 'train_straight')
  subprocess.run([sys.executable] + args + [f'--workdir={straight}'], cwd=ROOT, check=True,
                 stdout=log, stderr=log)
  workdir = os.path.join(root, 'train_killed')
  kills, early = _run_with_kills(args + [f'--workdir={workdir}'], KILLS.value, (3, 30), rng, log)
  want, got = _losses(straight), _losses(workdir)
  steps = [s for s, _ in got]
  difference = max(abs(a - b) for (_, a), (_, b) in zip(want, got)) if len(want) == len(
      got) else float('inf')
  return dict(kills=kills, finished_before_all_kills=early, steps=TRAIN_STEPS.value,
              each_step_logged_once=steps == sorted(set(steps)) == [s for s, _ in want],
              max_loss_difference=difference, lost=int(difference > 1e-5 or steps != [
                  s for s, _ in want]))


def _index_contents(folder):
  index = vectors.load(os.path.join(folder, 'index.faiss'))
  vecs = np.stack([index.reconstruct(i) for i in range(index.ntotal)])
  db = sqlite3.connect(os.path.join(folder, 'metadata.sqlite'))
  rows = db.execute('SELECT * FROM vectors ORDER BY id').fetchall()
  db.close()
  return vecs, rows


def chaos_index(root, rng, log):
  workdir = os.path.join(root, 'encoder')
  subprocess.run([sys.executable, 'main.py', '--config=configs/npair.py:smoke',
                  f'--workdir={workdir}'], cwd=ROOT, check=True, stdout=log, stderr=log)
  args = ['-m', 'vidjax.index', f'--workdir={workdir}', '--corpus=synthetic',
          f'--fps={FPS.value}', '--regions=grid,motion', '--grid_scales=0.5',
          f'--max_videos={VIDEOS.value}']
  straight = os.path.join(root, 'index_straight')
  subprocess.run([sys.executable] + args + [f'--output={straight}'], cwd=ROOT, check=True,
                 stdout=log, stderr=log)
  killed = os.path.join(root, 'index_killed')
  kills, early = _run_with_kills(
      args + [f'--output={killed}'], KILLS.value, (3, 14), rng, log,
      finished=lambda: os.path.exists(os.path.join(killed, 'index.json')))
  (want_vectors, want_rows), (got_vectors, got_rows) = map(_index_contents, (straight, killed))
  same = want_vectors.shape == got_vectors.shape and np.array_equal(want_vectors, got_vectors)
  return dict(kills=kills, finished_before_all_kills=early, vectors=len(want_vectors),
              same_vectors=bool(same), same_metadata=want_rows == got_rows,
              lost=int(not same or want_rows != got_rows)), workdir, killed


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def chaos_serve(index_folder, rng, log):
  port = _free_port()
  url = f'http://127.0.0.1:{port}'
  args = ['-m', 'vidjax.serve', f'--index={index_folder}', f'--port={port}']
  db = sqlite3.connect(os.path.join(index_folder, 'metadata.sqlite'))
  count = db.execute('SELECT COUNT(*) FROM vectors').fetchone()[0]
  db.close()
  acknowledged, lock, stop = [], threading.Lock(), threading.Event()

  def client(number):
    local = random.Random(number)
    with httpx.Client(timeout=10) as http:
      while not stop.is_set():
        try:
          reply = http.post(f'{url}/api/answers', json={
              'id': local.randrange(count), 'label': 'chaos', 'who': f'client{number}',
              'answer': local.choice(['accept', 'reject', 'skip'])})
        except httpx.HTTPError:
          time.sleep(0.2)  # The server is down: try again.
          continue
        if reply.status_code == 200:
          with lock:
            acknowledged.append(reply.json()['seq'])

  def wait_healthy(process):
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
      try:
        if httpx.get(f'{url}/api/health', timeout=2).status_code == 200:
          return
      except httpx.HTTPError:
        time.sleep(0.2)
    raise RuntimeError(f'the server did not start; see {log.name}')

  process = _start(args, log)
  wait_healthy(process)
  httpx.post(f'{url}/api/labels', json={'name': 'chaos'}, timeout=10)
  clients = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(4)]
  for thread in clients:
    thread.start()
  for _ in range(KILLS.value):
    time.sleep(rng.uniform(0.5, 5))
    _kill(process)
    process = _start(args, log)
    wait_healthy(process)
  time.sleep(2)
  stop.set()
  for thread in clients:
    thread.join()
  _kill(process)
  db = sqlite3.connect(os.path.join(index_folder, 'metadata.sqlite'))
  stored = {row[0] for row in db.execute("SELECT seq FROM answers WHERE label = 'chaos'")}
  integrity = db.execute('PRAGMA integrity_check').fetchone()[0]
  db.close()
  lost = len(set(acknowledged) - stored)
  return dict(kills=KILLS.value, acknowledged=len(acknowledged), stored=len(stored),
              lost=lost, integrity_check=integrity)


def main(argv):
  del argv
  logging.getLogger('httpx').setLevel(logging.WARNING)  # One line per answer otherwise.
  rng = random.Random(SEED.value)
  results = {}
  started = time.time()
  root = tempfile.mkdtemp(prefix='vidjax_chaos_')  # Kept when something fails: its log.
  with open(os.path.join(root, 'log.txt'), 'w') as log:
    if 'train' in JOBS.value:
      results['train'] = chaos_train(root, rng, log)
      print('train', results['train'], flush=True)
    if 'index' in JOBS.value or 'serve' in JOBS.value:
      results['index'], _, index_folder = chaos_index(root, rng, log)
      print('index', results['index'], flush=True)
      if 'serve' in JOBS.value:
        results['serve'] = chaos_serve(index_folder, rng, log)
        print('serve', results['serve'], flush=True)
  shutil.rmtree(root)
  results['wall_seconds'] = round(time.time() - started)
  if OUT.value:
    os.makedirs(os.path.dirname(OUT.value), exist_ok=True)
    with open(OUT.value, 'w') as f:
      json.dump(results, f, indent=1)
  lost = sum(job['lost'] for job in results.values() if isinstance(job, dict))
  kills = sum(job['kills'] for job in results.values() if isinstance(job, dict))
  print(f'{lost} jobs lost something, over {kills} kills in {results["wall_seconds"]} s')
  sys.exit(1 if lost else 0)


if __name__ == '__main__':
  app.run(main)
