"""python -m vidjax.index and vidjax.search: regions, the faiss choices, a build end to end,
resume after a kill, shards and their on-disk merge, safe rebuilds, and the search outputs."""
import contextlib
import io
import json
import os
import subprocess
import sys
import types

import av
import numpy as np
import pytest
from PIL import Image

from vidjax import atomic, workdir as runs
from vidjax.errors import ConfigError
from vidjax.index import build, command, embedding, regions, store, vectors
from vidjax.search import command as search_command, corpus
from video_clips import write_clip

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def trained_workdir(smoke_run):
  return smoke_run


def _flags(workdir, output, **overrides):
  values = dict(corpus='synthetic', fps=2.0, regions=['grid', 'motion'], grid_scales=['0.5'],
                max_videos=6)
  return command.arguments(workdir=workdir, output=str(output), **{**values, **overrides})


def _rows(folder):
  db = store.connect(os.path.join(folder, 'metadata.sqlite'), readonly=True)
  rows = [dict(r) for r in db.execute('SELECT * FROM vectors ORDER BY id')]
  db.close()
  return rows


def _vectors(folder):
  index = vectors.load(os.path.join(folder, 'index.faiss'))
  return np.stack([index.reconstruct(i) for i in range(index.ntotal)]) if not vectors.is_ivf(
      index) else None


def test_grid_windows_cover_the_frame_half_overlapping():
  boxes = np.array(regions.grid_boxes(96, 128, [0.5, 0.25]))
  covered = np.zeros((96, 128), bool)
  for x0, y0, x1, y1 in boxes.astype(int):
    covered[y0:y1, x0:x1] = True
  assert covered.all()
  sides = boxes[:, 2] - boxes[:, 0]
  assert set(sides) == {48.0, 24.0} and (boxes[:, 3] - boxes[:, 1] == sides).all()
  assert (boxes[:, 2] <= 128).all() and (boxes[:, 3] <= 96).all()
  assert (sides == 48).sum() == 3 * 5  # Rows at 0, 24, 48; columns at 0, 24, 48, 72, 80.


def test_frames_sampled_at_a_rate_and_near_duplicates_dropped():
  source = types.SimpleNamespace(num_frames=lambda v: 100, fps=10.0)
  assert list(regions.sampled_frames(source, 0, 2.0)) == list(range(0, 100, 5))
  assert len(regions.sampled_frames(source, 0, 0)) == 100
  dedup = regions.NearDuplicates(0.02)
  still = np.full((32, 32, 3), 100, np.uint8)
  changed = still.copy()
  changed[:, :16] = 200
  assert [dedup.keep(f) for f in (still, still + 1, changed, changed)] == [True, False, True,
                                                                          False]
  assert regions.NearDuplicates(0).keep(still) and regions.NearDuplicates(0).keep(still)


def test_moving_boxes_hold_the_moving_square():
  rng = np.random.default_rng(0)
  background = rng.integers(0, 60, (96, 128, 3), dtype=np.uint8)
  a, b = background.copy(), background.copy()
  texture = rng.integers(150, 256, (20, 20, 3), dtype=np.uint8)  # Objects have texture.
  a[30:50, 40:60] = texture
  b[30:50, 46:66] = texture
  boxes = regions.moving_boxes(a, b)
  assert boxes and any(x0 <= 40 and y0 <= 30 and x1 >= 60 and y1 >= 50
                       for x0, y0, x1, y1 in boxes)
  crop = regions.square_crop(a, boxes[0], 32)
  assert crop.shape == (32, 32, 3)


def test_index_type_follows_the_corpus_size():
  assert vectors.choose_factory(50_000, 128, 8e9) == 'Flat'
  assert vectors.choose_factory(1_000_000, 128, 8e9) == 'IVF4096,Flat'
  assert vectors.choose_factory(1_000_000, 128, 1e8) == 'OPQ64,IVF4096,PQ64'
  for count in (100, 5_000, 2_000_000):
    nlist = vectors.nlist_for(count)
    assert nlist & (nlist - 1) == 0 and nlist * vectors.MIN_TRAIN_PER_LIST <= max(count, 39)


