"""python -m vidjax.serve and the labelling loop: the API end to end, proposals, answers under
concurrency, the export, hostile input, and the command lines around them."""
import concurrent.futures
import csv
import importlib.util
import io
import os
import subprocess
import sys

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from served_index import build_index, running_server
from vidjax.index import build, command, store
from vidjax.labels import propose
from vidjax.labels.store import LabelStore
from vidjax.search import corpus
from vidjax.serve.app import create_app

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def index_folder(smoke_run, tmp_path_factory):
  return build_index(smoke_run, str(tmp_path_factory.mktemp('served') / 'index'))


def _png(image) -> bytes:
  out = io.BytesIO()
  Image.fromarray(image).save(out, 'PNG')
  return out.getvalue()


def _query_image(folder) -> bytes:
  index = corpus.CorpusIndex(folder)
  db = store.connect(os.path.join(folder, 'metadata.sqlite'), readonly=True)
  row = dict(db.execute("SELECT * FROM vectors WHERE kind = 'motion' LIMIT 1").fetchone())
  crop = index.crop_of(row, 64)
  db.close()
  index.close()
  return _png(crop)


def _search(client, image: bytes, k=10, **form):
  response = client.post('/api/search', files={'image': ('q.png', image, 'image/png')},
                         data=dict(k=str(k), **form))
  assert response.status_code == 200, response.text
  return response.json()


def test_search_label_propose_answer_export(index_folder, tmp_path):
  export_dir = tmp_path / 'exported'
  with TestClient(create_app(index_folder, export_dir=str(export_dir))) as client:
    assert client.get('/api/health').json()['status'] == 'ok'
    found = _search(client, _query_image(index_folder), k=10, window='0')
    hits = found['hits']
    # The query is the region re-cut at 64 px from the frame; under 2x2 grid pooling that
    # moves its cosine to the indexed vector a little off 1.
    assert len(hits) == 10 and hits[0]['score'] > 0.95
    assert [h['score'] for h in hits] == sorted((h['score'] for h in hits), reverse=True)
    assert sum(found['histogram']['counts']) == found['histogram']['of']
    assert client.post('/api/labels', json={'name': 'striped disc'}).status_code == 201
    assert client.post('/api/labels', json={'name': 'striped disc'}).status_code == 200
    for hit, given in zip(hits[:3], ('accept', 'accept', 'reject')):
      reply = client.post('/api/answers', json={'id': hit['id'], 'label': 'striped disc',
                                               'answer': given, 'who': 'tester'})
      assert reply.status_code == 200, reply.text
    assert reply.json()['label'] == {'name': 'striped disc', 'created_by': 'anonymous',
                                     'accept': 2, 'reject': 1, 'skip': 0}
    # A later answer replaces the state: the first accept becomes a skip.
    client.post('/api/answers', json={'id': hits[0]['id'], 'label': 'striped disc',
                                      'answer': 'skip'})
    counts = client.get('/api/labels').json()[0]
    assert (counts['accept'], counts['reject'], counts['skip']) == (1, 1, 1)
    again = _search(client, _query_image(index_folder), k=3, window='0')['hits']
    assert again[0]['answers'] == {'striped disc': 'skip'}
    proposed = client.get(f'/api/labels/striped disc/proposals?k=20&seed={found["query_id"]}')
    assert proposed.status_code == 200, proposed.text
    proposed = proposed.json()
    assert proposed['method'] == 'nearest' and len(proposed['hits']) == 20
    answered = {h['id'] for h in hits[:3]}
    assert not answered & {h['id'] for h in proposed['hits']}
    # The other kinds of query and the pictures.
    region = client.post('/api/search/region', json={'id': hits[4]['id'], 'k': 3, 'window': 0})
    assert region.json()['hits'][0]['id'] == hits[4]['id']
    by_frame = client.post('/api/search/frame', json={'video': 1, 'time': 1.0, 'k': 5,
                                                      'exclude_same_video': True})
    assert by_frame.status_code == 200 and all(
        h['video_index'] != 1 for h in by_frame.json()['hits'])
    assert client.get('/api/videos').json()[1]['frames'] == 64
    frame = client.get('/api/videos/1/frame?time=1.0')
    assert frame.headers['content-type'] == 'image/jpeg' and frame.headers['x-frame-index'] == '10'
    thumb = Image.open(io.BytesIO(client.get(f'/api/thumbnails/{hits[1]["id"]}?size=48').content))
    assert thumb.size == (48, 48)
    assert client.get(f'/api/frames/{hits[1]["id"]}').headers['content-type'] == 'image/jpeg'
    exported = client.post('/api/export').json()
    assert exported['written'] == {'striped disc': 1} and exported['path'] == str(export_dir)
    assert client.get('/api/export.zip').headers['content-type'] == 'application/zip'
  files = os.listdir(export_dir / 'striped disc')
  assert files == [f'{hits[1]["id"]}-2.png']
  with open(export_dir / 'labels.csv') as f:
    rows = list(csv.DictReader(f))
  assert sorted((int(r['vector_id']), r['answer'], r['who']) for r in rows) == sorted([
      (hits[0]['id'], 'skip', 'anonymous'), (hits[1]['id'], 'accept', 'tester'),
      (hits[2]['id'], 'reject', 'tester')])
  assert next(r for r in rows if r['answer'] == 'accept')['path'] == os.path.join(
      'striped disc', files[0])


