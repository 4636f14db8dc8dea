"""A trained encoder out of vidjax, for PyTorch, C++ or any ONNX runtime.

OUTPUT/encoder.onnx: uint8 images [N, S, S, 3] (NHWC, RGB, 0-255; S the run's
config.image_size) -> float32 embeddings [N, D], the features `vidjax.evaluate` and
`vidjax.index` use (onnx_graph.py). OUTPUT/encoder.safetensors: the encoder's parameters
and BatchNorm statistics in torchvision's ResNet naming (conv1, bn1, layer1.0.conv1, ...,
convolutions OIHW; no fc), what `--init=weights:` and `--config.model.init` read back.
torchvision's own resnet18/34/50 loads it (after `model.fc = torch.nn.Identity()`) where the
run's encoder is one of them: width 1, torchvision=True, the RGB 7x7 stem. Other encoders
(the default's 3x3 stem over oriented gradients, resnet10, other widths) keep those names
but need a model of their own shape; the file's metadata holds config.model.
OUTPUT/export.json says all this, and how far onnxruntime's output was from JAX's.
"""
import importlib.util
import json
import os
import shutil

import jax
import numpy as np

from safetensors.numpy import save_file

from vidjax import __version__, atomic, disk_space, parallel, workdir, writer_lock
from vidjax.errors import ConfigError
from vidjax.evaluate import embed, encoders
from vidjax.export import onnx_graph
from vidjax.models import pretrained
from vidjax.models.resnet import ARCHITECTURES

ONNX, SAFETENSORS, SUMMARY = 'encoder.onnx', 'encoder.safetensors', 'export.json'
_CHECK_IMAGES = 32
_TORCHVISION_NAMES = ('resnet18', 'resnet34', 'resnet50')


def loads_in_torchvision(model_config) -> bool:
  """Whether torchvision's ResNet of that name takes encoder.safetensors as it is."""
  return (model_config.name in _TORCHVISION_NAMES and model_config.width == 1
          and model_config.torchvision and not model_config.cifar_stem
          and not model_config.gradient_stem)


def check_images(image_size: int, count: int = _CHECK_IMAGES, seed: int = 0) -> np.ndarray:
  """uint8 [count, S, S, 3]: noise over smooth ramps at random angles, so that every
  orientation bin and brightness range is exercised."""
  rng = np.random.default_rng(seed)
  grid = np.linspace(-1, 1, image_size)
  rows, cols = np.meshgrid(grid, grid, indexing='ij')
  angles = rng.uniform(0, np.pi, (count, 1, 1, 3))
  ramps = np.cos(angles) * rows[..., None] + np.sin(angles) * cols[..., None]
  noise = rng.normal(0, 0.25, (count, image_size, image_size, 3))
  return np.clip(127.5 + 90 * ramps + 60 * noise, 0, 255).astype(np.uint8)


def onnx_difference(onnx_bytes: bytes, images: np.ndarray, expected: np.ndarray) -> dict | None:
  """Max |onnxruntime - expected| over `images`, or None without onnxruntime."""
  try:
    import onnxruntime  # pylint: disable=import-outside-toplevel
  except ImportError:
    return None
  session = onnxruntime.InferenceSession(onnx_bytes, providers=['CPUExecutionProvider'])
  got = session.run(['embedding'], {'images': images})[0]
  return dict(images=len(images), max_abs_difference=float(np.abs(got - expected).max()),
              max_abs_embedding=float(np.abs(expected).max()),
              onnxruntime=onnxruntime.__version__)


def write(folder: str, config, variables, embed, description: str) -> dict:
  """Writes the three files into `folder` from the encoder's `variables` (Flax 'params' and
  'batch_stats' trees holding 'encoder'); `embed` maps uint8 images to the JAX embedding,
  against which the ONNX graph is checked. Returns what export.json holds."""
  if importlib.util.find_spec('onnx') is None:
    raise ConfigError('vidjax.export needs the onnx package: pip install "vidjax[export]" '
                      '(or pip install -r requirements.txt)')
  params = jax.device_get(variables['params']['encoder'])
  stats = jax.device_get(variables['batch_stats']['encoder'])
  onnx_bytes = onnx_graph.encoder_graph(config.model, config.image_size, params, stats)
  with open(os.path.join(folder, ONNX), 'wb') as f:
    f.write(onnx_bytes)
  model = config.model.to_dict()
  tensors = pretrained.torchvision_tensors(config.model.name, params, stats)
  save_file(tensors, os.path.join(folder, SAFETENSORS),
            metadata={'format': 'pt', 'vidjax_model': json.dumps(model)})
  images = check_images(config.image_size)
  expected = np.asarray(embed(images))
  stage_sizes, _ = ARCHITECTURES[config.model.name]
  summary = dict(
      vidjax_version=__version__, encoder=description, image_size=config.image_size,
      model=model, stage_sizes=list(stage_sizes),
      input=dict(name='images', dtype='uint8', shape=['N', config.image_size,
                                                      config.image_size, 3],
                 layout='NHWC, RGB, 0-255 (normalised inside the graph)'),
      output=dict(name='embedding', dtype='float32', shape=['N', int(expected.shape[1])]),
      onnx=dict(file=ONNX, opset=onnx_graph.OPSET,
                check=onnx_difference(onnx_bytes, images, expected)),
      safetensors=dict(file=SAFETENSORS, naming='torchvision', tensors=len(tensors),
                       loads_in_torchvision=loads_in_torchvision(config.model)))
  with open(os.path.join(folder, SUMMARY), 'w') as f:
    json.dump(summary, f, indent=1)
  return summary


def from_workdir(run_dir: str, output: str, checkpoint: str = '', overwrite: bool = False) -> dict:
  """Exports the encoder of the training run in `run_dir` (its latest checkpoint, or the
  `checkpoint` folder) to the folder `output`: written beside it and swapped in when complete;
  an existing `output` is replaced only with `overwrite`. Returns what export.json holds."""
  output = os.path.abspath(os.path.expanduser(output))
  config = workdir.load_config(run_dir)
  mesh = parallel.make_mesh()
  model, variables, description = encoders.trained_variables(config, run_dir, checkpoint,
                                                             mesh)
  embed_fn = embed.make_embed_fn(model, mesh)
  with (writer_lock.hold(output, '--output', beside=True),
        disk_space.reporting(output, '--output', f'{output} is as it was before; free some '
                             'space and run the same command again')):
    atomic.recover_folder(output)
    if os.path.exists(output) and not overwrite:
      raise ConfigError(f'--output={output} exists; pass --overwrite to replace it (the new '
                        'files are written beside it and swapped in when complete)')
    partial = f'{output}.partial'
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    with atomic.removed_on_error(partial):
      summary = write(partial, config, variables,
                      lambda images: embed.embed_images(embed_fn, variables, images, mesh),
                      description)
    atomic.replace_folder(partial, output)
  return summary
