"""The train state and the pure train step, which the trainer and the evaluator both build.

`make_state_and_step(config, mesh)` is the one place a model, its optimiser, its initial
state and the jitted step are made from a config; evaluation uses the state half of it to
restore a checkpoint into.
"""
import functools

import jax
import jax.numpy as jnp
import optax

from vidjax import hog, losses, optim, parallel
from vidjax.data import augment
from vidjax.models import build_model


def create_train_state(rng, *, model, tx, image_size: int):
  """A dict of arrays: step, params, batch_stats, opt_state and the training rng."""
  init_rng, train_rng = jax.random.split(rng)
  variables = model.init(init_rng, jnp.zeros((2, image_size, image_size, 3)), train=False)
  return {
      'step': jnp.zeros((), jnp.int32),
      'params': variables['params'],
      'batch_stats': variables['batch_stats'],
      'opt_state': tx.init(variables['params']),
      'rng': train_rng,
  }


def apply_to_views(model, variables, views, bn_per_view: bool):
  """Training-mode outputs {name: [B, K, D]} for float views [B, K, S, S, 3], and the
  updated BatchNorm statistics.

  By default the B*K views are one batch, so BatchNorm statistics cover every view of the
  global batch. With `bn_per_view` each view position k is a forward pass of its own over
  the B samples, as the official SimSiam and BYOL code forwards x1 and x2 separately; the
  running statistics are then updated once per view, in order.
  """
  batch_size, num_views = views.shape[:2]
  if not bn_per_view:
    outputs, updates = model.apply(variables, views.reshape((-1,) + views.shape[2:]),
                                   train=True, mutable=['batch_stats'])
    return ({k: v.reshape(batch_size, num_views, -1) for k, v in outputs.items()},
            updates['batch_stats'])
  batch_stats = variables['batch_stats']
  per_view = []
  for k in range(num_views):
    outputs, updates = model.apply(dict(variables, batch_stats=batch_stats), views[:, k],
                                   train=True, mutable=['batch_stats'])
    batch_stats = updates['batch_stats']
    per_view.append(outputs)
  return {k: jnp.stack([o[k] for o in per_view], axis=1) for k in per_view[0]}, batch_stats


def _centred(descriptors):
  return descriptors - jnp.mean(descriptors, axis=-1, keepdims=True)


def train_step(state, batch, rng, *, model, tx, schedule, config):
  """One optimisation step on a global batch of K-view samples: (state, metrics).

  batch['views'] is uint8 [B, K, S, S, 3]; see apply_to_views for how they share BatchNorm.
  batch['negatives'] (uint8 [B, N, S, S, 3], with data.crop.negatives) go through the model
  with the views, as further view positions, and reach the loss as negatives only.
  """
  views = batch['views']
  batch_size, num_views = views.shape[:2]
  if 'negatives' in batch:
    views = jnp.concatenate([views, batch['negatives']], axis=1)
  images = views.reshape((-1,) + views.shape[2:]).astype(jnp.float32) / 255
  # HOG of the views as they arrive, before on-device colour changes, centred as --init=hog
  # embeds it: the target of hog_weight's prediction and the teacher of distill_weight's.
  raw_views = batch['views'].reshape((-1,) + views.shape[2:]).astype(jnp.float32) / 255
  hog_target = teacher = None
  if config.loss.hog_weight:
    hog_target = _centred(hog.hog(raw_views, xp=jnp))
  if config.loss.distill_weight:
    teacher = _centred(hog.hog(raw_views, cell=config.loss.distill_hog_cell,
                               block=config.loss.distill_hog_block, xp=jnp))
  photometric_config = config.data.photometric
  if photometric_config.on_device:
    draws = jax.random.uniform(rng, (images.shape[0], augment.num_draws(photometric_config)))
    images = augment.photometric(images, draws, photometric_config, xp=jnp)
  images = images.reshape(views.shape)
  if config.loss.mix_weight:  # One mix of the two views (losses.mixed_loss), a last position.
    alpha_rng, permutation_rng = jax.random.split(jax.random.fold_in(rng, 1))
    alpha = jax.random.beta(alpha_rng, 1.0, 1.0)
    permutation = jax.random.permutation(permutation_rng, batch_size)
    mixed = alpha * images[:, 0] + (1.0 - alpha) * images[:, 1][permutation]
    images = jnp.concatenate([images, mixed[:, None]], axis=1)

  def loss_fn(params):
    outputs, batch_stats = apply_to_views(
        model, {'params': params, 'batch_stats': state['batch_stats']}, images,
        config.model.bn_per_view)
    negatives = None
    if 'negatives' in batch:
      negatives = {k: v[:, num_views:] for k, v in outputs.items()}
    mixed = {k: v[:, -1] for k, v in outputs.items()} if config.loss.mix_weight else None
    outputs = {k: v[:, :num_views] for k, v in outputs.items()}
    loss = losses.method_loss(config.method, outputs, batch['video_id'], config.loss,
                              negatives)
    if mixed is not None:
      loss += config.loss.mix_weight * losses.mixed_loss(
          config.method, outputs, mixed, alpha, permutation, config.loss)
    hog_loss = 0.0
    if config.loss.hog_weight:
      hog_loss = losses.hog_prediction_loss(
          outputs['hog'].reshape(hog_target.shape), hog_target)
    distill_loss = 0.0
    if config.loss.distill_weight:  # HOG as the teacher of the encoder's pooled feature.
      distill_loss = losses.similarity_distillation_loss(
          outputs['feature'].reshape(len(teacher), -1), teacher,
          config.loss.distill_temperature, config.loss.distill_teacher_temperature)
    total = (loss + config.loss.hog_weight * hog_loss
             + config.loss.distill_weight * distill_loss)
    return total, (outputs['feature'], batch_stats, {'hog_loss': hog_loss,
                                                    'distill_loss': distill_loss})

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  (loss, (features, batch_stats, extra_losses)), grads = grad_fn(state['params'])
  updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
  params = optax.apply_updates(state['params'], updates)
  features = losses.l2_normalize(features).reshape(batch_size * num_views, -1)
  metrics = {
      'loss': loss,
      'lr': schedule(state['step']),
      # Collapse indicator (SimSiam paper, Fig. 2), on the encoder's pooled feature (the
      # projection passes through BatchNorm, which hides collapse): -> 0 when collapsed.
      'embed_std': jnp.mean(jnp.std(features, axis=0)),
      'grad_norm': optax.global_norm(grads),
  }
  for name, weight in (('hog_loss', config.loss.hog_weight),
                       ('distill_loss', config.loss.distill_weight)):
    if weight:
      metrics[name] = extra_losses[name]
  new_state = dict(state, step=state['step'] + 1, params=params, batch_stats=batch_stats,
                   opt_state=opt_state)
  return new_state, metrics


