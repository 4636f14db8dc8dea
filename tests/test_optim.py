"""Optimiser options: SimSiam's predictor learning rate (scaled, held constant)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from configs import simsiam
from vidjax import optim


def _params():
  return {'encoder': {'kernel': jnp.ones((2, 2))}, 'projector': {'kernel': jnp.ones((2, 2))},
          'predictor': {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones(2)}}


def test_default_has_no_separate_predictor_optimizer():
  config = simsiam.get_config()
  tx, _ = optim.make_optimizer(config.optim, 256, 100)
  # The plain chain: checkpoints written before the predictor options restore unchanged.
  assert not isinstance(tx.init(_params()), optax.MultiTransformState)


def test_predictor_lr_scaled_and_held_after_warmup():
  config = simsiam.get_config()
  config.optim.update(name='sgd', momentum=0.0, weight_decay=0.0, warmup_steps=10,
                      base_lr=0.1, lr_scaling='none', predictor_lr_scale=10.0,
                      predictor_constant_lr=True)
  total_steps = 100
  tx, schedule = optim.make_optimizer(config.optim, 256, total_steps)
  predictor_lr = optim.predictor_schedule(config.optim, 256, total_steps)
  assert float(predictor_lr(total_steps - 1)) == np.float32(1.0)  # 10 x 0.1, not decayed
  assert float(schedule(total_steps)) == 0.0
  np.testing.assert_allclose(float(predictor_lr(5)), 0.5, rtol=1e-6)  # warming up

  params = _params()
  state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  for _ in range(50):  # past warmup, into the cosine decay of the rest
    updates, state = tx.update(grads, state, params)
  step = 49
  np.testing.assert_allclose(updates['predictor']['kernel'], -1.0, rtol=1e-6)
  np.testing.assert_allclose(updates['predictor']['bias'], -1.0, rtol=1e-6)
  np.testing.assert_allclose(updates['encoder']['kernel'], -float(schedule(step)), rtol=1e-6)
  np.testing.assert_allclose(updates['projector']['kernel'], -float(schedule(step)), rtol=1e-6)


def test_predictor_lr_scale_decays_with_the_rest_by_default():
  config = simsiam.get_config()
  config.optim.predictor_lr_scale = 3.0
  schedule = optim.learning_rate_schedule(config.optim, 256, 100)
  predictor_lr = optim.predictor_schedule(config.optim, 256, 100)
  for step in (0, 20, 70, 100):
    np.testing.assert_allclose(float(predictor_lr(step)), 3.0 * float(schedule(step)),
                               rtol=1e-6)


def test_bias_lr_scale_slows_only_biases_and_batchnorm():
  config = simsiam.get_config()
  config.optim.update(name='lars', momentum=0.0, weight_decay=0.0, warmup_steps=0,
                      base_lr=0.1, lr_scaling='none', bias_lr_scale=0.05)
  tx, schedule = optim.make_optimizer(config.optim, 256, 100)
  params = {'encoder': {'kernel': jnp.ones((2, 2)), 'bn': {'scale': jnp.ones(2),
                                                            'bias': jnp.ones(2)}}}
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  lr = float(schedule(0))
  np.testing.assert_allclose(updates['encoder']['bn']['scale'], -0.05 * lr, rtol=1e-5)
  np.testing.assert_allclose(updates['encoder']['bn']['bias'], -0.05 * lr, rtol=1e-5)
  # The kernel's LARS step: lr * trust_coefficient * |w| / |g| per unit gradient, unscaled.
  np.testing.assert_allclose(updates['encoder']['kernel'], -lr * 0.02, rtol=1e-5)
