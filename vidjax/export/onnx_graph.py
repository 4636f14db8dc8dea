"""The encoder as an ONNX graph, written with the `onnx` package's own helpers from the Flax
parameters: uint8 images [N, S, S, 3] (NHWC, RGB, 0-255) -> the float32 embedding
[N, D] that `vidjax.evaluate` and `vidjax.index` use (SSLModel.embed: ImageNet
normalisation, the ResNet, its grid pooling).

Why not jax2onnx: the release that exists needs an older orbax-checkpoint than the pinned
one. The graph is inference-only, so each BatchNorm is folded into the convolution before
it. The gradient stem's orientation bins are found by comparing the gradient with each
bin's edge (sign of a cross product) rather than by atan2, which ONNX lacks; a pixel
within float rounding of a bin edge may vote in the neighbouring bin (the difference to
JAX is measured on every export, export.json).
"""
import numpy as np

from vidjax.models import resnet
from vidjax.models.heads import IMAGENET_MEAN, IMAGENET_STD

OPSET = 17
_IR_VERSION = 8  # The oldest that holds opset 17: runtimes back to onnxruntime 1.11 read it.
_BN_EPS = 1e-5  # flax.linen.BatchNorm's default epsilon.


def _same_pads(size: int, kernel: int, stride: int) -> tuple:
  """(before, after) padding of XLA's 'SAME' on one axis: the extra pixel goes after."""
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


class _Graph:
  """Nodes and constants of one graph, each output named uniquely."""

  def __init__(self):
    import onnx  # pylint: disable=import-outside-toplevel
    from onnx import helper, numpy_helper  # pylint: disable=import-outside-toplevel
    self.onnx, self.helper, self.numpy_helper = onnx, helper, numpy_helper
    self.nodes, self.constants, self.count = [], [], 0

  def name(self, hint: str) -> str:
    self.count += 1
    return f'{hint}_{self.count}'

  def const(self, value, hint='const') -> str:
    name = self.name(hint)
    self.constants.append(self.numpy_helper.from_array(np.asarray(value), name))
    return name

  def op(self, op_type: str, *inputs: str, out: str = '', **attributes) -> str:
    out = out or self.name(op_type.lower())
    self.nodes.append(self.helper.make_node(op_type, list(inputs), [out], **attributes))
    return out


def _fold(kernel, norm) -> tuple:
  """(OIHW weight, bias) of a bias-free convolution (HWIO kernel) followed by BatchNorm."""
  scale = norm['scale'] / np.sqrt(norm['var'] + _BN_EPS)
  weight = np.transpose(kernel, (3, 2, 0, 1)) * scale[:, None, None, None]
  return weight.astype(np.float32), (norm['bias'] - norm['mean'] * scale).astype(np.float32)


class _Writer:
  """Walks the ResNet's modules in the order resnet.ResNet calls them, tracking the side."""

  def __init__(self, graph: _Graph, params: dict, stats: dict, torchvision: bool):
    self.g, self.params, self.stats, self.torchvision = graph, params, stats, torchvision

  def norm(self, path: tuple) -> dict:
    params, stats = self.params, self.stats
    for key in path:
      params, stats = params[key], stats[key]
    return dict(params, **stats)

  def kernel(self, path: tuple):
    params = self.params
    for key in path:
      params = params[key]
    return params['kernel']

  def pads(self, side: int, kernel: int, stride: int, valid: bool = False) -> list:
    if valid:
      return [0, 0, 0, 0]
    if self.torchvision and kernel > 1:
      before = after = (kernel - 1) // 2
    else:
      before, after = _same_pads(side, kernel, stride)
    return [before, before, after, after]

  def conv_bn(self, x: str, side: int, conv: tuple, norm: tuple, stride: int = 1,
              valid: bool = False, pads=None) -> tuple:
    """(output, side) of conv -> BatchNorm, folded into one Conv."""
    weight, bias = _fold(self.kernel(conv), self.norm(norm))
    kernel = weight.shape[-1]
    pads = pads or self.pads(side, kernel, stride, valid)
    out = self.g.op('Conv', x, self.g.const(weight, 'weight'), self.g.const(bias, 'bias'),
                    kernel_shape=[kernel, kernel], strides=[stride, stride], pads=pads)
    return out, (side + pads[0] + pads[2] - kernel) // stride + 1

  def block(self, x: str, side: int, name: str, bottleneck: bool, stride: int) -> tuple:
    relu = lambda y: self.g.op('Relu', y)  # noqa: E731
    if bottleneck:
      y, s = self.conv_bn(x, side, (name, 'Conv_0'), (name, 'BatchNorm_0'), valid=True)
      y, s = self.conv_bn(relu(y), s, (name, 'Conv_1'), (name, 'BatchNorm_1'), stride)
      y, s = self.conv_bn(relu(y), s, (name, 'Conv_2'), (name, 'BatchNorm_2'), valid=True)
      last_norm = 'BatchNorm_3'
    else:
      y, s = self.conv_bn(x, side, (name, 'Conv_0'), (name, 'BatchNorm_0'), stride)
      y, s = self.conv_bn(relu(y), s, (name, 'Conv_1'), (name, 'BatchNorm_1'))
      last_norm = 'BatchNorm_2'
    if 'proj_conv' in self.params[name]:
      x, _ = self.conv_bn(x, side, (name, 'proj_conv'), (name, last_norm), stride, valid=True)
    return relu(self.g.op('Add', x, y)), s


