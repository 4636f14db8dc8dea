import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from configs import npair
from vidjax.data import sources
from vidjax.data.sources import world as synthetic
from vidjax.data.sources import world_crops, world_glyphs
from vidjax.errors import ConfigError
from vidjax.evaluate import encoders, fewshot

NUM_VIDEOS = 24
NUM_FRAMES = 48


@pytest.fixture(scope='module')
def world():
  return synthetic.SyntheticWorld(seed=0, split='train', num_videos=NUM_VIDEOS,
                                  num_frames=NUM_FRAMES)


@pytest.fixture(scope='module')
def all_boxes(world):
  """{(video, t): rows} for every frame of the world."""
  return {(video, t): world.boxes(video, t)
          for video in range(NUM_VIDEOS) for t in range(NUM_FRAMES)}


def _mean_abs_difference(a, b):
  return np.abs(a.astype(np.float32) - b.astype(np.float32)).mean()


def test_categories_are_ten_distinct_texture_shape_pairs():
  assert len(synthetic.CATEGORIES) == 10
  assert len(set(synthetic.CATEGORIES)) == 10
  assert all(len(name.split()) == 2 for name in synthetic.CATEGORIES)


def test_interface(world):
  assert len(world) == NUM_VIDEOS
  assert world.num_frames(3) == NUM_FRAMES
  assert world.fps == 10.0
  assert world.video_name(12) == 'synthetic/train/00012'
  frame = world.frame(3, 5)
  assert frame.shape == (96, 128, 3) and frame.dtype == np.uint8 and frame.flags.c_contiguous
  small = synthetic.SyntheticWorld(frame_size=64)
  assert small.frame(0, 0).shape == (64, 86, 3) and small.shape == (64, 86)
  rows = small.boxes(0, 0)
  assert rows.dtype == synthetic.BOX_DTYPE
  assert np.all(rows['x1'] <= 86) and np.all(rows['y1'] <= 64)
  assert world.context(3) in synthetic.PHOTOS


def test_frames_are_a_pure_function_of_seed_split_video_and_t(world):
  expected = world.frame(5, 17)
  synthetic._video_plan.cache_clear()
  again = synthetic.SyntheticWorld(seed=0, split='train', num_videos=NUM_VIDEOS).frame(5, 17)
  np.testing.assert_array_equal(again, expected)
  assert _mean_abs_difference(synthetic.SyntheticWorld(seed=1).frame(5, 17), expected) > 20


def test_splits_hold_different_videos():
  frames = [synthetic.SyntheticWorld(split=split).frame(0, 0) for split in synthetic.SPLITS]
  for i in range(len(frames)):
    for j in range(i + 1, len(frames)):
      assert _mean_abs_difference(frames[i], frames[j]) > 20


def test_adjacent_frames_are_much_closer_than_other_videos(world):
  adjacent = np.mean([_mean_abs_difference(world.frame(v, 10), world.frame(v, 11))
                      for v in range(8)])
  across = np.mean([_mean_abs_difference(world.frame(v, 10), world.frame(v + 1, 10))
                    for v in range(8)])
  assert adjacent < 0.3 * across


def test_boxes_are_valid_and_cover_every_category(all_boxes):
  rows = np.concatenate(list(all_boxes.values()))
  assert rows.dtype == synthetic.BOX_DTYPE
  assert np.all((rows['x0'] >= 0) & (rows['y0'] >= 0) & (rows['x1'] <= 128) & (rows['y1'] <= 96))
  assert np.all((rows['x1'] > rows['x0']) & (rows['y1'] > rows['y0']))
  assert np.all((rows['visible_fraction'] >= 0) & (rows['visible_fraction'] <= 1))
  assert set(rows['category'].tolist()) == set(range(len(synthetic.CATEGORIES)))


def test_objects_move_cross_the_border_and_get_occluded(all_boxes):
  moved, touching_border, entering_or_leaving, occluded_inside = 0, 0, 0, 0
  for video in range(NUM_VIDEOS):
    tracks = {}
    for t in range(NUM_FRAMES):
      for row in all_boxes[video, t]:
        tracks.setdefault(row['instance'], []).append(row)
    for track in tracks.values():
      track = np.array(track)
      centres = np.stack([track['x0'] + track['x1'], track['y0'] + track['y1']], axis=1) / 2
      moved += np.ptp(centres, axis=0).max() > 5
      at_border = ((track['x0'] == 0) | (track['y0'] == 0)
                   | (track['x1'] == 128) | (track['y1'] == 96))
      touching_border += at_border.any()
      entering_or_leaving += len(track) < NUM_FRAMES
      occluded_inside += np.any(~at_border & (track['visible_fraction'] < 0.9))
  assert moved >= 20
  assert touching_border >= 10
  assert entering_or_leaving >= 5
  assert occluded_inside >= 5


