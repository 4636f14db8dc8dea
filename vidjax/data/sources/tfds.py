"""tfds:NAME[:SPLIT]: a prepared TFDS video dataset, read with tfds.data_source (no TensorFlow).

NAME is what tfds.builder takes ('ucf101', 'ucf101/ucf101_1_256', 'ucf101:2.0.0'); SPLIT
defaults to 'train' and may be any TFDS split expression ('train[:80%]'). The dataset must
already be prepared in ArrayRecord format under config.data.tfds_data_dir (default: TFDS's
own, $TFDS_DATA_DIR or ~/tensorflow_datasets); nothing is downloaded. The frames are the
first feature that is a video (tfds.features.Video or a Sequence of Image), or
config.data.tfds_video_key.

Frames stay JPEG/PNG-encoded until asked for: a record's encoded frames are read once per
sample (each reading thread keeps the last record) and only the frames sampled are decoded.
Video lengths are counted once by reading every record, and cached (cache.py).
"""
import concurrent.futures
import io
import re
import types

import numpy as np
from PIL import Image

from vidjax.data.sources import base, cache
from vidjax.errors import ConfigError

_VERSION = re.compile(r'^\d+\.\d+\.(\d+|\*)(?=:|$)')


def parse_spec(rest: str):
  """'NAME[:VERSION][:SPLIT]' -> (name with its version, split or None)."""
  name, _, split = rest.partition(':')
  version = _VERSION.match(split)
  if version:
    name, split = f'{name}:{version.group()}', split[version.end() + 1:]
  return name, split or None


def _allow_video_features_without_tensorflow():
  """tfds.features.Video's constructor calls tf.dtypes.as_dtype, which needs TensorFlow
  (TFDS 4.9). Reading a prepared dataset needs nothing else from it, so when TensorFlow is
  absent give that module the two names it uses, mapped to numpy."""
  from tensorflow_datasets.core.features import video_feature
  try:
    import tensorflow  # noqa: F401  pylint: disable=unused-import
  except ImportError:
    video_feature.tf = types.SimpleNamespace(
        dtypes=types.SimpleNamespace(as_dtype=np.dtype), uint8=np.uint8, uint16=np.uint16)


def keep_encoded_decoder():
  import tensorflow_datasets as tfds

  class KeepEncoded(tfds.decode.Decoder):
    """Leaves a sequence of images as its encoded bytes."""

    def decode_example(self, serialized_example):  # The TensorFlow path; never used here.
      return serialized_example

    def decode_example_np(self, example):
      return example

    def decode_batch_example_np(self, example):
      return example

  return KeepEncoded()


def _video_key(features, wanted: str, where: str) -> str:
  import tensorflow_datasets as tfds
  is_video = lambda f: isinstance(f, tfds.features.Sequence) and isinstance(
      f.feature, tfds.features.Image)
  videos = [key for key, feature in features.items() if is_video(feature)]
  if wanted:
    if wanted not in videos:
      raise ConfigError(f'{where}: config.data.tfds_video_key={wanted!r} is not a video '
                        f'feature; its video features are {videos or "none"}')
    return wanted
  if not videos:
    raise ConfigError(f'{where}: the dataset has no video feature (a Video or a Sequence of '
                      f'Image); its features are {sorted(features)}')
  return videos[0]


class TfdsVideos(base.FileSource):
  """See the module docstring."""

  def __init__(self, name: str, split: str, data_dir, video_key: str, fps, frame_size,
               where: str):
    import tensorflow_datasets as tfds
    _allow_video_features_without_tensorflow()
    try:
      builder = tfds.builder(name, data_dir=data_dir or None)
    except Exception as e:  # TFDS raises many kinds; all mean "cannot use this dataset".
      raise ConfigError(f'{where}: cannot open TFDS dataset {name!r}: '
                        f'{str(e).splitlines()[0]}') from None
    if not builder.is_prepared():
      raise ConfigError(f'{where}: TFDS dataset {name!r} is not prepared in '
                        f'{builder.data_dir_root}; prepare it there first (nothing is '
                        'downloaded at training time)')
    self.key = _video_key(builder.info.features, video_key, where)
    self.name, self.split, self.data_dir = name, split, data_dir
    self.frame_size = frame_size
    # Per reading thread: its own tfds.data_source, and the last record it read.
    self._reader = base.PerThread(self._open)
    try:
      self._reader.get()
    except Exception as e:
      raise ConfigError(f'{where}: cannot read split {split!r} with tfds.data_source (needs '
                        f'the array_record file format): {str(e).splitlines()[0]}') from None
    counts = self._frame_counts_cached(builder)
    super().__init__([f'{name}/{split}/{i}' for i in range(len(counts))], counts,
                     fps or base.DEFAULT_FPS, [None] * len(counts), [])

  def _open(self) -> dict:
    import tensorflow_datasets as tfds
    _allow_video_features_without_tensorflow()  # Again in each Grain worker process.
    data = tfds.data_source(self.name, split=self.split, data_dir=self.data_dir or None,
                            download=False, decoders={self.key: keep_encoded_decoder()})
    return {'data': data, 'record': None}

  def _frame_counts_cached(self, builder):
    def count():
      data = self._reader.get()['data']
      with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return np.asarray(list(pool.map(lambda i: len(data[i][self.key]), range(len(data)))),
                          np.int64)

    stamps = [cache.file_stamp(str(p)) for p in sorted(builder.data_path.iterdir())]
    return cache.cached('tfds', (self.split, self.key, stamps), count)

  def _encoded(self, video: int):
    reader = self._reader.get()
    if reader['record'] is None or reader['record'][0] != video:
      reader['record'] = (video, reader['data'][video][self.key])
    return reader['record'][1]

  def size(self, video: int) -> tuple:
    return self.frame(video, 0).shape[:2]

  def frame(self, video: int, t: int) -> np.ndarray:
    self._check(video, t)
    with Image.open(io.BytesIO(self._encoded(video)[t])) as image:
      pixels = np.asarray(image.convert('RGB'))
    height, width = pixels.shape[:2]
    return base.resize(pixels, base.scaled_size(height, width, self.frame_size))


def open_tfds(rest: str, config, where: str):
  name, split = parse_spec(rest)
  if not name:
    raise ConfigError(f'{where}: no dataset name; expected tfds:NAME[:SPLIT]')
  return TfdsVideos(name, split or 'train', config.data.tfds_data_dir, config.data.tfds_video_key,
                    config.data.fps or 0, config.data.frame_size or 0, where)