def _clustered(count, dim, seed=0):
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(50, dim))
  points = centres[rng.integers(50, size=count)] + 0.3 * rng.normal(size=(count, dim))
  return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def test_nprobe_is_the_smallest_reaching_the_recall_target(tmp_path):
  data = _clustered(20_000, 16)
  for i, part in enumerate(np.array_split(data, 3)):
    np.save(tmp_path / f'p{i}.npy', part)
  parts = vectors.Parts(sorted(str(p) for p in tmp_path.glob('p*.npy')))
  queries = data[:50]
  scores, ids = vectors.exact_neighbours(parts, queries, 10)
  brute = np.argsort(-(queries @ data.T), axis=1)[:, :10]
  assert vectors.recall_at(ids, brute, 10) > 0.99
  index = vectors.train('IVF64,Flat', parts)
  vectors.fill(index, parts)
  nprobe, recall = vectors.tune_nprobe(index, parts, num_queries=300)
  assert recall >= vectors.RECALL_TARGET and nprobe < 64
  if nprobe > 1:  # Half of it falls short, or it would have been chosen.
    vectors.set_nprobe(index, nprobe // 2)
    assert vectors.tune_nprobe(index, parts, num_queries=300, target=1.01)[1] >= recall - 1e-9


def test_build_then_query_by_a_row_finds_that_row(trained_workdir, tmp_path):
  output = tmp_path / 'idx'
  command.run(_flags(trained_workdir, output))
  summary = build.read_summary(str(output))
  assert summary['checkpoint_step'] == 2 and summary['factory'] == 'Flat'
  assert summary['recall_at_10'] == 1.0
  assert os.path.isdir(output / 'encoder' / 'checkpoints' / '2')
  assert not os.path.exists(f'{output}.partial')
  rows = _rows(str(output))
  assert len(rows) == summary['vectors'] and [r['id'] for r in rows] == list(range(len(rows)))
  assert {r['kind'] for r in rows} == {'frame', 'grid', 'motion'}
  assert {r['video_index'] for r in rows} == set(range(6))
  index = corpus.CorpusIndex(str(output))
  for row in (rows[0], next(r for r in rows if r['kind'] == 'motion')):
    frame = index.frame_of(row)
    box = None if row['kind'] == 'frame' else (row['x0'], row['y0'], row['x1'], row['y1'])
    hits = index.search(index.embed(frame, box), 3, window_seconds=0)
    assert hits[0]['id'] == row['id'] and hits[0]['score'] > 0.999
  # One hit per video within the window; none from the excluded video.
  hits = index.search(index.embed(index.frame_of(rows[0])), 10, rows[0]['video'], 5.0)
  assert hits and all(h['video'] != rows[0]['video'] for h in hits)
  for i, a in enumerate(hits):
    assert all(a['video'] != b['video'] or abs(a['timestamp'] - b['timestamp']) >= 5.0
               for b in hits[i + 1:])
  index.close()


def test_a_hog_index_finds_a_region_by_its_own_crop(trained_workdir, tmp_path):
  output = tmp_path / 'idx'
  command.run(_flags(trained_workdir, output, init='hog', max_videos=2))
  summary = build.read_summary(str(output))
  assert summary['init'] == 'hog' and summary['dim'] == 324
  row = next(r for r in _rows(str(output)) if r['kind'] == 'motion')
  index = corpus.CorpusIndex(str(output))
  box = (row['x0'], row['y0'], row['x1'], row['y1'])
  hits = index.search(index.embed(index.frame_of(row), box), 3, window_seconds=0)
  assert hits[0]['id'] == row['id'] and hits[0]['score'] > 0.999
  index.close()


def test_a_killed_build_resumes_without_re_embedding_finished_videos(
    trained_workdir, tmp_path, monkeypatch):
  monkeypatch.setattr(embedding, 'PART_SECONDS', 0.0)  # A part per video.
  clean = tmp_path / 'clean'
  command.run(_flags(trained_workdir, clean, regions=[]))
  embedded = []
  original = embedding._embed_video

  def dies_on_the_fourth(source, video, *args):
    if len(embedded) == 3:
      raise KeyboardInterrupt
    embedded.append(video)
    return original(source, video, *args)

  monkeypatch.setattr(embedding, '_embed_video', dies_on_the_fourth)
  resumed = tmp_path / 'resumed'
  with pytest.raises(KeyboardInterrupt):
    command.run(_flags(trained_workdir, resumed, regions=[]))
  assert not os.path.exists(resumed) and embedded == [0, 1, 2]
  # A half-written part from the moment of the kill is discarded on resume.
  shard = embedding.shard_dir(str(resumed), 0, 1)
  np.save(os.path.join(shard, 'part-00099.npy'), np.zeros((3, 4), np.float32))
  embedded.clear()
  monkeypatch.setattr(embedding, '_embed_video', lambda source, video, *args: (
      embedded.append(video), original(source, video, *args))[1])
  command.run(_flags(trained_workdir, resumed, regions=[]))
  assert embedded == [3, 4, 5]
  assert [{k: r[k] for k in ('video', 'frame', 'kind')} for r in _rows(str(resumed))] == [
      {k: r[k] for k in ('video', 'frame', 'kind')} for r in _rows(str(clean))]
  np.testing.assert_allclose(_vectors(str(resumed)), _vectors(str(clean)), atol=1e-5)


def test_shards_merged_on_disk_match_one_build(trained_workdir, tmp_path):
  single, sharded = tmp_path / 'single', tmp_path / 'sharded'
  options = dict(index='IVF4,Flat', regions=['grid'])
  command.run(_flags(trained_workdir, single, **options))
  for shard in ('0/2', '1/2'):
    command.run(_flags(trained_workdir, sharded, shard=shard, **options))
  with pytest.raises(ConfigError, match='exists'):
    command.run(_flags(trained_workdir, single, **options))
  command.run(_flags(trained_workdir, sharded, merge=2, **options))
  assert os.path.exists(sharded / 'index.ivfdata') and not os.path.exists(f'{sharded}.partial')
  key = lambda r: (r['video'], r['frame'], r['kind'], r['x0'], r['y0'])
  single_rows, sharded_rows = _rows(str(single)), _rows(str(sharded))
  assert sorted(map(key, single_rows)) == sorted(map(key, sharded_rows))
  one, many = corpus.CorpusIndex(str(single)), corpus.CorpusIndex(str(sharded))
  assert len(one) == len(many) == len(single_rows)
  for row in single_rows[1::97]:  # Grid crops: a box.
    vector = one.embed(one.frame_of(row), (row['x0'], row['y0'], row['x1'], row['y1']))
    for index in (one, many):  # The row itself, or a crop embedded identically.
      hits = index.search(vector, 3, window_seconds=0)
      assert key(row) in [key(h) for h in hits if h['score'] > 0.9999]


def test_vectors_of_two_encoders_never_mix(trained_workdir, tmp_path):
  output = tmp_path / 'idx'
  command.run(_flags(trained_workdir, output, regions=[], shard='0/2'))
  # Resuming the shard, or merging, with another encoder is refused with one line.
  with pytest.raises(embedding.IndexBuildError, match='another encoder=') as error:
    command.run(_flags(trained_workdir, output, regions=[], shard='0/2', init='random'))
  assert "'init': 'trained'" in str(error.value) and '\n' not in str(error.value)
  command.run(_flags(trained_workdir, output, regions=[], shard='1/2'))
  with pytest.raises(embedding.IndexBuildError, match='another encoder='):
    command.run(_flags(trained_workdir, output, regions=[], merge=2, init='random'))
  command.run(_flags(trained_workdir, output, regions=[], merge=2))
  summary = build.read_summary(str(output))
  assert summary['options']['encoder']['checkpoint'].endswith(os.path.join('checkpoints', '2'))


def test_a_rebuild_replaces_the_index_only_when_complete(trained_workdir, tmp_path):
  output = tmp_path / 'idx'
  command.run(_flags(trained_workdir, output, regions=[], max_videos=2))
  before = _rows(str(output))
  with pytest.raises(ConfigError, match='--overwrite'):
    command.run(_flags(trained_workdir, output, regions=[], max_videos=3))
  with pytest.raises(ConfigError, match='--regions'):
    command.run(_flags(trained_workdir, output, regions=['circles'], overwrite=True))
  assert _rows(str(output)) == before
  command.run(_flags(trained_workdir, output, regions=[], max_videos=3, overwrite=True))
  assert len(_rows(str(output))) > len(before) and not os.path.exists(f'{output}.old')
  # A crash between the two renames of the swap: the old index comes back under its name.
  os.replace(output, f'{output}.old')
  atomic.recover_folder(str(output))
  assert os.path.exists(output / 'index.json')
  with pytest.raises(ConfigError, match='--shard'):
    command.parse_shard('2/2')


def test_unreadable_videos_are_skipped_and_listed(trained_workdir, tmp_path):
  videos = tmp_path / 'videos'
  videos.mkdir()
  for name in ('a.mp4', 'b.mp4'):
    write_clip(videos / name, 30, 64, 48, 10)
  (videos / 'broken.mp4').write_bytes(os.urandom(2000))
  output = tmp_path / 'idx'
  command.run(_flags(trained_workdir, output, corpus=f'videos:{videos}', regions=[],
                       max_videos=0, fps=5.0, dedup=0.0))
  with open(output / 'report.json') as f:
    report = json.load(f)
  assert report['videos_indexed'] == 2 and report['videos_skipped'] == 1
  assert report['skipped'][0]['path'].endswith('broken.mp4')
  assert {os.path.basename(r['video']) for r in _rows(str(output))} == {'a.mp4', 'b.mp4'}
  assert len(_rows(str(output))) == 2 * 15


def _search(*args):
  result = subprocess.run([sys.executable, '-m', 'vidjax.search', *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
  return result.returncode, result.stdout, result.stderr


def _search_in_process(**given):
  """`python -m vidjax.search` with `given` flags, run in this process: (stdout, the
  ConfigError or None)."""
  out = io.StringIO()
  try:
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
      search_command.run(search_command.arguments(**given))
  except ConfigError as e:
    return out.getvalue(), e
  return out.getvalue(), None


def test_search_command_line_outputs(trained_workdir, tmp_path):
  output = tmp_path / 'idx'
  command.run(_flags(trained_workdir, output, regions=['grid']))
  index = corpus.CorpusIndex(str(output))
  row = next(r for r in _rows(str(output)) if r['kind'] == 'frame' and r['video_index'] == 1)
  query = index.frame_of(row)
  Image.fromarray(query).save(tmp_path / 'query.png')
  code, out, err = _search(f'--index={output}', f'--image={tmp_path / "query.png"}', '-k', '5',
                           '--json', f'--sheet={tmp_path / "hits.png"}',
                           f'--video={tmp_path / "hits.mp4"}', '--window=0')
  assert code == 0, err
  hits = json.loads(out)
  assert len(hits) == 5 and hits[0]['id'] == row['id'] and hits[0]['score'] > 0.999
  assert [h['score'] for h in hits] == sorted((h['score'] for h in hits), reverse=True)
  with Image.open(tmp_path / 'hits.png') as sheet:
    assert sheet.width > 5 * 96
  with av.open(str(tmp_path / 'hits.mp4')) as container:
    stream = container.streams.video[0]
    frames = list(container.decode(video=0))
    assert stream.codec_context.pix_fmt == 'yuv420p' and stream.width % 2 == 0
    assert stream.height % 2 == 0 and len(frames) >= 5
  # The rest in this process: a fresh `python -m vidjax.search` spends ~10 s importing JAX.
  out, error = _search_in_process(index=str(output), frame='00001@1.0', box='10,10,58,58',
                                  k=4, exclude_same_video=True)
  assert error is None, error
  table = out.strip().splitlines()
  assert len(table) == 5 and 'score' in table[0]
  assert not any(line.endswith('synthetic/train/00001') for line in table[1:])
  (tmp_path / 'empty.jpg').write_bytes(b'')
  (tmp_path / 'corrupt.png').write_bytes((tmp_path / 'query.png').read_bytes()[:60])
  for given, message in ((dict(image=str(tmp_path / 'nothing.png')), 'no such file'),
                         (dict(image=str(tmp_path / 'empty.jpg')), 'empty file'),
                         (dict(image=str(tmp_path / 'corrupt.png')), 'not a readable image'),
                         (dict(frame='99999@1.0'), 'no video'),
                         (dict(frame='00001@1.0', box='5,5,1,1'), '--box'),
                         (dict(frame='00001@1.0', box='200,100,300,200'), 'outside the frame'),
                         (dict(image=str(tmp_path / 'query.png'), box='-50,0,-10,20'), 'outside'),
                         (dict(), 'one of --image')):
    _, error = _search_in_process(index=str(output), **given)
    assert error is not None and message in str(error) and '\n' not in str(error), (given, error)
  code, _, err = _search(f'--index={tmp_path / "no_index"}', '--image=x.png')
  assert code != 0 and 'no such folder' in err and len(err.strip().splitlines()) == 1, err
  index.close()


def test_index_quality_judges_hits_by_the_worlds_boxes():
  import importlib.util
  spec = importlib.util.spec_from_file_location(
      'index_quality', os.path.join(ROOT, 'bench', 'index_quality.py'))
  bench = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(bench)
  truth = bench.Truth(dict(seed=0, num_videos=8, num_frames=64, frame_size=96, fps=10.0))
  from vidjax.data.sources import world
  rows = truth.world.boxes(3, 20)
  row = rows[np.argmax(rows['visible_fraction'])]
  hit = dict(video='/corpus/videos/00003.mp4', timestamp=2.0,
             **{c: float(row[c]) for c in ('x0', 'y0', 'x1', 'y1')})
  assert truth.category(hit, 0.3) == world.CATEGORIES[row['category']].replace(' ', '_')
  truth.scale = 0.5  # The index read the frames at twice the world's size.
  doubled = dict(hit, **{c: 2 * hit[c] for c in ('x0', 'y0', 'x1', 'y1')})
  assert truth.category(doubled, 0.3) == world.CATEGORIES[row['category']].replace(' ', '_')
  far = dict(hit, x0=hit['x0'] + 300, x1=hit['x1'] + 300)
  assert truth.category(far, 0.3) == 'background'
