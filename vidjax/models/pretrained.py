"""Pretrained ResNet weights in: a safetensors file in torchvision's or timm's parameter
naming (the two name a ResNet's tensors alike: conv1, bn1, layer1.0.conv1, ...,
layer2.0.downsample.0/1, fc) -> the encoder's Flax params and BatchNorm statistics.

Convolutions go from PyTorch's OIHW to Flax's HWIO; BatchNorm weight/bias/running_mean/
running_var become scale/bias/mean/var. The classifier (fc.*) and num_batches_tracked are
not part of an encoder and are left out; any other tensor the encoder does not have, or one
it has and the file does not, or one of another shape, is one ConfigError naming it. The
model must compute as torchvision's does (config.model.torchvision, its RGB 7x7 stem).
"""
import os

import numpy as np

from vidjax.errors import ConfigError
from vidjax.models.resnet import ARCHITECTURES

_IGNORED_SUFFIXES = ('num_batches_tracked',)
_IGNORED_PREFIXES = ('fc.',)
_BN = {'scale': 'weight', 'bias': 'bias', 'mean': 'running_mean', 'var': 'running_var'}


def read(path: str, flag: str) -> dict:
  """{name: float32 array} of a safetensors file, or a ConfigError naming the file."""
  from safetensors.numpy import load_file  # pylint: disable=import-outside-toplevel
  if not os.path.isfile(path):
    raise ConfigError(f'{flag}={path}: no such file; expected a .safetensors file of ResNet '
                      'weights')
  try:
    tensors = load_file(path)
  except Exception as e:  # pylint: disable=broad-except  # safetensors' Rust errors.
    raise ConfigError(f'{flag}={path}: not a readable safetensors file ({e})') from None
  return {name: np.asarray(value, np.float32) for name, value in tensors.items()}


def architecture(tensors: dict, path: str, flag: str) -> tuple:
  """(config.model.name, width) of the ResNet whose weights `tensors` are."""
  if 'conv1.weight' not in tensors:
    raise ConfigError(f'{flag}={path}: no conv1.weight; expected a ResNet in torchvision\'s '
                      'or timm\'s naming')
  blocks = tuple(len({name.split('.')[1] for name in tensors if name.startswith(f'layer{i}.')})
                 for i in range(1, 5))
  bottleneck = 'layer1.0.conv3.weight' in tensors
  for name, (stage_sizes, is_bottleneck) in ARCHITECTURES.items():
    if tuple(stage_sizes) == blocks and is_bottleneck == bottleneck:
      return name, tensors['conv1.weight'].shape[0] / 64
  raise ConfigError(f'{flag}={path}: {blocks} blocks per stage'
                    f'{" (bottleneck)" if bottleneck else ""} is none of '
                    f'{", ".join(ARCHITECTURES)}')


def check_config(model, path: str, flag: str = '--config.model.init'):
  """ConfigError unless config.model builds the encoder the weights at `path` are for."""
  name, width = architecture(read(path, flag), path, flag)
  wanted = dict(name=name, width=width, torchvision=True, cifar_stem=False, gradient_stem=False)
  wrong = [f'config.model.{key}={value!r}' for key, value in wanted.items()
           if model[key] != value]
  if wrong:
    raise ConfigError(f'{flag}={path}: these weights are a torchvision {name} with its RGB '
                      f'stem; set {", ".join(wrong)}')


def _torch_name(path: tuple, layers: dict, norms: int) -> str:
  """The torchvision name of the Flax encoder variable at `path` (module names, leaf);
  `layers` maps block module names to 'layer<stage>.<index>', `norms` is BatchNorms per
  block with a projection (the last of which is the projection's)."""
  *modules, leaf = path
  if modules[0] == 'stem_conv':
    prefix = 'conv1'
  elif modules[0] == 'stem_bn':
    prefix = 'bn1'
  else:
    layer, module = layers[modules[0]], modules[1]
    number = int(module.rsplit('_', 1)[1]) if module != 'proj_conv' else 0
    if module == 'proj_conv':
      prefix = f'{layer}.downsample.0'
    elif module.startswith('Conv_'):
      prefix = f'{layer}.conv{number + 1}'
    elif number == norms - 1:
      prefix = f'{layer}.downsample.1'
    else:
      prefix = f'{layer}.bn{number + 1}'
  return f'{prefix}.{"weight" if leaf == "kernel" else _BN[leaf]}'


