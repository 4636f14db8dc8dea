"""Temporal sampling: every pdf keeps its offsets in range and inside the video."""
import ml_collections
import numpy as np
import pytest

from vidjax.data import pairs


def _config(**overrides):
  config = dict(pdf='uniform', tau=4, sigma=2.0, min_gap=0, num_positives=2)
  config.update(overrides)
  return ml_collections.ConfigDict(config)


def _draw(config, num_frames, n=2000, seed=0):
  rng = np.random.default_rng(seed)
  return [pairs.sample_frames(rng, num_frames, config) for _ in range(n)]


@pytest.mark.parametrize('pdf, low, high', [
    ('uniform', 1, 4), ('decreasing', 1, 4), ('consecutive', 1, 5), ('gaussian', 1, 8),
    ('video', 1, 49)])
def test_offsets_stay_in_range_and_in_video(pdf, low, high):
  config = _config(pdf=pdf)
  for frames, deltas in _draw(config, num_frames=50):
    assert deltas[0] == 0 and frames[0] - deltas[0] == frames[0]
    assert np.all((frames >= 0) & (frames < 50))
    assert np.all((np.abs(deltas[1:]) >= low) & (np.abs(deltas[1:]) <= high))
    np.testing.assert_array_equal(frames - frames[0], deltas)
  if pdf == 'consecutive':
    assert all(np.all(d[1:] > 0) for _, d in _draw(config, 50, n=100))


def test_uniform_is_flat_and_decreasing_falls():
  uniform = np.abs(np.concatenate([d[1:] for _, d in _draw(_config(), 1000, n=8000)]))
  counts = np.bincount(uniform, minlength=5)[1:]
  assert counts.min() > 0.8 * counts.max()
  decreasing = np.abs(np.concatenate(
      [d[1:] for _, d in _draw(_config(pdf='decreasing'), 1000, n=8000)]))
  counts = np.bincount(decreasing, minlength=5)[1:]
  assert np.all(np.diff(counts) < 0)


def test_gaussian_excludes_anchor_and_concentrates():
  deltas = np.abs(np.concatenate(
      [d[1:] for _, d in _draw(_config(pdf='gaussian', sigma=1.5), 1000, n=4000)]))
  assert deltas.min() >= 1
  assert np.mean(deltas <= 3) > 0.85


def test_min_gap_and_num_positives():
  config = _config(pdf='video', min_gap=10, num_positives=4)
  for frames, deltas in _draw(config, num_frames=30, n=500):
    assert len(frames) == 4 and np.all(np.abs(deltas[1:]) >= 10)
    assert len(set(frames.tolist())) == 4


def test_short_video_anchor_is_always_valid():
  # Forward offsets >= 2 in a 3-frame video: only anchor 0 has one.
  config = _config(pdf='consecutive', min_gap=2)
  anchors = {int(f[0]) for f, _ in _draw(config, num_frames=3, n=200)}
  assert anchors == {0}
  assert pairs.min_frames(config) == 3
