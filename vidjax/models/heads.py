"""Projector / predictor MLPs and the encoder+heads model the trainer optimises."""
from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from vidjax.models.resnet import grid_pool

# ImageNet channel statistics: the usual input normalisation, also right for natural video.
# numpy, not jax.numpy: a jax array made at import time would start JAX's backend before
# jax.distributed.initialize can run in a multi-host job.
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def embedding(encoder: nn.Module, images, grid: int, train: bool):
  """Images in [0, 1] -> the encoder's last map averaged over each cell of a grid x grid
  split (0: the encoder's own pool_grid), cells concatenated: what evaluation reads."""
  last_map = encoder((images - IMAGENET_MEAN) / IMAGENET_STD, train=train, pooled=False)
  return grid_pool(last_map, grid or encoder.pool_grid)


class MLP(nn.Module):
  """`num_layers` dense layers; BN+ReLU after every hidden one.

  `output_norm` ends with a BatchNorm without affine parameters, as SimSiam's projector does.
  Matmuls run in `dtype`; the output is float32, as the losses want it.
  """
  hidden_dim: int
  output_dim: int
  num_layers: int = 2
  output_norm: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    for _ in range(self.num_layers - 1):
      x = nn.Dense(self.hidden_dim, use_bias=False, dtype=self.dtype)(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype)(x)
      x = nn.relu(x)
    x = nn.Dense(self.output_dim, use_bias=not self.output_norm, dtype=self.dtype)(x)
    if self.output_norm:
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                       use_bias=False, use_scale=False, dtype=self.dtype)(x)
    return x.astype(jnp.float32)


class SSLModel(nn.Module):
  """Images in [0, 1] -> {'feature': encoder output, 'z': projection, 'p': prediction,
  'hog': predicted HOG descriptor}.

  'feature' is what the training loss reads; 'z'/'p'/'hog' exist only for the loss ('p' with
  a predictor, 'hog' with a hog_head). `embed` is what evaluation, the index and export read:
  the encoder's last map pooled over an embed_grid x embed_grid grid (0: as the encoder pools
  'feature').
  """
  encoder: nn.Module
  projector: nn.Module
  predictor: Optional[nn.Module] = None
  hog_head: Optional[nn.Module] = None
  embed_grid: int = 0

  def embed(self, images):
    return embedding(self.encoder, images, self.embed_grid, train=False)

  def __call__(self, images, train: bool):
    feature = self.encoder((images - IMAGENET_MEAN) / IMAGENET_STD, train=train)
    outputs = {'feature': feature, 'z': self.projector(feature, train=train)}
    if self.predictor is not None:
      outputs['p'] = self.predictor(outputs['z'], train=train)
    if self.hog_head is not None:
      outputs['hog'] = self.hog_head(feature, train=train)
    return outputs
