"""The encoders an evaluation compares: a trained checkpoint, the same model at random
init, and two that learn nothing: raw pixels and HOG descriptors (histograms of oriented
gradients, the classic hand-made shape feature). Each maps a sliceable set of uint8 images
to embeddings [n, D].
"""
from pathlib import Path

import jax
import numpy as np

from vidjax import checkpointing, hog, models, parallel, step
from vidjax.errors import ConfigError
from vidjax.evaluate import embed

INITS = ('trained', 'random', 'pixels', 'hog')
HANDMADE = ('pixels', 'hog')  # Nothing to restore, nothing to run on the devices.
_HOG_CHUNK = 1024  # Images per HOG call: its per-pixel votes take 36 floats per pixel.


def flat_centred(items) -> np.ndarray:
  """Each item (image, descriptor) flattened and mean-centred: the raw-pixel embedding."""
  flat = np.asarray(items).reshape(len(items), -1).astype(np.float32)
  return flat - flat.mean(axis=1, keepdims=True)


def hog_descriptors(rows) -> np.ndarray:
  """HOG descriptors [n, D] of uint8 images, mean-centred like the pixels."""
  return flat_centred(np.concatenate([
      hog.hog(np.asarray(rows[start:start + _HOG_CHUNK], np.float64) / 255)
      for start in range(0, len(rows), _HOG_CHUNK)]))


def load_encoder(config, workdir: str, init: str, mesh, checkpoint: str = ''):
  """(images -> embeddings [n, D] numpy, description) for one --init."""
  if init == 'pixels':
    return (lambda rows: flat_centred(rows[0:len(rows)])), 'raw pixels (flattened, mean-centred)'
  if init == 'hog':
    try:
      size = hog.hog_size(config.image_size)
    except ValueError as error:
      raise ConfigError(f'--init=hog: config.image_size={config.image_size}: {error}') from None
    return hog_descriptors, f'HOG ({size} values: 9 orientations, 8 px cells, 2x2 blocks)'
  if init == 'trained':
    # Restored into the state's shapes alone: initialising it first would compile the
    # model's and optimiser's init, most of a command's start-up on a CPU.
    replicated = parallel.replicated(mesh)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                            step.abstract_state(config))
    model = models.build_model(config)
    state, description = restore_state(abstract, workdir, checkpoint)
  else:
    model, state, _ = step.make_state_and_step(config, mesh)
    description = f'random init (seed {config.seed})'
  variables = {'params': state['params'], 'batch_stats': state['batch_stats']}
  embed_fn = embed.make_embed_fn(model, mesh)
  return (lambda rows: embed.embed_images(embed_fn, variables, rows, mesh)), description


def restore_state(state_like, workdir: str, checkpoint: str):
  """(train state, description) of --checkpoint (a checkpoints/<step> folder) or of the
  workdir's latest checkpoint."""
  if checkpoint:
    path = Path(checkpoint).absolute()
    if not path.is_dir() or not path.name.isdigit():
      raise ConfigError(f'--checkpoint={checkpoint}: expected a checkpoint folder '
                        '(WORKDIR/checkpoints/<step>)')
    directory, step_number = path.parent, int(path.name)
  else:
    directory = checkpointing.checkpoint_dir(workdir)
    step_number = checkpointing.latest_step(workdir)
  if step_number is None:
    raise ConfigError(f'--workdir={workdir}: no checkpoint in {directory}; train first '
                      '(python main.py --workdir=...) or use --init=random / --init=pixels')
  state = checkpointing.restore_from(directory, step_number, state_like)
  return state, f'checkpoint {directory / str(step_number)}'
