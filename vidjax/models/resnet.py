"""ResNet encoders in Flax Linen, after flax/examples/imagenet/models.py.

`cifar_stem` swaps the 7x7/2 convolution and max-pool for one 3x3/1 convolution, the usual
choice for images of 32-96 px; `torchvision` pads as torchvision's ResNet does
(symmetrically, where Flax's 'SAME' pads a stride-2 window on one side only), which
weights trained there need (models/pretrained.py; the input is ImageNet-normalised by
SSLModel either way); `gradient_stem` first turns the image into local histograms of
oriented gradients (fixed, see `oriented_gradients`); `width` multiplies every stage's
channel count; with `native_kernels` training on a CPU computes the convolutions and their
gradients with oneDNN (models/onednn.py) and BatchNorm's sums in C++ (models/batch_norm.py)
where a layer is large enough for that to pay. `dtype` is the computation dtype
(bfloat16 for mixed precision): parameters stay float32, BatchNorm statistics are reduced
in float32 (Flax's default), and the pooled features are float32.
"""
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vidjax import hog
from vidjax.models import batch_norm, onednn

ORIENTATIONS = 9
SMOOTH = 3  # Pixels over which the orientation votes are averaged, like a small HOG cell.
NORM_WINDOW = 8  # Pixels over which the gradient energy is normalised, like a HOG block.
NORM_EPS = 1e-4


def oriented_gradients(x):
  """[N, H, W, 9] local orientation histograms of normalised images [N, H, W, C]: a fixed
  input layer with HOG's invariances (colour, contrast, light/dark inversion), so that what
  the network builds on is edges and texture by orientation, as HOG's, rather than colour
  and brightness, which here tell the photographs apart better than the objects."""
  votes = jax.lax.stop_gradient(hog.orientation_votes(x.astype(jnp.float32), ORIENTATIONS,
                                                      xp=jnp))
  votes = nn.avg_pool(votes, (SMOOTH, SMOOTH), padding='SAME')
  energy = nn.avg_pool(jnp.sum(votes ** 2, axis=-1, keepdims=True),
                       (NORM_WINDOW, NORM_WINDOW), padding='SAME')
  return (votes / jnp.sqrt(energy + NORM_EPS)).astype(x.dtype)


def _last_scale_init(zero_init_residual: bool):
  """Zero-initialising each block's last BN scale starts it as the identity (Goyal et al.
  2017): good for supervised training, but the block's convolutions then get no gradient
  until that scale has grown, which a weak, slowly growing signal such as SimSiam's over a
  short run may never do (bench/object_crop_views.py prints the scales)."""
  return nn.initializers.zeros if zero_init_residual else nn.initializers.ones


