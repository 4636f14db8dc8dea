"""Crops and photometric augmentation."""
import jax.numpy as jnp
import ml_collections
import numpy as np

from vidjax.data import augment, motion

CROP = ml_collections.ConfigDict(dict(mode='anchored', anchor='uniform', uniform_share=0.2,
                                      track=False, jitter=0.0, scale=(0.2, 0.6),
                                      ratio=(0.75, 1.333), flip=True, swap_prob=0.0,
                                      negatives=0, fit=False, margin=(1.1, 1.6)))
PHOTOMETRIC = ml_collections.ConfigDict(dict(
    on_device=True, jitter_prob=0.8, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1,
    grayscale_prob=0.2, blur_prob=0.5, solarize_prob=0.2, invert_prob=0.2, rotate_prob=0.5))


def test_anchored_crops_share_a_point_and_stay_inside():
  rng = np.random.default_rng(0)
  for _ in range(200):
    boxes = augment.crop_boxes(rng, (90, 160), 3, CROP)
    assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2] <= 160) and np.all(boxes[:, 3] <= 90)
    sides = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    assert np.all(sides >= 0.2 * 90 * 0.99) and np.all(sides <= 0.6 * 90 * 1.01)
    # The intersection of all crops is non-empty: they surround one common point.
    assert boxes[:, 0].max() < boxes[:, 2].min() and boxes[:, 1].max() < boxes[:, 3].min()


def test_jittered_anchored_crops_move_off_the_point_but_keep_it():
  config = ml_collections.ConfigDict(dict(CROP, jitter=0.4))
  rng = np.random.default_rng(0)
  for _ in range(100):
    boxes = augment.crop_boxes(rng, (90, 160), 2, config, anchor=(80.0, 45.0))
    assert np.all((boxes[:, 0] <= 80) & (boxes[:, 2] >= 80) & (boxes[:, 1] <= 45)
                  & (boxes[:, 3] >= 45))
    assert not np.allclose(boxes[:, :2] + boxes[:, 2:], 2 * np.array([80.0, 45.0]))


def _panning_frames(factor):
  """Two frames of a textured background panned by (3, -5) * factor px, with a grey square
  that moves on its own from (40, 60) to (46, 66) (times factor)."""
  rng = np.random.default_rng(0)
  texture = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
  background = np.repeat(np.repeat(texture, 4 * factor, 0), 4 * factor, 1)  # 120f x 200f
  a, b = background.copy(), np.roll(background, (3 * factor, -5 * factor), axis=(0, 1))
  side = 16 * factor
  a[40 * factor:40 * factor + side, 60 * factor:60 * factor + side] = 128
  b[46 * factor:46 * factor + side, 66 * factor:66 * factor + side] = 128
  return a, b


