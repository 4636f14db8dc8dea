"""python -m vidjax.world --export: the embedded world as mp4 files and labelled crop folders,
read back through the user's path (videos:, imagefolder: with contexts, the monitor)."""
import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import npair
from vidjax import train, world as world_cli
from vidjax.data import sources
from vidjax.data.sources import world, world_glyphs
from vidjax.errors import ConfigError
from vidjax.evaluate import datasets

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  out = tmp_path_factory.mktemp('export') / 'world'
  world_cli.export(str(out), num_videos=3, num_frames=12, support_per_class=2,
                   query_per_class=3, crop_size=32)
  return out


def test_export_writes_videos_crops_and_their_contexts(exported):
  assert sorted(os.listdir(exported)) == ['query', 'support', 'videos', 'world.json']
  assert sorted(os.listdir(exported / 'videos')) == ['00000.mp4', '00001.mp4', '00002.mp4']
  assert not os.path.exists(f'{exported}.partial')
  with open(exported / 'query' / 'crops.csv') as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 3 * len(world.CATEGORIES)
  assert {row['context'] for row in rows} <= set(world.PHOTOS)
  assert all(os.path.isfile(exported / 'query' / row['path']) for row in rows)
  assert {row['category'] for row in rows} == {world_cli.folder_name(c) for c in world.CATEGORIES}


def test_exported_videos_are_the_world_s_frames(exported):
  config = npair.get_config('smoke')
  config.data.frame_size = 0
  videos = sources.open_source(f'videos:{exported / "videos"}', config)
  rendered = world.SyntheticWorld(0, 'train', 3, 12, 96)
  assert len(videos) == 3 and videos.num_frames(1) == 12 and videos.fps(1) == 10
  difference = lambda a, b: np.abs(a.astype(float) - b).mean()
  for t in (0, 5, 11):
    decoded, original = videos.frame(1, t), rendered.frame(1, t)
    assert decoded.shape == original.shape
    # H.264 at crf 18 with 4:2:0 chroma smooths the pixel noise away, nothing more.
    assert difference(decoded, original) < 8
    assert difference(decoded, original) < 0.5 * difference(decoded, rendered.frame(2, t))


def test_imagefolder_sets_read_contexts_from_crops_csv(exported, tmp_path):
  config = npair.get_config('smoke')
  support = datasets.open_labelled(f'imagefolder:{exported / "support"}', 'support', config,
                                   '--support')
  assert len(support) == 2 * len(world.CATEGORIES)
  assert set(support.contexts) <= set(world.PHOTOS)
  with open(exported / 'support' / 'crops.csv') as f:
    rows = {row['path']: row['context'] for row in csv.DictReader(f)}
  for path, context in zip(support.ids, support.contexts):
    assert rows[os.path.relpath(path, exported / 'support')] == context
  (tmp_path / 'cat').mkdir()
  (tmp_path / 'cat' / 'a.png').write_bytes((exported / 'support' / next(iter(rows))).read_bytes())
  (tmp_path / 'crops.csv').write_text('file,background\na.png,x\n')
  with pytest.raises(ConfigError, match='needs the columns path and context'):
    datasets.open_labelled(f'imagefolder:{tmp_path}', 'support', config, '--support')


def test_the_monitor_watches_the_user_s_crops(exported, tmp_path):
  config = npair.get_config('smoke')
  config.update(total_steps=1, eval_every=100)
  config.monitor.support = f'imagefolder:{exported / "support"}'
  config.monitor.query = f'imagefolder:{exported / "query"}'
  config.data.train = f'videos:{exported / "videos"}'
  train.train_and_evaluate(config, str(tmp_path / 'run'))
  records = [line for line in open(tmp_path / 'run' / 'metrics.jsonl') if 'knn_top1' in line]
  assert len(records) == 2 and all('context_match' in line for line in records)


def test_glyphs_export_keeps_typefaces_apart_and_labels_right(tmp_path):
  out = tmp_path / 'glyphs'
  world_cli.export(str(out), num_videos=2, num_frames=6, support_per_class=2,
                   query_per_class=2, crop_size=32, family='glyphs')
  config = npair.get_config('smoke')
  config.data.frame_size = 0
  videos = sources.open_source(f'videos:{out / "videos"}', config)
  rendered = world.SyntheticWorld(0, 'train', 2, 6, 96, family='glyphs')
  difference = np.abs(videos.frame(1, 3).astype(float) - rendered.frame(1, 3)).mean()
  assert difference < 8
  for split in ('support', 'query'):
    with open(out / split / 'crops.csv') as f:
      rows = list(csv.DictReader(f))
    assert {row['category'] for row in rows} == {
        world_cli.folder_name(c) for c in world.FAMILIES['glyphs']}
    assert {row['typeface'] for row in rows} <= set(world_glyphs.EVAL_TYPEFACES)
    source = world.SyntheticWorld(0, split, 10**6, family='glyphs')
    for row in rows[::5]:  # The folder is the category of the object the crop is cut around.
      box = np.array(row['box'].split(), float)
      boxes = source.boxes(int(row['video']), int(row['frame']))
      corners = np.array([boxes[name] for name in ('x0', 'y0', 'x1', 'y1')]).T
      nearest = np.argmin(np.abs(corners - box).sum(axis=1))
      assert world_cli.folder_name(world.FAMILIES['glyphs'][boxes['category'][nearest]]) == (
          row['category'])
  assert '"family": "glyphs"' in (out / 'world.json').read_text()


def test_export_never_overwrites(exported):
  result = subprocess.run([sys.executable, '-m', 'vidjax.world', f'--export={exported}'],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode != 0 and 'Traceback' not in result.stderr
  assert f'--export={exported} exists' in result.stderr.strip().splitlines()[-1]
