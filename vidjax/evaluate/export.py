"""Streaming export of a labelled set's embeddings to disk.

Embeddings are written batch by batch into a memory-mapped .npy under a temporary name
(renamed when complete), so memory stays flat in the size of the set; `<name>.jsonl` holds
one line per row: id (path), label and class name. In a multi-host run every process reads
and embeds its rows of each batch and process 0 alone writes.
"""
import json
import os

import numpy as np


class ImageRows:
  """Rows start..stop of a LabelledImages set as model-sized images: len() and [a:b]
  slicing give uint8 [n, size, size, 3], read from the set only when sliced."""

  def __init__(self, images, size: int, start: int = 0, stop: int | None = None):
    self.images, self.size, self.start = images, size, start
    self.stop = len(images) if stop is None else min(stop, len(images))

  def __len__(self):
    return self.stop - self.start

  def __getitem__(self, rows: slice) -> np.ndarray:
    start, stop, _ = rows.indices(len(self))
    return self.images.images(self.start + start, self.start + stop, self.size)


def export_embeddings(images, encoder, image_size: int, out_dir: str, name: str,
                      batch_size: int = 256, write: bool = True):
  """Embeds every image of a LabelledImages set into out_dir/<name>.npy (+ .jsonl); returns
  them memory-mapped. With write=False (processes other than 0 of a multi-host run) it only
  takes part in embedding each batch, and returns None."""
  if write:
    os.makedirs(out_dir, exist_ok=True)
  path, tmp = os.path.join(out_dir, f'{name}.npy'), os.path.join(out_dir, f'{name}.tmp.npy')
  output = None
  for start in range(0, len(images), batch_size):
    features = np.asarray(encoder(ImageRows(images, image_size, start, start + batch_size)),
                          np.float32)
    if not write:
      continue
    if output is None:
      output = np.lib.format.open_memmap(tmp, 'w+', np.float32, (len(images), features.shape[1]))
    output[start:start + len(features)] = features
  if not write:
    return None
  output.flush()
  del output
  os.replace(tmp, path)
  with open(os.path.join(out_dir, f'{name}.jsonl.tmp'), 'w') as f:
    for item, label in zip(images.ids, images.labels):
      f.write(json.dumps({'id': item, 'label': int(label),
                          'class': images.class_names[label]}) + '\n')
  os.replace(os.path.join(out_dir, f'{name}.jsonl.tmp'), os.path.join(out_dir, f'{name}.jsonl'))
  return np.load(path, mmap_mode='r')
