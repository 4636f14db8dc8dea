r"""What the object-seeking views show, on the embedded world where the truth is known.

Prints how much of the truly moving objects the motion mask covers (and how much of the
frame it claims), and saves a picture of training samples: each row the anchor view, the
positive view, the positive after a background swap, and background negatives.

  python bench/views.py --out=/tmp/views
"""
import argparse
import os
import sys

import ml_collections
import numpy as np
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from vidjax import config_defaults  # noqa: E402
from vidjax.data import augment, motion  # noqa: E402
from vidjax.data.sources import world  # noqa: E402


def true_objects(source, video: int, t: int) -> np.ndarray:
  """(H, W) bool: where an object (not a distractor or the photograph) is in frame t."""
  plan = source._plan(video, t)  # pylint: disable=protected-access
  _, transmittance, _, _ = world._composite(plan, t, source.shape, with_colour=False)  # pylint: disable=protected-access
  return transmittance < 0.5


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', default='/tmp/views')
  parser.add_argument('--videos', type=int, default=40)
  parser.add_argument('--gap', type=int, default=3, help='frames between the two views')
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)
  source = world.SyntheticWorld(seed=0, split='train', num_videos=args.videos + 1)
  covered, claimed, precise, objects = [], [], [], []
  for video in range(args.videos):
    a, b = source.frame(video, 10), source.frame(video, 10 + args.gap)
    mask = motion.moving_mask(*motion.motion_map(a, b), a.shape[:2]) > 0.5
    truth = true_objects(source, video, 10) | true_objects(source, video, 10 + args.gap)
    covered.append((mask & truth).sum() / max(truth.sum(), 1))
    claimed.append(mask.mean())
    precise.append((mask & truth).sum() / max(mask.sum(), 1))
    objects.append(truth.mean())
  print(f'moving mask over {args.videos} videos: covers {np.mean(covered):.2f} of the object '
        f'pixels (still objects included), claims {np.mean(claimed):.2f} of the frame, of '
        f'which {np.mean(precise):.2f} is an object; objects fill {np.mean(objects):.2f}')

  crop = ml_collections.ConfigDict(dict(config_defaults.base_config().data.crop, negatives=2,
                                        flip=False))
  rows = []
  rng = np.random.default_rng(0)
  for video in range(8):
    frames = [source.frame(video, 20), source.frame(video, 20 + args.gap)]
    backdrop = source.frame(args.videos, int(rng.integers(64)))
    seed = int(rng.integers(2**31))
    views, negatives = augment.crop_views(np.random.default_rng(seed), frames, crop, 48)
    swapped, _ = augment.crop_views(np.random.default_rng(seed), frames, crop, 48, backdrop)
    rows.append(np.concatenate([views[0], views[1], swapped[1], *negatives], axis=1))
  Image.fromarray(np.concatenate(rows)).resize((48 * 5 * 2, 48 * 8 * 2), Image.NEAREST).save(
      os.path.join(args.out, 'views.png'))
  print(f'written: {args.out}/views.png (anchor, positive, positive swapped, 2 negatives)')


if __name__ == '__main__':
  main()