def test_rejected_crops_are_never_proposed_and_the_probe_takes_over(index_folder, tmp_path):
  labels = LabelStore(os.path.join(index_folder, 'metadata.sqlite'))
  labels.create_label('probe test')
  index = corpus.CorpusIndex(index_folder)
  rng = np.random.default_rng(0)
  seed = index.vectors_of([7])
  seen, methods = set(), []
  for _ in range(6):  # Reject the first and accept the rest of each batch.
    hits, method = propose.propose(index, labels.states('probe test'), 4, seed, rng)
    methods.append(method)
    assert len(hits) == 4 and not {h['id'] for h in hits} & seen
    for i, hit in enumerate(hits):
      labels.answer(hit, 'probe test', 'reject' if i == 0 else 'accept', 'script')
      seen.add(hit['id'])
  assert methods[0] == 'nearest' and methods[-1] == 'probe'
  states = labels.states('probe test')
  assert sum(a == 'reject' for a in states.values()) == 6
  hits, _ = propose.propose(index, states, len(index), seed, rng)
  assert not {h['id'] for h in hits} & set(states)
  labels.close()
  index.close()


def test_fit_probe_separates_two_clusters():
  rng = np.random.default_rng(0)
  positives = rng.normal(1, 0.3, (20, 8))
  negatives = rng.normal(-1, 0.3, (200, 8))
  w, b = propose.fit_probe(positives, negatives)
  assert ((positives @ w + b) > 0).all() and ((negatives @ w + b) < 0).all()


