r"""What a config's colour augmentation leaves of the objects: a picture to look at.

Row 1 holds one held-out labelled crop of each category of the embedded world; every
further row is those crops under one draw of the config's photometric augmentation
(config.data.photometric, as the train step applies it).

  python bench/augment_picture.py --config=configs/npair.py --out=/tmp/augment.png
  python bench/augment_picture.py --config=configs/npair.py --out=/tmp/rotate.png \
      --config.data.photometric.rotate_prob=1 --config.data.photometric.grayscale_prob=0 \
      --config.data.photometric.solarize_prob=0 --config.data.photometric.saturation=0 \
      --config.data.photometric.hue=0
"""
import os
import sys

import numpy as np
from absl import app, flags
from ml_collections import config_flags
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from vidjax.data import augment  # noqa: E402
from vidjax.data.sources import world_crops  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file('config', None, 'A training config file.')
_OUT = flags.DEFINE_string('out', '/tmp/augment.png', 'Where the picture is written.')
_DRAWS = flags.DEFINE_integer('draws', 7, 'Rows of augmented crops.')
_ZOOM = flags.DEFINE_integer('zoom', 3, 'Pixels per crop pixel in the picture.')
flags.mark_flags_as_required(['config'])


def main(argv):
  del argv
  config = _CONFIG.value
  crops = world_crops.labelled_crops(split='support', per_class=1,
                                     crop_size=config.image_size)
  images = crops.images.astype(np.float32) / 255
  rng = np.random.default_rng(0)
  rows = [images] + [
      augment.photometric(images, rng.random(
          (len(images), augment.num_draws(config.data.photometric)), dtype=np.float32),
          config.data.photometric)
      for _ in range(_DRAWS.value)]
  grid = np.concatenate([np.concatenate(list(row), axis=1) for row in rows])
  picture = Image.fromarray(np.round(grid * 255).astype(np.uint8))
  picture.resize((picture.width * _ZOOM.value, picture.height * _ZOOM.value),
                 Image.NEAREST).save(_OUT.value)
  print(f'written: {_OUT.value} (row 1: one crop per category; below: augmented draws)')


if __name__ == '__main__':
  app.run(main)
