"""The encoders an evaluation compares: a trained checkpoint, the same model at random
init, and two that learn nothing: raw pixels and HOG descriptors (histograms of oriented
gradients, the classic hand-made shape feature); and `weights:PATH`, a pretrained ResNet
from a safetensors file (models/pretrained.py). Each maps a sliceable set of uint8 images
to embeddings [n, D].
"""
import os
from pathlib import Path

import jax
import numpy as np

from vidjax import checkpointing, hog, models, parallel, step
from vidjax.errors import ConfigError
from vidjax.evaluate import embed
from vidjax.models import pretrained

INITS = ('trained', 'random', 'pixels', 'hog')
HANDMADE = ('pixels', 'hog')  # Nothing to restore, nothing to run on the devices.
WEIGHTS = 'weights:'
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


def check_init(init: str, flag: str = '--init') -> str:
  """`init` when it names an encoder (one of INITS or weights:PATH), else a ConfigError."""
  if init not in INITS and not (init.startswith(WEIGHTS) and len(init) > len(WEIGHTS)):
    raise ConfigError(f'{flag}={init}: expected one of {", ".join(INITS)} or '
                      f'{WEIGHTS}PATH (a .safetensors file of ResNet weights)')
  return init


def folder_name(init: str) -> str:
  """Where WORKDIR/eval/ keeps an encoder's results: its --init, or weights-<file name>."""
  if init.startswith(WEIGHTS):
    return 'weights-' + Path(init[len(WEIGHTS):]).stem
  return init


def _pretrained(config, path: str, mesh):
  """(model, variables, description) of the ResNet weights at `path`: the encoder of the
  file's architecture, torchvision's padding and RGB stem, global average pooling (the
  rest of the config, the image size, stays the run's)."""
  tensors = pretrained.read(path, '--init')
  name, width = pretrained.architecture(tensors, path, '--init')
  config = config.copy_and_resolve_references()
  config.model.update(name=name, width=width, torchvision=True, cifar_stem=False,
                      gradient_stem=False, pool_grid=1, embed_grid=0, init='')
  models.check_config(config)
  model = models.build_model(config)
  shapes = jax.eval_shape(lambda: model.init(
      jax.random.PRNGKey(0), np.zeros((1, config.image_size, config.image_size, 3),
                                      np.float32), train=False))
  params, stats = pretrained.encoder_variables(
      tensors, path, shapes['params']['encoder'], shapes['batch_stats']['encoder'], '--init')
  place = lambda x: jax.device_put(x, parallel.replicated(mesh))  # noqa: E731
  variables = {'params': {'encoder': jax.tree.map(place, params)},
               'batch_stats': {'encoder': jax.tree.map(place, stats)}}
  return model, variables, f'pretrained {name} from {path}'


def network(config, workdir: str, init: str, mesh, checkpoint: str = ''):
  """(model, {'params', 'batch_stats'}, description) of an --init that is a network:
  trained, random or weights:PATH (a relative PATH is found in `workdir` first: an index
  keeps its copy there)."""
  if init.startswith(WEIGHTS):
    path = init[len(WEIGHTS):]
    if not os.path.isabs(path) and os.path.isfile(os.path.join(workdir, path)):
      path = os.path.join(workdir, path)
    return _pretrained(config, path, mesh)
  if init == 'trained':
    return trained_variables(config, workdir, checkpoint, mesh)
  models.check_grids(config)
  model, state, _ = step.make_state_and_step(config, mesh)
  return (model, {'params': state['params'], 'batch_stats': state['batch_stats']},
          f'random init (seed {config.seed})')


def embedder(model, variables, mesh):
  """images -> embeddings [n, D] numpy, for a network's model and variables."""
  embed_fn = embed.make_embed_fn(model, mesh)
  return lambda rows: embed.embed_images(embed_fn, variables, rows, mesh)


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
  model, variables, description = network(config, workdir, init, mesh, checkpoint)
  return embedder(model, variables, mesh), description


def trained_variables(config, workdir: str, checkpoint: str, mesh):
  """(model, {'params', 'batch_stats'}, description) of the run's latest checkpoint or of
  --checkpoint, replicated over `mesh`."""
  models.check_grids(config)  # A config.json edited by hand is read here unchecked.
  # Restored into the state's shapes alone: initialising it first would compile the
  # model's and optimiser's init, most of a command's start-up on a CPU.
  replicated = parallel.replicated(mesh)
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                          step.abstract_state(config))
  state, description = restore_state(abstract, workdir, checkpoint)
  variables = {'params': state['params'], 'batch_stats': state['batch_stats']}
  return models.build_model(config), variables, description


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