def test_pickle_round_trip_renders_identical_frames(world):
  clone = pickle.loads(pickle.dumps(world))
  np.testing.assert_array_equal(clone.frame(2, 7), world.frame(2, 7))
  np.testing.assert_array_equal(clone.boxes(2, 7), world.boxes(2, 7))


def test_concurrent_reads_match_serial_reads(world):
  keys = [(video, t) for video in range(4) for t in (0, 9, 30)]
  synthetic._video_plan.cache_clear()
  with ThreadPoolExecutor(4) as pool:
    parallel = list(pool.map(lambda key: world.frame(*key), keys))
  for key, frame in zip(keys, parallel):
    np.testing.assert_array_equal(frame, world.frame(*key))


@pytest.mark.parametrize('call', [
    lambda w: synthetic.SyntheticWorld(split='validation'),
    lambda w: synthetic.SyntheticWorld(num_videos=0),
    lambda w: w.frame(-1, 0),
    lambda w: w.frame(NUM_VIDEOS, 0),
    lambda w: w.frame(0, NUM_FRAMES),
    lambda w: w.boxes(0, -1),
    lambda w: w.num_frames(NUM_VIDEOS),
    lambda w: w.video_name(-1),
    lambda w: world_crops.labelled_crops(split='train2'),
    lambda w: world_crops.labelled_crops(per_class=50, num_videos=3),
    lambda w: w.context(NUM_VIDEOS),
])
def test_bad_arguments_raise_value_error(world, call):
  with pytest.raises(ValueError):
    call(world)


def test_labelled_crops_are_balanced_distinct_and_deterministic():
  crops = world_crops.labelled_crops(seed=0, split='support', per_class=4, crop_size=24)
  images, labels = crops.images, crops.labels
  assert images.shape == (40, 24, 24, 3) and images.dtype == np.uint8
  assert labels.dtype == np.int32 and len(crops) == 40
  np.testing.assert_array_equal(np.bincount(labels), np.full(len(synthetic.CATEGORIES), 4))
  assert len(np.unique(images.reshape(len(images), -1), axis=0)) == len(images)
  again = world_crops.labelled_crops(seed=0, split='support', per_class=4, crop_size=24)
  np.testing.assert_array_equal(again.images, images)
  np.testing.assert_array_equal(again.labels, labels)
  # Each crop records where it came from: its video's photograph, frame and box.
  source = synthetic.SyntheticWorld(seed=0, split='support', num_videos=int(crops.videos.max()) + 1)
  for i in (0, 17, 39):
    assert crops.contexts[i] == source.context(crops.videos[i])
    frame = source.frame(crops.videos[i], crops.times[i])
    np.testing.assert_array_equal(world_crops.crop(frame, crops.boxes[i], 24), images[i])


def test_backgrounds_are_photographs_shared_by_many_videos():
  videos = synthetic.SyntheticWorld(seed=0, split='train', num_videos=200)
  photos = [videos.context(v) for v in range(200)]
  assert len(set(photos)) == len(synthetic.PHOTOS)  # Each photograph is seen ...
  assert max(photos.count(p) for p in set(photos)) >= 10  # ... by many videos.
  # The camera pans: a video's background at t = 0 and t = 40 differs, but less than two
  # videos over different photographs do.
  first, later = videos.frame(0, 0), videos.frame(0, 40)
  other = next(v for v in range(200) if photos[v] != photos[0])
  assert 3 < _mean_abs_difference(first, later) < _mean_abs_difference(first, videos.frame(other, 0))


def _colour_histograms(images):
  """Joint 4x4x4 RGB histogram per image."""
  bins = images // 64
  codes = (bins[..., 0] * 16 + bins[..., 1] * 4 + bins[..., 2]).reshape(len(images), -1)
  return np.stack([np.bincount(code, minlength=64) for code in codes])


