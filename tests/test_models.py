"""The encoder's pooling: what `model.pool_grid` and `model.embed_grid` make of the last
feature map."""
import jax
import numpy as np
import pytest

from configs import barlow
from vidjax import models
from vidjax.errors import ConfigError
from vidjax.models import resnet


def test_grid_pool_is_the_mean_of_each_cell_in_row_order():
  feature_map = np.random.default_rng(0).normal(size=(3, 4, 6, 5)).astype(np.float32)
  pooled = np.asarray(resnet.grid_pool(feature_map, 2))
  cells = [feature_map[:, i:i + 2, j:j + 3].mean(axis=(1, 2)) for i in (0, 2) for j in (0, 3)]
  np.testing.assert_allclose(pooled, np.concatenate(cells, axis=1), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(resnet.grid_pool(feature_map, 1)),
                             feature_map.mean(axis=(1, 2)), rtol=1e-6)


def test_the_feature_holds_each_cell_of_the_grid():
  config = barlow.get_config('smoke')
  config.model.update(pool_grid=2, embed_grid=0)
  model = models.build_model(config)
  images = np.random.default_rng(1).uniform(size=(2, 32, 32, 3)).astype(np.float32)
  variables = model.init(jax.random.key(0), images, train=False)
  feature_map = model.encoder.apply(
      {'params': variables['params']['encoder'],
       'batch_stats': variables['batch_stats']['encoder']},
      (images - models.heads.IMAGENET_MEAN) / models.heads.IMAGENET_STD, train=False, pooled=False)
  feature = model.apply(variables, images, method=models.SSLModel.embed)
  assert feature.shape == (2, 4 * feature_map.shape[-1])
  np.testing.assert_allclose(np.asarray(feature), np.asarray(resnet.grid_pool(feature_map, 2)),
                             rtol=1e-5, atol=1e-6)


def test_an_image_size_off_the_downsampling_pools_as_its_map_allows():
  config = barlow.get_config('smoke')
  config.image_size = 36  # The last map is 5x5: whole, not in quadrants.
  config.model.update(pool_grid=1, embed_grid=0)
  models.check_config(config)
  config.model.update(pool_grid=5, embed_grid=5)
  models.check_config(config)


def test_the_embedding_reads_embed_grid_and_the_loss_reads_pool_grid():
  config = barlow.get_config('smoke')
  config.model.update(pool_grid=2, embed_grid=4)
  models.check_config(config)
  model = models.build_model(config)
  images = np.random.default_rng(2).uniform(size=(2, 32, 32, 3)).astype(np.float32)
  variables = model.init(jax.random.key(0), images, train=False)
  feature_map = model.apply(
      variables, (images - models.heads.IMAGENET_MEAN) / models.heads.IMAGENET_STD,
      method=lambda m, x: m.encoder(x, train=False, pooled=False))
  embedding = model.apply(variables, images, method=models.SSLModel.embed)
  np.testing.assert_allclose(np.asarray(embedding),
                             np.asarray(feature_map).reshape(2, -1), rtol=1e-5, atol=1e-6)
  outputs = model.apply(variables, images, train=False)
  np.testing.assert_allclose(np.asarray(outputs['feature']),
                             np.asarray(resnet.grid_pool(feature_map, 2)), rtol=1e-5, atol=1e-6)
  config.model.embed_grid = 3
  with pytest.raises(ConfigError, match=r'config.model.embed_grid=3: expected 0 \(as pool_grid\)'):
    models.check_config(config)
  config.model.update(pool_grid=3, embed_grid=3)  # Both named in one line.
  with pytest.raises(ConfigError, match=r'^config.model.pool_grid=3: .*; config.model.embed_grid=3'):
    models.check_config(config)
