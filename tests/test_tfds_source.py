"""tfds:NAME[:SPLIT] on small TFDS datasets written here (TFDS writes them without TensorFlow)."""
import io
import json
import pickle
import shutil

import pytest
import tensorflow_datasets as tfds
from PIL import Image

from configs import npair
from vidjax import train
from vidjax.data import pipeline, sources
from vidjax.data.sources import base
from vidjax.data.sources import tfds as tfds_source
from vidjax.errors import ConfigError
from video_clips import square, square_x


def _jpeg(frame):
  buffer = io.BytesIO()
  Image.fromarray(frame).save(buffer, 'JPEG', quality=95)
  return io.BytesIO(buffer.getvalue())


class TinyClips(tfds.core.GeneratorBasedBuilder):
  """Videos of a moving square (train: 12 of 10-21 frames, test: 3), with a label."""
  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        'label': tfds.features.ClassLabel(num_classes=2),
        'clip': tfds.features.Sequence(tfds.features.Image(encoding_format='jpeg'))}))

  def _split_generators(self, dl_manager):
    return {'train': self._generate_examples(12), 'test': self._generate_examples(3)}

  def _generate_examples(self, count):
    for i in range(count):
      yield i, {'clip': [_jpeg(square(t, 48, 64)) for t in range(10 + i)], 'label': i % 2}


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  """tiny_clips as written, and the same with its clip feature declared a tfds Video (what
  TFDS writes for a Video on a machine with TensorFlow; this one has none)."""
  root = tmp_path_factory.mktemp('tfds')
  TinyClips(data_dir=str(root), file_format='array_record').download_and_prepare()
  features = root / 'tiny_clips' / '1.0.0' / 'features.json'
  spec = json.loads(features.read_text())
  spec['featuresDict']['features']['clip'] = {
      'pythonClassName': 'tensorflow_datasets.core.features.video_feature.Video',
      'video': {'shape': {'dimensions': ['-1', '-1', '-1', '3']}, 'dtype': 'uint8',
                'encodingFormat': 'jpeg'}}
  video_dir = root / 'as_video'
  shutil.copytree(root / 'tiny_clips', video_dir / 'tiny_clips')
  (video_dir / 'tiny_clips' / '1.0.0' / 'features.json').write_text(json.dumps(spec))
  return root


def _config(spec, data_dir, frame_size=0):
  config = npair.get_config('smoke')
  config.batch_size = 8
  config.data.update(train=spec, tfds_data_dir=str(data_dir), frame_size=frame_size)
  return config


@pytest.mark.parametrize('where', ['.', 'as_video'])
def test_frames_are_read_without_decoding_the_whole_video(data_dir, where):
  config = _config('tfds:tiny_clips', data_dir / where)
  source = sources.open_source(config.data.train, config)
  # TFDS stores examples in an order of its own.
  assert sorted(source.num_frames(v) for v in range(12)) == list(range(10, 22))
  assert source.fps(0) == base.DEFAULT_FPS and source.size(3) == (48, 64)
  longest = max(range(12), key=source.num_frames)
  for video, t in ((4, 9), (4, 2), (longest, 20)):
    assert square_x(source.frame(video, t)) == square_x(square(t, 48, 64))
  test = sources.open_source('tfds:tiny_clips:1.0.0:test', _config('', data_dir / where, 24))
  assert len(test) == 3 and test.frame(2, 9).shape == (24, 32, 3)
  assert pickle.loads(pickle.dumps(test)).frame(1, 3).shape == (24, 32, 3)


def test_the_spec_splits_name_version_and_split():
  assert tfds_source.parse_spec('ucf101') == ('ucf101', None)
  assert tfds_source.parse_spec('ucf101:2.0.0') == ('ucf101:2.0.0', None)
  assert tfds_source.parse_spec('ucf101/ucf101_1:2.0.0:train[:80%]') == (
      'ucf101/ucf101_1:2.0.0', 'train[:80%]')


def test_training_reads_a_tfds_video_dataset(data_dir, tmp_path):
  config = _config('tfds:tiny_clips:train', data_dir)
  batch = next(pipeline.make_train_iterator(sources.open_source(config.data.train, config),
                                            config))
  assert batch['views'].shape == (8, 2, 32, 32, 3)
  config.update(total_steps=2, eval_every=100, checkpoint_every=100)
  assert int(train.train_and_evaluate(config, str(tmp_path))['step']) == 2


@pytest.mark.parametrize('spec, message', [
    ('tfds:no_such_dataset', r"cannot open TFDS dataset 'no_such_dataset': .*not found"),
    ('tfds:mnist', r"TFDS dataset 'mnist' is not prepared in .*; prepare it there first"),
    ('tfds:tiny_clips:validation', r"cannot read split 'validation'"),
    ('tfds:', r'no dataset name; expected tfds:NAME\[:SPLIT\]'),
])
def test_bad_tfds_specs_are_one_line_errors(spec, message, data_dir):
  with pytest.raises(ConfigError, match=message) as error:
    sources.open_source(spec, _config(spec, data_dir))
  assert '\n' not in str(error.value)


def test_a_dataset_without_video_names_its_features(data_dir):
  config = _config('tfds:tiny_clips', data_dir)
  config.data.tfds_video_key = 'label'
  with pytest.raises(ConfigError, match=r"tfds_video_key='label' is not a video "
                     r"feature; its video features are \['clip'\]"):
    sources.open_source(config.data.train, config)
