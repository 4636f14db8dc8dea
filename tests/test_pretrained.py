"""Pretrained weights in (vidjax/models/pretrained.py): a tiny ResNet-18 in torchvision's
layout, saved as safetensors, gives through the Flax encoder what a numpy forward written
after torchvision's code gives, so the name mapping and layouts are proven without torch."""
import json
import os
import types

import jax
import numpy as np
import pytest
from safetensors.numpy import save_file

from configs import npair
from vidjax import train
from vidjax.errors import ConfigError
from vidjax.evaluate import protocol
from vidjax.index import command
from vidjax.models import build_model, pretrained
from vidjax.search import corpus

EPS = 1e-5  # BatchNorm's, in torchvision and Flax alike.


def _torchvision_resnet18(base: int, seed: int = 0) -> dict:
  """Random weights named and shaped as torchvision's resnet18 (fc included) at `base`
  stem channels (64 in torchvision's)."""
  rng = np.random.default_rng(seed)
  tensors = {}

  def conv(name, out, into, k):
    tensors[f'{name}.weight'] = rng.normal(0, np.sqrt(2 / (into * k * k)), (out, into, k, k))

  def bn(name, c):
    tensors[f'{name}.weight'] = rng.uniform(0.5, 1.5, c)
    tensors[f'{name}.bias'] = rng.normal(0, 0.1, c)
    tensors[f'{name}.running_mean'] = rng.normal(0, 0.1, c)
    tensors[f'{name}.running_var'] = rng.uniform(0.5, 1.5, c)
    tensors[f'{name}.num_batches_tracked'] = np.array(100)

  conv('conv1', base, 3, 7)
  bn('bn1', base)
  into = base
  for stage in range(4):
    out = base * 2**stage
    for i in range(2):
      layer = f'layer{stage + 1}.{i}'
      conv(f'{layer}.conv1', out, into if i == 0 else out, 3)
      bn(f'{layer}.bn1', out)
      conv(f'{layer}.conv2', out, out, 3)
      bn(f'{layer}.bn2', out)
      if i == 0 and stage > 0:
        conv(f'{layer}.downsample.0', out, into, 1)
        bn(f'{layer}.downsample.1', out)
    into = out
  tensors['fc.weight'] = rng.normal(0, 0.01, (1000, into))
  tensors['fc.bias'] = np.zeros(1000)
  return {k: np.asarray(v, np.float32 if v.dtype.kind == 'f' else np.int64)
          for k, v in tensors.items()}


def _conv(x, w, stride, padding):
  """torch.nn.functional.conv2d on NCHW / OIHW, in numpy."""
  x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
  out_c, _, k, _ = w.shape
  h = (x.shape[2] - k) // stride + 1
  wd = (x.shape[3] - k) // stride + 1
  out = np.zeros((x.shape[0], out_c, h, wd), np.float64)
  for dy in range(k):
    for dx in range(k):
      patch = x[:, :, dy:dy + stride * h:stride, dx:dx + stride * wd:stride]
      out += np.einsum('nchw,oc->nohw', patch, w[:, :, dy, dx])
  return out


def _bn(x, t, name):
  shape = (1, -1, 1, 1)
  return ((x - t[f'{name}.running_mean'].reshape(shape))
          / np.sqrt(t[f'{name}.running_var'].reshape(shape) + EPS)
          * t[f'{name}.weight'].reshape(shape) + t[f'{name}.bias'].reshape(shape))


def _maxpool(x):  # nn.MaxPool2d(3, 2, padding=1)
  x = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
  h, w = (x.shape[2] - 3) // 2 + 1, (x.shape[3] - 3) // 2 + 1
  return np.max([x[:, :, dy:dy + 2 * h:2, dx:dx + 2 * w:2] for dy in range(3)
                 for dx in range(3)], axis=0)


