"""Encoders to evaluate (trained checkpoint, random init, raw pixels) and streaming export
of their embeddings to disk, plus the faiss index saved next to them.

Embeddings are written batch by batch into a memory-mapped .npy under a temporary name
(renamed when complete), so memory stays flat in the size of the set; `<name>.jsonl` holds
one line per row: id (path), label and class name. In a multi-host run every process reads
and embeds its rows of each batch and process 0 alone writes.
"""
import json
import os
from pathlib import Path

import faiss
import jax
import numpy as np
import orbax.checkpoint as ocp

from vidjax import train
from vidjax.config_checks import ConfigError
from vidjax.evaluate import embed, fewshot, knn

INITS = ('trained', 'random', 'pixels')


def load_encoder(config, workdir: str, init: str, mesh, checkpoint: str = ''):
  """(ImageRows -> embeddings [n, D] numpy, description) for one --init."""
  if init == 'pixels':
    return (lambda rows: fewshot.flat_centred(rows[0:len(rows)])), \
        'raw pixels (flattened, mean-centred)'
  model, state, _ = train.make_state_and_step(config, mesh)
  description = f'random init (seed {config.seed})'
  if init == 'trained':
    state, description = restore_state(state, workdir, checkpoint)
  variables = {'params': state['params'], 'batch_stats': state['batch_stats']}
  embed_fn = embed.make_embed_fn(model, mesh)
  return (lambda rows: embed.embed_images(embed_fn, variables, rows, mesh)), description


def restore_state(state_like, workdir: str, checkpoint: str):
  """The train state of --checkpoint (a checkpoints/<step> folder) or the workdir's latest."""
  if checkpoint:
    path = Path(checkpoint).absolute()
    if not path.is_dir() or not path.name.isdigit():
      raise ConfigError(f'--checkpoint={checkpoint}: expected a checkpoint folder '
                        '(WORKDIR/checkpoints/<step>)')
    directory, step = path.parent, int(path.name)
  else:
    directory = Path(workdir).absolute() / 'checkpoints'
    step = None
  manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(create=False)) \
      if directory.is_dir() else None
  step = step if step is not None else (manager.latest_step() if manager else None)
  if step is None:
    raise ConfigError(f'--workdir={workdir}: no checkpoint in {directory}; train first '
                      '(python main.py --workdir=...) or use --init=random / --init=pixels')
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_like)
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
  manager.close()
  return restored['state'], f'checkpoint {directory / str(step)}'


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


def build_index(embeddings, factory: str, out_path: str):
  """A faiss inner-product index over the L2-normalised embeddings, saved to out_path.

  factory: a faiss index_factory string; 'Flat' is exact (the default), e.g. 'IVF1024,PQ32'
  is approximate and trained on the embeddings themselves.
  """
  vectors = knn.l2_normalize(embeddings)
  try:
    index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
  except RuntimeError as e:
    raise ConfigError(f'--index={factory}: not a faiss index_factory string '
                      f'({str(e).splitlines()[0][:120]})') from None
  if not index.is_trained:
    index.train(vectors)
  index.add(vectors)
  faiss.write_index(index, f'{out_path}.tmp')
  os.replace(f'{out_path}.tmp', out_path)
  return index