def test_hostile_requests_get_one_line_4xx(index_folder):
  bomb = io.BytesIO()
  Image.new('1', (30000, 30000)).save(bomb, 'PNG')  # 110 KB; 900 Mpixels once decoded.
  with TestClient(create_app(index_folder, max_upload_bytes=2**20)) as client:
    cases = [
        (client.post('/api/search', files={'image': ('q.png', b'', 'image/png')}), 400,
         'empty upload'),
        (client.post('/api/search', files={'image': ('q.png', b'GIF89a not really', 'image/gif')}),
         415, 'not an image'),
        (client.post('/api/search', files={'image': ('q.png', bomb.getvalue(), 'image/png')}),
         413, 'pixels'),
        (client.post('/api/search', files={'image': ('q.png', b'x' * (2**20 + 1), 'image/png')}),
         413, 'over the limit'),
        (client.post('/api/search', files={'image': ('../../etc/passwd', b'root:x:0:0', '')}),
         415, 'not an image'),
        (client.post('/api/search', data={'k': '5'}), 422, 'image'),
        (client.get('/api/thumbnails/99999999'), 404, 'no vector 99999999'),
        (client.get('/api/thumbnails/-1'), 404, 'no vector -1'),
        (client.get('/api/frames/abc'), 422, 'vector_id'),
        (client.get('/static/../../etc/passwd'), 404, 'Not Found'),
        (client.get('/static/%2e%2e/%2e%2e/etc/passwd'), 404, 'Not Found'),
        (client.post('/api/labels', json={'name': '../../etc'}), 400, 'label name'),
        (client.post('/api/answers', content=b'{"id": 1,', headers={
            'content-type': 'application/json'}), 422, 'malformed JSON'),
        (client.post('/api/answers', json={'id': 1, 'label': 'nobody', 'answer': 'accept'}),
         404, "no label 'nobody'"),
        (client.post('/api/answers', json={'id': 1, 'label': 'x', 'answer': 'maybe'}), 422,
         'answer'),
        (client.post('/api/search/region', json={'id': 0, 'box': [5000, 0, 6000, 10]}), 400,
         'outside'),
        (client.get('/api/labels/nobody/proposals'), 404, "no label 'nobody'"),
        (client.get('/api/videos/999/frame?time=1'), 404, 'no video 999'),
    ]
    for response, status, message in cases:
      detail = response.json().get('detail', '')
      assert response.status_code == status and message in detail, (response.request.url,
                                                                    response.text)
      assert '\n' not in detail
    client.post('/api/labels', json={'name': 'empty'})
    response = client.get('/api/labels/empty/proposals')
    assert response.status_code == 400 and 'no accepted crop' in response.json()['detail']


