r"""5-shot 1-NN of HOG at several cell and block sizes, on each world family's labelled crops.

  python bench/hog_variants.py --families=glyphs,textures

`--init=hog` (8 px cells, 2x2 blocks) is one point of a family of descriptors; this prints
the others, so that a learned encoder taught by one of them (`config.loss.distill_hog_cell`,
`distill_hog_block`) is read against the right reference. Crops as the trainer's monitor
draws them (in memory, 32 px, 50 support and 100 query per category, disjoint videos).
"""
import os
import sys

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from vidjax import hog  # noqa: E402
from vidjax.data.sources import world_crops  # noqa: E402
from vidjax.evaluate import encoders, metrics  # noqa: E402

FLAGS = flags.DEFINE_list('families', ['glyphs', 'textures'], 'World families to measure.')
_VARIANTS = ((8, 2), (8, 1), (4, 2), (6, 2), (4, 3))  # (cell px, block cells)


def main(argv):
  del argv
  print('| family | cell, block | 5-shot |\n| --- | --- | --- |')
  for family in FLAGS.value:
    crops = {split: world_crops.labelled_crops(split=split, per_class=per_class, crop_size=32,
                                               family=family)
             for split, per_class in (('support', 50), ('query', 100))}
    for cell, block in _VARIANTS:
      embed = lambda images: encoders.flat_centred(  # noqa: E731
          hog.hog(images.astype(np.float64) / 255, cell=cell, block=block))
      result, _ = metrics.fewshot_metrics(
          embed(crops['support'].images), crops['support'].labels,
          embed(crops['query'].images), crops['query'].labels, [5], 10, 0)
      print(f'| {family} | {cell}, {block} | {result["5"]["mean"]:.3f} ± '
            f'{result["5"]["ci95"]:.3f} |', flush=True)


if __name__ == '__main__':
  app.run(main)