def test_raw_pixels_stay_far_below_half_and_colour_alone_is_chance():
  support_crops = world_crops.labelled_crops(split='support', per_class=20)
  query_crops = world_crops.labelled_crops(split='query', per_class=30)
  support, support_labels = support_crops.images, support_crops.labels
  query, query_labels = query_crops.images, query_crops.labels
  pixels = fewshot.few_shot_nn_accuracy(encoders.flat_centred(support), support_labels,
                                        encoders.flat_centred(query), query_labels, shots=5)
  assert pixels.shape == (10,)
  assert pixels.mean() < 0.5
  colours = fewshot.few_shot_nn_accuracy(encoders.flat_centred(_colour_histograms(support)),
                                         support_labels,
                                         encoders.flat_centred(_colour_histograms(query)),
                                         query_labels, shots=5)
  assert colours.mean() < 0.2


def test_families_are_selected_by_spec_and_differ():
  config = npair.get_config('smoke')
  textures = sources.open_source('synthetic', config)
  glyphs = sources.open_source('synthetic:glyphs', config)
  assert textures.family == 'textures' and textures.categories == synthetic.CATEGORIES
  assert glyphs.family == 'glyphs'
  assert glyphs.categories == tuple(f'glyph {c}' for c in world_glyphs.CHARACTERS)
  assert glyphs.video_name(3) == 'synthetic/glyphs/train/00003'
  assert _mean_abs_difference(glyphs.frame(0, 0), textures.frame(0, 0)) > 20
  with pytest.raises(ConfigError, match="unknown world family 'letters'"):
    sources.open_source('synthetic:letters', config)


def test_glyph_typefaces_of_training_and_labelled_videos_are_disjoint():
  assert not set(world_glyphs.TRAIN_TYPEFACES) & set(world_glyphs.EVAL_TYPEFACES)
  seen = {}
  for split in synthetic.SPLITS:
    source = synthetic.SyntheticWorld(split=split, num_videos=12, family='glyphs')
    seen[split] = {source.typeface(video, row['instance'])
                   for video in range(12) for row in source.boxes(video, 0)}
  assert seen['train'] <= set(world_glyphs.TRAIN_TYPEFACES) and len(seen['train']) >= 5
  for split in ('support', 'query'):
    assert seen[split] <= set(world_glyphs.EVAL_TYPEFACES) and len(seen[split]) >= 5
  assert synthetic.SyntheticWorld(num_videos=2).typeface(0, 0) == ''


def test_a_glyph_is_its_character_s_outline_with_open_counters():
  # 'B' in a bold face: solid strokes around two holes; the centre of each bowl is empty.
  inside = world_glyphs.glyph_shape('B', 'DejaVuSans-Bold')
  x = np.linspace(-1, 1, 41)
  mask = inside(x[None, :], x[:, None])
  assert 0.3 < mask.mean() < 0.7
  column = mask[:, 20]  # x = 0: down through the stem-free middle of both bowls.
  changes = np.flatnonzero(np.diff(column.astype(int)))
  assert len(changes) == 6  # top bar, hole, middle bar, hole, bottom bar.


def test_glyph_crops_are_labelled_by_character_and_colour_says_nothing():
  support = world_crops.labelled_crops(split='support', per_class=12, family='glyphs')
  query = world_crops.labelled_crops(split='query', per_class=12, family='glyphs')
  assert support.class_names == synthetic.FAMILIES['glyphs']
  assert set(support.typefaces) <= set(world_glyphs.EVAL_TYPEFACES)
  source = synthetic.SyntheticWorld(split='query', num_videos=int(query.videos.max()) + 1,
                                    family='glyphs')
  for i in range(0, len(query), 17):  # The box the crop was cut around is of its category.
    rows = source.boxes(query.videos[i], query.times[i])
    box = np.array([rows[name] for name in ('x0', 'y0', 'x1', 'y1')]).T
    match = np.flatnonzero(np.all(np.isclose(box, query.boxes[i], atol=1e-3), axis=1))
    assert rows['category'][match[0]] == query.labels[i]
    assert query.typefaces[i] == source.typeface(query.videos[i], rows['instance'][match[0]])
  colours = fewshot.few_shot_nn_accuracy(
      encoders.flat_centred(_colour_histograms(support.images)), support.labels,
      encoders.flat_centred(_colour_histograms(query.images)), query.labels, shots=5)
  assert colours.mean() < 0.2