def test_motion_anchors_land_on_what_moves_against_the_panning_background():
  for factor in (1, 2):  # Work size 96: the second pair is reduced 2x before differencing.
    a, b = _panning_frames(factor)
    small_a, small_b = a[::factor, ::factor].mean(axis=2), b[::factor, ::factor].mean(axis=2)
    assert motion.global_shift(small_b, small_a) == (3, -5)
    rng = np.random.default_rng(1)
    anchors = np.array([motion.sample_anchor(rng, a, b, uniform_share=0.0)
                        for _ in range(100)]) / factor
    on_square = ((anchors[:, 0] >= 56) & (anchors[:, 0] <= 86) &
                 (anchors[:, 1] >= 36) & (anchors[:, 1] <= 66))
    assert on_square.mean() > 0.9  # The square covers 4% of the frame.
    # From the coarser map vidjax.prepare stores: the same mass per block, anchors within a
    # block (4 work cells) of the square.
    pooled, cell = motion.pooled_motion_map(a, b)
    full, work_cell = motion.motion_map(a, b)
    assert cell == motion.POOLED * work_cell
    assert pooled.shape == (full.shape[0] // 4, full.shape[1] // 4)
    assert np.isclose(pooled.sum(), full[:pooled.shape[0] * 4, :pooled.shape[1] * 4].sum())
    anchors = np.array([motion.sample_anchor(rng, a, b, 0.0, (pooled, cell))
                        for _ in range(100)]) / factor
    near_square = ((anchors[:, 0] >= 52) & (anchors[:, 0] <= 90) &
                   (anchors[:, 1] >= 32) & (anchors[:, 1] <= 70))
    assert near_square.mean() > 0.9


def test_track_follows_a_moving_object_and_the_panning_background():
  rng = np.random.default_rng(2)
  for factor in (1, 2):
    a, b = _panning_frames(factor)
    side = 16 * factor
    patch = rng.integers(0, 256, (side // (2 * factor), side // (2 * factor), 3), np.uint8)
    patch = np.repeat(np.repeat(patch, 2 * factor, 0), 2 * factor, 1)
    a[40 * factor:40 * factor + side, 60 * factor:60 * factor + side] = patch
    b[46 * factor:46 * factor + side, 66 * factor:66 * factor + side] = patch
    x, y = motion.track(a, b, (68 * factor, 48 * factor))
    assert abs(x - 74 * factor) <= factor and abs(y - 54 * factor) <= factor
    x, y = motion.track(a, b, (20 * factor, 100 * factor))  # Background: the camera's (-5, 3).
    assert abs(x - 15 * factor) <= factor and abs(y - 103 * factor) <= factor
  # Points on the last row and column of a frame whose size the work size does not divide.
  odd = np.zeros((193, 291, 3), np.uint8)
  assert np.allclose(motion.track(odd, odd, (290.9, 192.9)), (290.9, 192.9), atol=1)


def test_tracked_crops_follow_what_was_under_the_point():
  rng = np.random.default_rng(0)
  background = np.repeat(np.repeat(rng.integers(0, 256, (30, 50, 3), np.uint8), 4, 0), 4, 1)
  frames = [background, np.roll(background, (3, -5), axis=(0, 1))]  # A panning camera.
  differences = {}
  for track in (False, True):
    config = ml_collections.ConfigDict(dict(CROP, track=track, scale=(0.3, 0.3),
                                            ratio=(1.0, 1.0), flip=False))
    views = [augment.crop_views(np.random.default_rng(seed), frames, config, image_size=36)[0]
             for seed in range(20)]
    differences[track] = np.median([np.abs(v[0].astype(int) - v[1]).mean() for v in views])
  assert differences[True] < 1 and differences[False] > 20


def test_crop_views_shape_and_content():
  rng = np.random.default_rng(1)
  frame = np.zeros((60, 80, 3), np.uint8)
  frame[:, 40:] = 255
  views, negatives = augment.crop_views(rng, [frame, frame], CROP, image_size=24)
  assert views.shape == (2, 24, 24, 3) and views.dtype == np.uint8 and len(negatives) == 0


def test_photometric_numpy_and_jax_agree():
  rng = np.random.default_rng(2)
  images = rng.random((16, 20, 20, 3), dtype=np.float32)
  draws = rng.random((16, augment.NUM_DRAWS), dtype=np.float32)
  on_host = augment.photometric(images, draws, PHOTOMETRIC, np)
  on_device = augment.photometric(jnp.asarray(images), jnp.asarray(draws), PHOTOMETRIC, jnp)
  np.testing.assert_allclose(on_host, np.asarray(on_device), atol=1e-5)
  assert on_host.min() >= 0 and on_host.max() <= 1


def test_photometric_with_everything_off_is_identity():
  off = ml_collections.ConfigDict(dict(PHOTOMETRIC))
  off.update(jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0, solarize_prob=0.0,
             invert_prob=0.0, rotate_prob=0.0)
  rng = np.random.default_rng(3)
  images = rng.random((4, 8, 8, 3), dtype=np.float32)
  draws = rng.random((4, augment.NUM_DRAWS), dtype=np.float32)
  np.testing.assert_allclose(augment.photometric(images, draws, off), images, atol=1e-5)


def test_grayscale_and_hue_rotation():
  images = np.tile(np.array([0.9, 0.2, 0.1], np.float32), (2, 4, 4, 1))
  draws = np.full((2, augment.NUM_DRAWS), 0.99, np.float32)
  gray = ml_collections.ConfigDict(dict(PHOTOMETRIC))
  gray.update(jitter_prob=0.0, grayscale_prob=1.0, blur_prob=0.0, solarize_prob=0.0,
              invert_prob=0.0)
  out = augment.photometric(images, draws, gray)
  np.testing.assert_allclose(out[..., 0], out[..., 1], atol=1e-6)
  hue = ml_collections.ConfigDict(dict(gray))
  hue.update(jitter_prob=1.0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.5,
             grayscale_prob=0.0)
  shifted = augment.photometric(images, draws, hue)  # ~180 degrees: red becomes cyan-ish.
  assert shifted[0, 0, 0, 0] < shifted[0, 0, 0, 2]


def test_colour_rotation_keeps_colour_distances_and_scrambles_colours():
  rng = np.random.default_rng(4)
  # Colours within 0.28 of mid-grey stay inside the cube under any rotation: no clipping.
  images = (0.5 + rng.uniform(-0.16, 0.16, (64, 6, 6, 3))).astype(np.float32)
  draws = rng.random((64, augment.NUM_DRAWS), dtype=np.float32)
  rotate = ml_collections.ConfigDict(dict(PHOTOMETRIC))
  rotate.update(jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0, solarize_prob=0.0,
                invert_prob=0.0, rotate_prob=1.0)
  out = augment.photometric(images, draws, rotate)
  pixels_in, pixels_out = images.reshape(64, -1, 3), out.reshape(64, -1, 3)
  distances_in = np.linalg.norm(pixels_in[:, :, None] - pixels_in[:, None], axis=-1)
  distances_out = np.linalg.norm(pixels_out[:, :, None] - pixels_out[:, None], axis=-1)
  np.testing.assert_allclose(distances_out, distances_in, atol=1e-5)
  np.testing.assert_allclose(out.mean(axis=(1, 2)) - 0.5, 0.0, atol=0.1)  # about grey
  # Colours move, and the lighter of two colours is the darker one about half the time.
  assert np.abs(out - images).mean() > 0.05
  lighter = augment._luma(pixels_out[:, :1], np) > augment._luma(pixels_out[:, 1:2], np)
  was_lighter = augment._luma(pixels_in[:, :1], np) > augment._luma(pixels_in[:, 1:2], np)
  assert 0.25 < np.mean(lighter != was_lighter) < 0.75


def _moving_square_frames(rng, background):
  """Two frames of a textured square moving 6 px over a still, textured background."""
  square = np.repeat(np.repeat(rng.integers(0, 256, (4, 4, 3), np.uint8), 4, 0), 4, 1)
  a, b = background.copy(), background.copy()
  a[40:56, 50:66] = square
  b[40:56, 56:72] = square
  return a, b


def test_background_swap_keeps_the_moving_object_and_replaces_the_rest():
  rng = np.random.default_rng(0)
  background = np.repeat(np.repeat(rng.integers(0, 256, (24, 32, 3), np.uint8), 4, 0), 4, 1)
  a, b = _moving_square_frames(rng, background)
  mask = motion.moving_mask(*motion.motion_map(a, b), a.shape[:2])
  assert mask.shape == a.shape[:2] and 0 <= mask.min() and mask.max() <= 1
  assert mask[42:54, 58:70].mean() > 0.9  # The object, where it is in the second frame.
  assert mask[:30].mean() < 0.05 and mask[70:].mean() < 0.05  # Still background.
  backdrop = np.full_like(a, 77)
  config = ml_collections.ConfigDict(dict(CROP, anchor='motion', uniform_share=0.0,
                                          scale=(0.5, 0.5), ratio=(1.0, 1.0), flip=False))
  plain, _ = augment.crop_views(np.random.default_rng(1), [a, b], config, 48)
  swapped, _ = augment.crop_views(np.random.default_rng(1), [a, b], config, 48, backdrop)
  np.testing.assert_array_equal(plain[0], swapped[0])  # Only the last view is swapped.
  backdrop_share = np.mean(np.all(swapped[1] == 77, axis=-1))
  assert backdrop_share > 0.3 and np.mean(np.all(plain[1] == 77, axis=-1)) == 0
  again, _ = augment.crop_views(np.random.default_rng(1), [a, b], config, 48, backdrop)
  np.testing.assert_array_equal(again, swapped)


def test_negatives_are_background_crops_of_the_first_frame():
  rng = np.random.default_rng(0)
  background = np.repeat(np.repeat(rng.integers(0, 256, (24, 32, 3), np.uint8), 4, 0), 4, 1)
  background[..., 0] = 0  # No red anywhere but on the object.
  a, b = _moving_square_frames(rng, background)
  for frame in (a, b):
    frame[..., 0] = np.where(np.any(frame != background, axis=-1), 255, 0)
  config = ml_collections.ConfigDict(dict(CROP, anchor='motion', uniform_share=0.0,
                                          scale=(0.2, 0.2), flip=False, negatives=3))
  views, negatives = augment.crop_views(np.random.default_rng(2), [a, b], config, 16)
  assert views.shape == (2, 16, 16, 3) and negatives.shape == (3, 16, 16, 3)
  # The views hold the moving square; the negatives only background.
  assert all(view[..., 0].max() > 0 for view in views)
  assert negatives[..., 0].max() == 0
  again = augment.crop_views(np.random.default_rng(2), [a, b], config, 16)
  np.testing.assert_array_equal(again[1], negatives)


def test_fitted_crops_surround_the_moving_region_at_its_size():
  rng = np.random.default_rng(0)
  background = np.repeat(np.repeat(rng.integers(0, 256, (24, 32, 3), np.uint8), 4, 0), 4, 1)
  a, b = _moving_square_frames(rng, background)
  region = motion.region_box(motion.moving_mask(*motion.motion_map(a, b), a.shape[:2]),
                             (0.0, 0.0))
  # The square covers x 50-72 over the two frames, y 40-56; the mask grows it by a cell.
  assert 40 <= region[0] <= 52 and 70 <= region[2] <= 82 and 30 <= region[1] <= 42
  config = ml_collections.ConfigDict(dict(CROP, anchor='motion', uniform_share=0.0,
                                          fit=True, margin=(1.2, 1.2), ratio=(1.0, 1.0)))
  boxes = []
  for seed in range(5):
    anchor_rng = np.random.default_rng(seed)
    point = motion.sample_anchor(anchor_rng, a, b, 0.0)
    boxes.append(augment.crop_boxes(
        np.random.default_rng(seed), a.shape[:2], 2, config,
        ((region[0] + region[2]) / 2, (region[1] + region[3]) / 2),
        max(region[2] - region[0], region[3] - region[1])))
    assert region[0] - 8 <= point[0] <= region[2] + 8
  extent = max(region[2] - region[0], region[3] - region[1])
  for box in np.concatenate(boxes):
    assert abs((box[2] - box[0]) - 1.2 * extent) < 1e-6
  views, _ = augment.crop_views(np.random.default_rng(3), [a, b], config, 16)
  again, _ = augment.crop_views(np.random.default_rng(3), [a, b], config, 16)
  assert views.shape == (2, 16, 16, 3)
  np.testing.assert_array_equal(views, again)
  assert motion.region_box(motion.moving_mask(*motion.motion_map(a, a), a.shape[:2]),
                           (5.0, 5.0)) is None


def test_crop_views_draw_the_motion_anchor_from_the_map_a_source_stored():
  frame = np.zeros((96, 128, 3), np.uint8)
  frame[16:24, 104:112] = 255  # Nothing moves: a map computed here would be all zeros.
  stored = np.zeros((12, 16), np.float32)
  stored[2, 13] = 5.0  # The cell of the white square, 8 px cells.
  config = CROP.copy_and_resolve_references()
  config.update(anchor='motion', uniform_share=0.0)
  for seed in range(20):
    views, _ = augment.crop_views(np.random.default_rng(seed), [frame, frame], config, 16,
                                  stored_change=(stored, 8.0))
    assert (views.reshape(2, -1).max(axis=1) > 150).all()
