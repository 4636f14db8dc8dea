"""Labelled object crops of the embedded world: its evaluation sets and the kNN monitor's.

Crops are squares of side 1.25 x the longer box side around objects at least 60% visible,
edge-padded at the frame border, so that each shows its object and some of the photograph
behind it. Each records its category, video, time, box, typeface (glyphs family) and
background photograph (its `context`): an encoder whose nearest neighbours share the query's context rather than its
category matches backgrounds.
"""
import dataclasses
import operator

import numpy as np
from PIL import Image

from vidjax.data.sources import world

_CROP_MARGIN = 1.25
_MIN_CROP_VISIBLE = 0.6
_MIN_CROP_BOX_PX = 14.0  # At the reference frame height.
_CROP_TIMES_PER_VIDEO = 4
_MAX_CROPS_PER_INSTANCE = 2
_CROP_STREAM = 7  # Seed-sequence word separating crop sampling from video content.


@dataclasses.dataclass(frozen=True)
class LabelledCrops:
  """N crops sorted by label; every field has N rows."""
  images: np.ndarray  # uint8 [N, crop_size, crop_size, 3]
  labels: np.ndarray  # int32 [N], indices into class_names
  class_names: tuple  # world.FAMILIES[family]
  contexts: tuple  # [N] the photograph behind each crop (a world.PHOTOS name)
  typefaces: tuple  # [N] the glyph's typeface (glyphs family), else 
  videos: np.ndarray  # int32 [N]
  times: np.ndarray  # int32 [N]
  boxes: np.ndarray  # float32 [N, 4] x0 y0 x1 y1 of the object in its frame

  def __len__(self):
    return len(self.labels)


def labelled_crops(seed: int = 0, split: str = 'support', per_class: int = 50,
                   crop_size: int = 32, num_videos: int | None = None,
                   frame_size: int = 96, family: str = 'textures') -> LabelledCrops:
  """per_class crops of each category of `family` from the videos of `split`.

  Videos are scanned in order at a few stratified random times each, until every category
  has per_class distinct object instances; each instance gives one crop (a second one, from
  another time, only when num_videos runs out first). `num_videos` caps the videos scanned
  (None: as many as needed).
  """
  if split not in world.SPLITS:
    raise ValueError(f"split: unknown {split!r}; expected one of {', '.join(world.SPLITS)}")
  if operator.index(per_class) < 1 or operator.index(crop_size) < 1:
    raise ValueError(f'per_class and crop_size must be >= 1, got {per_class} and {crop_size}')
  source = world.SyntheticWorld(seed, split, 2**31 - 1 if num_videos is None else num_videos,
                                frame_size=frame_size, family=family)
  rng = np.random.default_rng([seed, world.SPLITS.index(split), _CROP_STREAM])
  # (video, t, box, instance) per category, one per instance.
  first_picks = [[] for _ in source.categories]
  later_picks = [[] for _ in source.categories]
  video = 0
  while video < len(source) and min(map(len, first_picks)) < per_class:
    by_instance = _crop_candidates(source, video, rng)
    for instance in sorted(by_instance):
      category, candidates = by_instance[instance]
      chosen = rng.permutation(len(candidates))[:_MAX_CROPS_PER_INSTANCE]
      first_picks[category].append(candidates[chosen[0]])
      later_picks[category].extend(candidates[i] for i in chosen[1:])
    video += 1
  picks = []
  for category, name in enumerate(source.categories):
    available = first_picks[category] + later_picks[category]
    if len(available) < per_class:
      raise ValueError(f'only {len(available)} eligible crops of {name!r} in {video} {split} '
                       f'videos; need per_class={per_class}: allow more num_videos')
    picks += [(category, *pick) for pick in available[:per_class]]
  images = np.empty((len(picks), crop_size, crop_size, 3), np.uint8)
  # Render in video order: per-video plans are cached only for the most recent videos.
  frame, frame_key = None, None
  for index in sorted(range(len(picks)), key=lambda i: picks[i][1:3]):
    _, video, t, box, _ = picks[index]
    if frame_key != (video, t):
      frame, frame_key = source.frame(video, t), (video, t)
    images[index] = crop(frame, box, crop_size)
  return LabelledCrops(
      images=images, labels=np.array([pick[0] for pick in picks], np.int32),
      class_names=source.categories,
      contexts=tuple(source.context(pick[1]) for pick in picks),
      typefaces=tuple(source.typeface(pick[1], pick[4]) for pick in picks),
      videos=np.array([pick[1] for pick in picks], np.int32),
      times=np.array([pick[2] for pick in picks], np.int32),
      boxes=np.array([pick[3] for pick in picks], np.float32).reshape(-1, 4))


def _crop_candidates(source, video: int, rng: np.random.Generator) -> dict:
  """{instance: (category, [(video, t, box, instance), ...])} for objects worth cropping."""
  edges = np.linspace(0, source.num_frames(video), _CROP_TIMES_PER_VIDEO + 1).astype(int)
  times = {int(rng.integers(start, max(stop, start + 1)))
           for start, stop in zip(edges[:-1], edges[1:])}
  min_box = _MIN_CROP_BOX_PX * source.frame_size / 96
  by_instance = {}
  for t in sorted(times):
    for row in source.boxes(video, t):
      box = (row['x0'], row['y0'], row['x1'], row['y1'])
      if (row['visible_fraction'] >= _MIN_CROP_VISIBLE
          and max(box[2] - box[0], box[3] - box[1]) >= min_box):
        instance = int(row['instance'])
        by_instance.setdefault(instance, (int(row['category']), []))[1].append(
            (video, t, box, instance))
  return by_instance


def crop(frame: np.ndarray, box, crop_size: int) -> np.ndarray:
  """Square crop around `box` with _CROP_MARGIN, edge-padded, resized bilinearly to crop_size."""
  x0, y0, x1, y1 = box
  side = max(1, int(round(max(x1 - x0, y1 - y0) * _CROP_MARGIN)))
  left, top = int(round((x0 + x1 - side) / 2)), int(round((y0 + y1 - side) / 2))
  rows = np.clip(np.arange(top, top + side), 0, frame.shape[0] - 1)
  cols = np.clip(np.arange(left, left + side), 0, frame.shape[1] - 1)
  patch = Image.fromarray(frame[rows[:, None], cols[None, :]])
  return np.asarray(patch.resize((crop_size, crop_size), Image.BILINEAR))