def _padding(torchvision: bool, kernel: int):
  return [((kernel - 1) // 2,) * 2] * 2 if torchvision else 'SAME'


def _conv_and_norm(native_kernels: bool, train: bool, dtype):
  """nn.Conv (no bias) and nn.BatchNorm, or in training with native kernels the same
  layers whose convolutions are oneDNN's and whose BatchNorm sums are C++."""
  native = native_kernels and train
  conv = functools.partial(
      nn.Conv, use_bias=False, dtype=dtype,
      conv_general_dilated=onednn.conv_general_dilated if native else jax.lax.conv_general_dilated)
  norm = functools.partial(batch_norm.BatchNorm if native else nn.BatchNorm,
                           use_running_average=not train, momentum=0.9, dtype=dtype)
  return conv, norm


class BasicBlock(nn.Module):
  filters: int
  strides: int = 1
  zero_init_residual: bool = True
  dtype: Any = jnp.float32
  torchvision: bool = False
  native_kernels: bool = False

  @nn.compact
  def __call__(self, x, train: bool):
    conv, norm = _conv_and_norm(self.native_kernels, train, self.dtype)
    conv = functools.partial(conv, padding=_padding(self.torchvision, 3))
    y = nn.relu(norm()(conv(self.filters, (3, 3), self.strides)(x)))
    y = norm(scale_init=_last_scale_init(self.zero_init_residual))(conv(self.filters, (3, 3))(y))
    if x.shape != y.shape:
      x = norm()(conv(self.filters, (1, 1), self.strides, padding='VALID', name='proj_conv')(x))
    return nn.relu(x + y)


class BottleneckBlock(nn.Module):
  filters: int
  strides: int = 1
  zero_init_residual: bool = True
  dtype: Any = jnp.float32
  torchvision: bool = False
  native_kernels: bool = False

  @nn.compact
  def __call__(self, x, train: bool):
    conv, norm = _conv_and_norm(self.native_kernels, train, self.dtype)
    conv = functools.partial(conv, padding=_padding(self.torchvision, 3))
    y = nn.relu(norm()(conv(self.filters, (1, 1), padding='VALID')(x)))
    y = nn.relu(norm()(conv(self.filters, (3, 3), self.strides)(y)))
    y = norm(scale_init=_last_scale_init(self.zero_init_residual))(
        conv(self.filters * 4, (1, 1), padding='VALID')(y))
    if x.shape != y.shape:
      x = norm()(conv(self.filters * 4, (1, 1), self.strides, padding='VALID',
                      name='proj_conv')(x))
    return nn.relu(x + y)


def grid_pool(x, grid: int):
  """[N, H, W, C] -> [N, grid * grid * C]: the mean over each cell of a grid x grid split of
  the map (H and W divisible by grid), cells in row order; grid 1 is global average pooling."""
  n, h, w, c = x.shape
  cells = x.reshape(n, grid, h // grid, grid, w // grid, c).mean(axis=(2, 4))
  return cells.reshape(n, grid * grid * c)


class ResNet(nn.Module):
  """Images [N, H, W, C] (already normalised) -> pooled features [N, pool_grid² * C_out], or
  with pooled=False the last feature map [N, H / downsampling, W / downsampling, C_out]."""
  stage_sizes: Sequence[int]
  bottleneck: bool = False
  width: float = 1.0
  cifar_stem: bool = False
  gradient_stem: bool = False
  zero_init_residual: bool = True
  pool_grid: int = 1
  dtype: Any = jnp.float32
  torchvision: bool = False
  native_kernels: bool = False

  @nn.compact
  def __call__(self, x, train: bool, pooled: bool = True):
    base = max(8, int(64 * self.width))
    conv, norm = _conv_and_norm(self.native_kernels, train, self.dtype)
    stem_dtype = self.dtype
    if self.gradient_stem:
      x = oriented_gradients(x)
      # Its inputs are all >= 0, so bfloat16 sums of their products lose the small
      # differences the gradient lives on; one float32 convolution is cheap.
      stem_dtype = jnp.float32
    if self.cifar_stem:
      x = conv(base, (3, 3), dtype=stem_dtype, name='stem_conv')(x)
      x = nn.relu(norm(name='stem_bn')(x))
    else:
      x = conv(base, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], dtype=stem_dtype,
               name='stem_conv')(x)
      x = nn.relu(norm(name='stem_bn')(x))
      x = nn.max_pool(x, (3, 3), (2, 2), padding=_padding(self.torchvision, 3))
    block = BottleneckBlock if self.bottleneck else BasicBlock
    for stage, num_blocks in enumerate(self.stage_sizes):
      for b in range(num_blocks):
        strides = 2 if stage > 0 and b == 0 else 1
        x = block(base * 2**stage, strides, self.zero_init_residual, self.dtype,
                  self.torchvision, self.native_kernels)(x, train)
    x = x.astype(jnp.float32)
    return grid_pool(x, self.pool_grid) if pooled else x


# config.model.dtype -> the computation dtype.
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}

# name -> (stage sizes, bottleneck). `resnet10` is the small, fast default for CPU runs.
ARCHITECTURES = {
    'resnet10': ((1, 1, 1, 1), False),
    'resnet18': ((2, 2, 2, 2), False),
    'resnet34': ((3, 4, 6, 3), False),
    'resnet50': ((3, 4, 6, 3), True),
}


def downsampling(name: str, cifar_stem: bool) -> int:
  """How many times smaller the last feature map is than the input."""
  stage_sizes, _ = ARCHITECTURES[name]
  return 2**(len(stage_sizes) - 1) * (1 if cifar_stem else 4)