def train_steps(state, batches, rngs, **step_options):
  """len(rngs) train_steps in one call, over batches stacked on a leading axis: (state, the
  last step's metrics)."""
  # Unrolled: XLA's CPU backend ran the convolutions of a rolled loop's body 22x slower
  # than the same step called alone (bench/train_speed.py, docs/experiments.md).
  state, metrics = jax.lax.scan(
      lambda state, inputs: train_step(state, *inputs, **step_options), state, (batches, rngs),
      unroll=True)
  return state, jax.tree.map(lambda m: m[-1], metrics)


def make_state_and_step(config, mesh, steps_per_dispatch: int = 1):
  """(model, initial train state replicated over the mesh, jitted state-donating step_fn).

  step_fn(state, global batch, rng) -> (state, metrics); see train_step. With
  steps_per_dispatch K > 1, step_fn(state, K batches stacked, K rngs) runs K steps
  (train_steps).
  """
  model = build_model(config)
  tx, schedule = optim.make_optimizer(config.optim, config.batch_size, config.total_steps)
  replicated = parallel.replicated(mesh)
  state = jax.jit(
      functools.partial(create_train_state, model=model, tx=tx, image_size=config.image_size),
      out_shardings=replicated)(jax.random.PRNGKey(config.seed))
  options = dict(model=model, tx=tx, schedule=schedule, config=config)
  if steps_per_dispatch == 1:
    step, batch_sharding = functools.partial(train_step, **options), parallel.batch_sharding
  else:
    step, batch_sharding = (functools.partial(train_steps, **options),
                            parallel.stacked_batch_sharding)
  step_fn = jax.jit(parallel.traced_in(mesh, step), in_shardings=(replicated, batch_sharding(mesh), replicated),
                    out_shardings=(replicated, replicated), donate_argnums=(0,))
  return model, state, step_fn


def all_finite(tree) -> jax.Array:
  """A scalar bool: every element of every array in `tree` is finite."""
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
                            if jnp.issubdtype(x.dtype, jnp.inexact)]))


def abstract_state(config):
  """The shapes and dtypes of the train state `config` builds, computing nothing."""
  model = build_model(config)
  tx, _ = optim.make_optimizer(config.optim, config.batch_size, config.total_steps)
  return jax.eval_shape(
      functools.partial(create_train_state, model=model, tx=tx, image_size=config.image_size),
      jax.ShapeDtypeStruct((2,), jnp.uint32))