def _oriented_gradients(g: _Graph, x: str, side: int) -> str:
  """resnet.oriented_gradients of normalised images [N, C, H, W] -> [N, 9, H, W]."""
  i64 = lambda *v: g.const(np.array(v, np.int64), 'index')  # noqa: E731
  zero = g.const(np.float32(0), 'zero')

  def centred_difference(axis: int) -> str:  # hog._gradients: 0 on the border rows.
    ahead = g.op('Slice', x, i64(2), i64(side), i64(axis))
    behind = g.op('Slice', x, i64(0), i64(side - 2), i64(axis))
    pads = [0] * 8
    pads[axis], pads[4 + axis] = 1, 1
    return g.op('Pad', g.op('Sub', ahead, behind), g.const(np.array(pads, np.int64), 'pads'))

  g_row, g_col = centred_difference(2), centred_difference(3)
  magnitude = g.op('Sqrt', g.op('Add', g.op('Mul', g_row, g_row), g.op('Mul', g_col, g_col)))
  strongest = g.op('ArgMax', magnitude, axis=1, keepdims=1)
  pick = lambda t: g.op('GatherElements', t, strongest, axis=1)  # noqa: E731
  g_row, g_col, magnitude = pick(g_row), pick(g_col), pick(magnitude)
  # Unsigned orientation: turn (row, col) into the upper half plane, angle in [0, 180).
  lower = g.op('Or', g.op('Less', g_row, zero),
               g.op('And', g.op('Equal', g_row, zero), g.op('Less', g_col, zero)))
  sign = g.op('Where', lower, g.const(np.float32(-1)), g.const(np.float32(1)))
  g_row, g_col = g.op('Mul', g_row, sign), g.op('Mul', g_col, sign)
  # The angle is past edge a iff sin(angle - a) = row cos a - col sin a >= 0.
  edges = np.radians(np.arange(1, resnet.ORIENTATIONS) * 180.0 / resnet.ORIENTATIONS)
  shape = (1, len(edges), 1, 1)
  cross = g.op('Sub', g.op('Mul', g_row, g.const(np.cos(edges).reshape(shape).astype(np.float32))),
               g.op('Mul', g_col, g.const(np.sin(edges).reshape(shape).astype(np.float32))))
  past = g.op('Cast', g.op('GreaterOrEqual', cross, zero), to=g.onnx.TensorProto.FLOAT)
  bins = g.op('ReduceSum', past, i64(1), keepdims=1)
  # hog.orientation_votes puts angles within 1e-3 degrees of 180 in bin 0.
  wrap = g.op('And', g.op('Less', g_col, zero), g.op('LessOrEqual', g_row, g.op(
      'Mul', g.op('Neg', g_col), g.const(np.float32(np.tan(np.radians(1e-3)))))))
  bins = g.op('Where', wrap, zero, bins)
  one_hot = g.op('Cast', g.op('Equal', bins, g.const(
      np.arange(resnet.ORIENTATIONS, dtype=np.float32).reshape(1, -1, 1, 1))),
                 to=g.onnx.TensorProto.FLOAT)
  votes = g.op('Mul', magnitude, one_hot)

  def mean_pool(t: str, window: int) -> str:  # nn.avg_pool, 'SAME', zeros counted.
    before, after = _same_pads(side, window, 1)
    return g.op('AveragePool', t, kernel_shape=[window, window], count_include_pad=1,
                pads=[before, before, after, after])

  votes = mean_pool(votes, resnet.SMOOTH)
  energy = mean_pool(g.op('ReduceSum', g.op('Mul', votes, votes), i64(1), keepdims=1),
                     resnet.NORM_WINDOW)
  return g.op('Div', votes, g.op('Sqrt', g.op('Add', energy,
                                              g.const(np.float32(resnet.NORM_EPS)))))


