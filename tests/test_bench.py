"""bench/object_crop_views.py: --init_encoder (another run's encoder, or one clear error) and
the HOG look-alikes of --pairing=hog."""
import importlib.util
import os

import jax
import numpy as np
import pytest

from configs import npair, simsiam
from vidjax import parallel, step, train
from vidjax.data.sources import world_crops

_BENCH = os.path.join(os.path.dirname(__file__), '..', 'bench', 'object_crop_views.py')


@pytest.fixture(scope='module')
def bench():
  spec = importlib.util.spec_from_file_location('object_crop_views', _BENCH)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope='module')
def npair_checkpoint(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('npair')
  config = npair.get_config('smoke')
  config.update(total_steps=2, eval_every=100, checkpoint_every=100)
  trained = train.train_and_evaluate(config, str(workdir))
  return workdir / 'checkpoints' / '2', jax.device_get(trained)


def _simsiam_state(**model):
  config = simsiam.get_config('smoke')
  config.model.update(model)
  mesh = parallel.make_mesh()
  return step.make_state_and_step(config, mesh)[1], mesh


def test_encoder_comes_from_the_checkpoint_heads_stay(bench, npair_checkpoint):
  checkpoint, trained = npair_checkpoint
  state, mesh = _simsiam_state()
  started = bench.with_encoder_of(state, str(checkpoint), mesh)
  for got, want in zip(jax.tree.leaves(started['params']['encoder']),
                       jax.tree.leaves(trained['params']['encoder'])):
    np.testing.assert_array_equal(got, want)
  for got, want in zip(jax.tree.leaves(started['batch_stats']['encoder']),
                       jax.tree.leaves(trained['batch_stats']['encoder'])):
    np.testing.assert_array_equal(got, want)
  for got, want in zip(jax.tree.leaves(started['params']['projector']),
                       jax.tree.leaves(jax.device_get(state['params']['projector']))):
    np.testing.assert_array_equal(got, want)


def test_bad_init_encoder_is_one_error(bench, npair_checkpoint, tmp_path):
  checkpoint, _ = npair_checkpoint
  state, mesh = _simsiam_state(width=0.25)  # the smoke N-pair run used width 0.125
  with pytest.raises(SystemExit, match=r'--init_encoder=.*its encoder differs'):
    bench.with_encoder_of(state, str(checkpoint), mesh)
  with pytest.raises(SystemExit, match=r'--init_encoder=.*no config.json'):
    bench.with_encoder_of(state, str(tmp_path / 'checkpoints' / '2'), mesh)


def test_hog_look_alikes_come_from_other_videos_and_share_categories(bench):
  crops = world_crops.labelled_crops(split='train', per_class=12, crop_size=32)
  partner = bench.hog_partners(crops)
  assert partner.shape == (len(crops),)
  assert np.all(crops.videos[partner] != crops.videos)
  # HOG finds the category far more often than chance (0.1) even among 120 crops.
  assert np.mean(crops.labels[partner] == crops.labels) > 0.3