def _numpy_forward(t, images):
  """torchvision's ResNet.forward up to layer4 on [N, H, W, 3] images in [0, 1]."""
  mean = np.array([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
  std = np.array([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)
  x = (images.transpose(0, 3, 1, 2) - mean) / std
  relu = lambda v: np.maximum(v, 0)  # noqa: E731
  x = _maxpool(relu(_bn(_conv(x, t['conv1.weight'], 2, 3), t, 'bn1')))
  for stage in range(4):
    for i in range(2):
      layer = f'layer{stage + 1}.{i}'
      stride = 2 if stage > 0 and i == 0 else 1
      y = relu(_bn(_conv(x, t[f'{layer}.conv1.weight'], stride, 1), t, f'{layer}.bn1'))
      y = _bn(_conv(y, t[f'{layer}.conv2.weight'], 1, 1), t, f'{layer}.bn2')
      if f'{layer}.downsample.0.weight' in t:
        x = _bn(_conv(x, t[f'{layer}.downsample.0.weight'], stride, 0), t,
                f'{layer}.downsample.1')
      x = relu(x + y)
  return x.transpose(0, 2, 3, 1)


def _config(path=''):
  config = npair.get_config('smoke')
  config.model.update(name='resnet18', width=0.125, torchvision=True, cifar_stem=False,
                      gradient_stem=False, pool_grid=1, embed_grid=0, init=path)
  return config


@pytest.fixture
def weights(tmp_path):
  tensors = _torchvision_resnet18(base=8)
  path = str(tmp_path / 'resnet18.safetensors')
  save_file(tensors, path)
  return path, tensors


def test_loaded_weights_compute_what_torchvision_computes(weights):
  path, tensors = weights
  encoder = build_model(_config()).encoder
  images = np.random.default_rng(1).random((2, 40, 40, 3)).astype(np.float32)
  shapes = jax.eval_shape(lambda: encoder.init(jax.random.PRNGKey(0), images, train=False))
  params, stats = pretrained.encoder_variables(
      pretrained.read(path, '--config.model.init'), path, shapes['params'],
      shapes['batch_stats'], '--config.model.init')
  normalised = (images - [0.485, 0.456, 0.406]) / np.float32([0.229, 0.224, 0.225])
  feature_map = encoder.apply({'params': params, 'batch_stats': stats},
                              normalised.astype(np.float32), train=False, pooled=False)
  expected = _numpy_forward({k: v.astype(np.float64) for k, v in tensors.items()}, images)
  assert feature_map.shape == expected.shape == (2, 2, 2, 64)
  np.testing.assert_allclose(feature_map, expected, rtol=1e-4, atol=1e-4)


def test_a_missing_extra_or_misshaped_tensor_is_one_line(weights, tmp_path):
  path, tensors = weights
  encoder = build_model(_config()).encoder
  shapes = jax.eval_shape(lambda: encoder.init(jax.random.PRNGKey(0),
                                               np.zeros((1, 32, 32, 3), np.float32), train=False))
  broken = tmp_path / 'broken.safetensors'
  cases = (
      ({k: v for k, v in tensors.items() if k != 'layer3.0.bn2.running_var'},
       'missing tensor layer3.0.bn2.running_var'),
      (dict(tensors, **{'layer9.extra': np.zeros(3, np.float32)}), '1 tensors the encoder '
       'does not have, e.g. layer9.extra'),
      (dict(tensors, **{'layer2.0.conv1.weight': np.zeros((16, 8, 5, 5), np.float32)}),
       r'tensor layer2.0.conv1.weight has shape \(16, 8, 5, 5\), the encoder needs '
       r'\(3, 3, 8, 16\)'),
  )
  for given, message in cases:
    save_file(given, str(broken))
    with pytest.raises(ConfigError, match=message) as error:
      pretrained.encoder_variables(pretrained.read(str(broken), '--config.model.init'),
                                   str(broken), shapes['params'], shapes['batch_stats'],
                                   '--config.model.init')
    assert '\n' not in str(error.value)
  with pytest.raises(ConfigError, match=r'set config.model.cifar_stem=False, '
                     r'config.model.gradient_stem=False'):
    config = _config()
    config.model.update(cifar_stem=True, gradient_stem=True)
    pretrained.check_config(config.model, path)


def test_training_starts_from_the_weights(weights, tmp_path):
  path, tensors = weights
  config = _config(path)
  config.update(total_steps=1, eval_every=100, checkpoint_every=100)
  config.optim.base_lr = 1e-12  # One step that moves no weight measurably.
  state = train.train_and_evaluate(config, str(tmp_path / 'run'))
  kernel = np.asarray(state['params']['encoder']['stem_conv']['kernel'])
  np.testing.assert_allclose(kernel, tensors['conv1.weight'].transpose(2, 3, 1, 0), atol=1e-6)
  config.model.gradient_stem = True
  with pytest.raises(ConfigError, match='set config.model.gradient_stem=False'):
    train.train_and_evaluate(config, str(tmp_path / 'other'))


def test_evaluate_and_index_with_weights(weights, smoke_run, tmp_path):
  path, _ = weights
  options = types.SimpleNamespace(
      workdir=smoke_run, init=f'weights:{path}', checkpoint='', support='synthetic',
      query='synthetic', index='Flat', shots=['5'], draws=3, linear_samples_per_class=0,
      linear_runs=1, grid_queries=4, grid_neighbours=3, batch_size=64, finetune=False)
  protocol.run(options)
  with open(os.path.join(smoke_run, 'eval', 'weights-resnet18', 'metrics.json')) as f:
    result = json.load(f)
  assert result['encoder'] == f'pretrained resnet18 from {path}' and result['knn_top1'] > 0
  output = tmp_path / 'index'
  command.run(command.arguments(workdir=smoke_run, output=str(output), corpus='synthetic',
                                max_videos=2, init=f'weights:{path}'))
  os.remove(path)  # The index keeps its own copy of the weights.
  index = corpus.CorpusIndex(str(output))
  hits = index.search(index.embed(index.frame_of(index.row(0))), k=1)  # Embedded anew.
  assert index.index.d == 64 and hits[0]['score'] > 0.99
  options.init = 'weights:'
  with pytest.raises(SystemExit, match='--init=weights:: expected one of trained'):
    protocol.run(options)


def test_a_missing_or_unreadable_weights_file_is_one_line(tmp_path):
  with pytest.raises(ConfigError, match=r'--init=/nowhere.safetensors: no such file'):
    pretrained.read('/nowhere.safetensors', '--init')
  garbage = tmp_path / 'garbage.safetensors'
  garbage.write_bytes(b'not a safetensors file')
  with pytest.raises(ConfigError, match=r'garbage.safetensors: not a readable safetensors '
                     r'file') as error:
    pretrained.read(str(garbage), '--init')
  assert '\n' not in str(error.value)