def _bench_module():
  spec = importlib.util.spec_from_file_location(
      'serve_load', os.path.join(ROOT, 'bench', 'serve_load.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_a_thousand_hostile_requests_beside_concurrent_work(index_folder, tmp_path):
  """The server answers every valid search, never crashes and loses no answer while 1000
  hostile requests (bench/serve_load.py's) arrive on loopback from other clients."""
  bench = _bench_module()
  image = _query_image(index_folder)
  with running_server(index_folder, max_upload_bytes=bench.LIMIT) as (url, _):
    with httpx.Client(base_url=url, timeout=120) as client:
      client.post('/api/labels', json={'name': 'load'})
      ids = [h['id'] for h in _search(client, image, k=40, window='0')['hits']]

    def attack(i):
      with httpx.Client(base_url=url, timeout=120) as client:
        return [(name, send(client).status_code) for name, send in (
            bench.HOSTILE[(i + j) % len(bench.HOSTILE)] for j in range(125))]

    def work(i):
      statuses = []
      with httpx.Client(base_url=url, timeout=120) as client:
        for j in range(10):
          statuses.append(client.post('/api/search', files={'image': ('q.png', image)},
                                      data={'k': '5'}).status_code)
          statuses.append(client.post('/api/answers', json={
              'id': ids[(4 * i + j) % len(ids)], 'label': 'load', 'answer': 'accept',
              'who': f'client{i}'}).status_code)
      return statuses

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
      attacks = [pool.submit(attack, i) for i in range(8)]
      works = [pool.submit(work, i) for i in range(4)]
      hostile_statuses = [s for f in attacks for s in f.result()]
      valid_statuses = [s for f in works for s in f.result()]
    assert len(hostile_statuses) == 1000
    assert all(400 <= status < 500 for _, status in hostile_statuses), sorted(
        set(hostile_statuses))
    assert {name for name, _ in hostile_statuses} == {name for name, _ in bench.HOSTILE}
    assert valid_statuses == [200] * 80
    assert httpx.get(f'{url}/api/health').status_code == 200
  db = store.connect(os.path.join(index_folder, 'metadata.sqlite'), readonly=True)
  assert db.execute("SELECT COUNT(*) FROM answers WHERE label = 'load'").fetchone()[0] == 40
  db.close()


def _run(module, *args):
  result = subprocess.run([sys.executable, '-m', module, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
  return result.returncode, result.stdout, result.stderr


def test_search_command_line_against_a_server(index_folder, tmp_path):
  (tmp_path / 'q.png').write_bytes(_query_image(index_folder))
  with running_server(index_folder) as (url, _):
    code, out, err = _run('vidjax.search', f'--server={url}', f'--image={tmp_path / "q.png"}',
                          '-k', '7')
    assert code == 0, err
    assert len(out.strip().splitlines()) == 8 and 'score' in out.splitlines()[0]
    (tmp_path / 'bad.png').write_bytes(b'')
    code, _, err = _run('vidjax.search', f'--server={url}', f'--image={tmp_path / "bad.png"}')
    assert code != 0 and 'empty file' in err and len(err.strip().splitlines()) == 1
  code, _, err = _run('vidjax.search', f'--server={url}', f'--image={tmp_path / "q.png"}')
  assert code != 0 and 'no answer' in err and len(err.strip().splitlines()) == 1, err


def test_labels_export_command_and_answers_survive_a_rebuild(index_folder, tmp_path):
  labels = LabelStore(os.path.join(index_folder, 'metadata.sqlite'))
  labels.create_label('kept')
  index = corpus.CorpusIndex(index_folder)
  rows = [index.row(i) for i in (3, 50, 51)]
  for row, given in zip(rows, ('accept', 'accept', 'reject')):
    labels.answer(row, 'kept', given, 'me')
  labels.close()
  index.close()
  output = tmp_path / 'labelled'
  code, out, err = _run('vidjax.labels', 'export', f'--index={index_folder}',
                        f'--output={output}', '--labels=kept')
  assert code == 0 and 'exported 2 accepted crops' in out, err
  assert sorted(int(name.split('-')[0]) for name in os.listdir(output / 'kept')) == sorted(
      r['id'] for r in rows[:2])
  code, _, err = _run('vidjax.labels', 'export', f'--index={index_folder}', f'--output={output}')
  assert code != 0 and '--overwrite' in err and len(err.strip().splitlines()) == 1
  code, _, err = _run('vidjax.labels', 'export', f'--index={index_folder}',
                      f'--output={tmp_path / "x"}', '--labels=nothing')
  assert code != 0 and 'no label nothing' in err
  code, _, err = _run('vidjax.labels', 'export', f'--index={index_folder}')
  assert code != 0 and 'export needs --output' in err and len(err.strip().splitlines()) == 1
  code, out, _ = _run('vidjax.labels', 'list', f'--index={index_folder}')
  assert any(line.split()[:3] == ['kept', '2', '1'] for line in out.splitlines())
  # A rebuild over the same corpus keeps every answer, pointed at the same regions.
  summary = build.read_summary(index_folder)
  workdir = summary['workdir']
  options = summary['options']
  command.run(command.arguments(
      workdir=workdir, output=index_folder, corpus='synthetic', fps=options['fps'],
      regions=options['regions'], grid_scales=[str(s) for s in options['grid_scales']],
      max_videos=options['max_videos'], overwrite=True))
  rebuilt = LabelStore(os.path.join(index_folder, 'metadata.sqlite'))
  kept = {(a['video'], a['frame'], a['kind'], a['x0'], a['y0']): (a['answer'], a['vector_id'])
          for a in rebuilt.latest_answers('kept')}
  assert {key: answer for key, (answer, _) in kept.items()} == {
      (r['video'], r['frame'], r['kind'], r['x0'], r['y0']): a
      for r, a in zip(rows, ('accept', 'accept', 'reject'))}
  assert sorted(vector for _, vector in kept.values()) == sorted(r['id'] for r in rows)
  rebuilt.close()


def test_serve_command_line_errors(tmp_path):
  code, _, err = _run('vidjax.serve', f'--index={tmp_path / "missing"}')
  assert code != 0 and 'no such folder' in err and len(err.strip().splitlines()) == 1
  code, _, err = _run('vidjax.serve')
  assert code != 0 and '--index is required' in err
  code, _, err = _run('vidjax.labels', f'--index={tmp_path}')
  assert code != 0 and 'expected one command, list or export' in err
  code, _, err = _run('vidjax.labels', 'list')
  assert code != 0 and '--index is required' in err