def _block_layers(encoder_params, stage_sizes) -> dict:
  """{'BasicBlock_3': 'layer2.1', ...}: each block module of the encoder, torchvision's name."""
  blocks = sorted((k for k in encoder_params if 'Block_' in k),
                  key=lambda k: int(k.rsplit('_', 1)[1]))
  return dict(zip(blocks, (f'layer{stage + 1}.{i}' for stage, size in enumerate(stage_sizes)
                           for i in range(size))))


def encoder_variables(tensors: dict, path: str, encoder_params, encoder_stats,
                      flag: str) -> tuple:
  """(params, batch_stats) of the encoder, shaped like `encoder_params` and `encoder_stats`
  (the Flax encoder's, e.g. from its abstract init), filled from `tensors` (read(path))."""
  stage_sizes, bottleneck = ARCHITECTURES[architecture(tensors, path, flag)[0]]
  layers = _block_layers(encoder_params, stage_sizes)
  norms = 4 if bottleneck else 3
  used = set()

  def fill(tree, prefix=()):
    out = {}
    for key, value in tree.items():
      if isinstance(value, dict):
        out[key] = fill(value, prefix + (key,))
        continue
      name = _torch_name(prefix + (key,), layers, norms)
      if name not in tensors:
        raise ConfigError(f'{flag}={path}: missing tensor {name} (the encoder\'s '
                          f'{"/".join(prefix + (key,))}, shape {tuple(value.shape)})')
      array = tensors[name]
      if key == 'kernel':
        array = array.transpose(2, 3, 1, 0)  # OIHW -> HWIO.
      if array.shape != tuple(value.shape):
        raise ConfigError(f'{flag}={path}: tensor {name} has shape {tensors[name].shape}, the '
                          f'encoder needs {tuple(value.shape)} (as HWIO for a convolution)')
      used.add(name)
      out[key] = array
    return out

  params, stats = fill(dict(encoder_params)), fill(dict(encoder_stats))
  extra = sorted(name for name in tensors if name not in used
                 and not name.endswith(_IGNORED_SUFFIXES)
                 and not name.startswith(_IGNORED_PREFIXES))
  if extra:
    raise ConfigError(f'{flag}={path}: {len(extra)} tensors the encoder does not have, '
                      f'e.g. {extra[0]}')
  return params, stats


def torchvision_tensors(model_name: str, encoder_params, encoder_stats) -> dict:
  """The encoder's variables (numpy trees) as {torchvision name: array}, convolutions OIHW,
  each BatchNorm with the num_batches_tracked torchvision's strict loading expects: the
  inverse of encoder_variables."""
  stage_sizes, bottleneck = ARCHITECTURES[model_name]
  layers = _block_layers(encoder_params, stage_sizes)
  norms = 4 if bottleneck else 3
  tensors = {}

  def walk(tree, prefix=()):
    for key, value in tree.items():
      if isinstance(value, dict):
        walk(value, prefix + (key,))
        continue
      array = np.asarray(value, np.float32)
      tensors[_torch_name(prefix + (key,), layers, norms)] = (
          np.ascontiguousarray(array.transpose(3, 2, 0, 1)) if key == 'kernel' else array)

  walk(encoder_params)
  walk(encoder_stats)
  for name in [n for n in tensors if n.endswith('.running_mean')]:
    tensors[name.replace('running_mean', 'num_batches_tracked')] = np.zeros((), np.int64)
  return tensors
