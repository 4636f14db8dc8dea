"""How fast and how hard is the embedded video world?

Prints rendering cost per 96 px frame and per video setup, and the raw-pixel few-shot
nearest-neighbour top-1 on labelled crops (the baseline a learnt encoder must beat), plus a
HOG baseline showing that shape and texture do separate the categories. Saves preview PNGs:
  frames.png  a few frames of a few videos (left to right in time)
  boxes.png   the same frames with ground-truth boxes (green: visible >= 0.6, red: less)
  crops.png   support crops, one row per category

  python bench/synthetic_difficulty.py [--out /tmp/synthetic_preview]
"""
import argparse
import os
import sys
import time

import numpy as np
from PIL import Image, ImageDraw
from skimage.feature import hog

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from vidjax.data.sources import world as synthetic  # noqa: E402
from vidjax.data.sources import world_crops  # noqa: E402
from vidjax.evaluate import encoders, fewshot, knn, metrics  # noqa: E402

PREVIEW_VIDEOS = 6
PREVIEW_TIMES = (0, 4, 8, 16, 24, 32, 48, 63)
CROPS_PER_ROW = 16
UPSCALE = 2


def time_rendering(num_videos: int = 20, frame_size: int = 96) -> tuple[float, float]:
  """(ms per frame with the video's plan cached, ms of per-video setup)."""
  world = synthetic.SyntheticWorld(seed=123, num_videos=num_videos + 1, frame_size=frame_size)
  world.frame(num_videos, 0)  # builds the process-wide banks, which are not per-video cost
  start = time.perf_counter()
  for video in range(num_videos):
    world.frame(video, 0)
  setup_ms = (time.perf_counter() - start) * 1e3 / num_videos
  start = time.perf_counter()
  for video in range(num_videos):
    for t in range(world.num_frames(video)):
      world.frame(video, t)
  frame_ms = (time.perf_counter() - start) * 1e3 / (num_videos * world.num_frames(0))
  return frame_ms, setup_ms - frame_ms


def hog_features(images: np.ndarray) -> np.ndarray:
  return np.stack([hog(image.mean(axis=-1), orientations=9, pixels_per_cell=(8, 8),
                       cells_per_block=(2, 2)) for image in images])


def save_previews(out: str, support: np.ndarray, support_labels: np.ndarray) -> None:
  world = synthetic.SyntheticWorld(seed=0, num_videos=PREVIEW_VIDEOS)
  height, width = (side * UPSCALE for side in world.shape)
  frames = Image.new('RGB', (width * len(PREVIEW_TIMES), height * PREVIEW_VIDEOS))
  boxes = frames.copy()
  draw = ImageDraw.Draw(boxes)
  for video in range(PREVIEW_VIDEOS):
    for column, t in enumerate(PREVIEW_TIMES):
      tile = Image.fromarray(world.frame(video, t)).resize((width, height), Image.NEAREST)
      frames.paste(tile, (column * width, video * height))
      boxes.paste(tile, (column * width, video * height))
      for row in world.boxes(video, t):
        corners = np.array([row['x0'], row['y0'], row['x1'], row['y1']]) * UPSCALE
        corners += [column * width, video * height, column * width, video * height]
        colour = (0, 255, 0) if row['visible_fraction'] >= 0.6 else (255, 0, 0)
        draw.rectangle(corners.tolist(), outline=colour)
  frames.save(os.path.join(out, 'frames.png'))
  boxes.save(os.path.join(out, 'boxes.png'))

  crop_size = support.shape[1] * UPSCALE
  label_width = 130
  sheet = Image.new('RGB', (label_width + crop_size * CROPS_PER_ROW,
                            crop_size * len(synthetic.CATEGORIES)), 'white')
  draw = ImageDraw.Draw(sheet)
  for category, name in enumerate(synthetic.CATEGORIES):
    draw.text((4, category * crop_size + crop_size // 2 - 6), name, fill='black')
    for column, image in enumerate(support[support_labels == category][:CROPS_PER_ROW]):
      tile = Image.fromarray(image).resize((crop_size, crop_size), Image.NEAREST)
      sheet.paste(tile, (label_width + column * crop_size, category * crop_size))
  sheet.save(os.path.join(out, 'crops.png'))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', default='/tmp/synthetic_preview', help='directory for the PNGs')
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)

  frame_ms, setup_ms = time_rendering()
  print(f'render: {frame_ms:.3f} ms per 96x128 frame (plan cached), '
        f'{setup_ms:.1f} ms setup per video (sprites, camera)')

  start = time.perf_counter()
  support_crops = world_crops.labelled_crops(split='support', per_class=50, crop_size=32)
  query_crops = world_crops.labelled_crops(split='query', per_class=100, crop_size=32)
  support, support_labels = support_crops.images, support_crops.labels
  query, query_labels = query_crops.images, query_crops.labels
  print(f'crops: {len(support)} support, {len(query)} query in {time.perf_counter() - start:.1f} s')
  hog_support = encoders.flat_centred(hog_features(support))
  hog_query = encoders.flat_centred(hog_features(query))
  pixel_support, pixel_query = encoders.flat_centred(support), encoders.flat_centred(query)
  chance = 1 / len(synthetic.CATEGORIES)
  for shots in (1, 5, 20):
    pixels = fewshot.few_shot_nn_accuracy(pixel_support, support_labels, pixel_query,
                                          query_labels, shots)
    hogs = fewshot.few_shot_nn_accuracy(hog_support, support_labels, hog_query, query_labels,
                                        shots)
    print(f'{shots:2d}-shot 1-NN top-1 over 10 draws: '
          f'raw pixels {pixels.mean():.3f} ± {pixels.std():.3f}   '
          f'(HOG {hogs.mean():.3f} ± {hogs.std():.3f}; chance {chance:.3f})')

  _, nearest = knn.exact_cosine_index(pixel_support).search(knn.l2_normalize(pixel_query), 8)
  context = metrics.context_match(nearest, support_crops.contexts, query_crops.contexts)
  print(f"raw pixels: context_match@8 {context['context_match@8']:.3f} (chance "
        f"{context['context_match_chance']:.3f}): the share of a query's 8 nearest support "
        'crops cut over its background photograph')

  save_previews(args.out, support, support_labels)
  print(f'previews: {args.out}/frames.png, boxes.png, crops.png')


if __name__ == '__main__':
  main()