def encoder_graph(model_config, image_size: int, params: dict, stats: dict) -> bytes:
  """The serialised ONNX model of the encoder `model_config` (config.model) describes, with
  its Flax `params` and BatchNorm `stats` (numpy trees of params['encoder'] and
  batch_stats['encoder']), for image_size x image_size inputs."""
  g = _Graph()
  stage_sizes, bottleneck = resnet.ARCHITECTURES[model_config.name]
  writer = _Writer(g, params, stats, model_config.torchvision)
  x = g.op('Div', g.op('Cast', 'images', to=g.onnx.TensorProto.FLOAT),
           g.const(np.float32(255)))
  x = g.op('Div', g.op('Sub', x, g.const(IMAGENET_MEAN)), g.const(IMAGENET_STD))
  x = g.op('Transpose', x, perm=[0, 3, 1, 2])
  side = image_size
  if model_config.gradient_stem:
    x = _oriented_gradients(g, x, side)
  if model_config.cifar_stem:
    x, side = writer.conv_bn(x, side, ('stem_conv',), ('stem_bn',))
    x = g.op('Relu', x)
  else:
    x, side = writer.conv_bn(x, side, ('stem_conv',), ('stem_bn',), 2, pads=[3, 3, 3, 3])
    x = g.op('Relu', x)
    pads = writer.pads(side, 3, 2)
    x = g.op('MaxPool', x, kernel_shape=[3, 3], strides=[2, 2], pads=pads)
    side = (side + pads[0] + pads[2] - 3) // 2 + 1
  blocks = sorted((k for k in params if 'Block_' in k), key=lambda k: int(k.rsplit('_', 1)[1]))
  strides = [2 if stage > 0 and b == 0 else 1 for stage, size in enumerate(stage_sizes)
             for b in range(size)]
  for name, stride in zip(blocks, strides):
    x, side = writer.block(x, side, name, bottleneck, stride)
  grid = model_config.embed_grid or model_config.pool_grid
  cell = side // grid
  pooled = g.op('AveragePool', x, kernel_shape=[cell, cell], strides=[cell, cell])
  pooled = g.op('Transpose', pooled, perm=[0, 2, 3, 1])  # Cells in row order, as grid_pool.
  g.op('Reshape', pooled, g.const(np.array([0, -1], np.int64)), out='embedding')
  last_conv = params[blocks[-1]]['Conv_2' if bottleneck else 'Conv_1']['kernel']
  channels = last_conv.shape[-1]
  graph = g.helper.make_graph(
      g.nodes, 'vidjax_encoder',
      [g.helper.make_tensor_value_info('images', g.onnx.TensorProto.UINT8,
                                       ['N', image_size, image_size, 3])],
      [g.helper.make_tensor_value_info('embedding', g.onnx.TensorProto.FLOAT,
                                       ['N', grid * grid * channels])],
      g.constants)
  model = g.helper.make_model(graph, opset_imports=[g.helper.make_opsetid('', OPSET)],
                              producer_name='vidjax')
  model.ir_version = _IR_VERSION
  g.onnx.checker.check_model(model)
  return model.SerializeToString()
