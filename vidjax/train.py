"""The trainer: self-supervised pre-training on temporal views of video.

Read top to bottom: the train state, the pure train step, then `train_and_evaluate`
(checks -> data -> model -> resume -> loop with metrics, kNN monitor, checkpoints).
"""
import functools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from vidjax import atomic, checkpointing, config_checks, losses, metrics_log, optim, parallel
from vidjax.data import augment, pipeline, sources
from vidjax.models import build_model
from vidjax.monitor import KnnMonitor


class TrainingDiverged(RuntimeError):
  """The loss became NaN or infinite."""


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


def train_step(state, batch, rng, *, model, tx, schedule, config):
  """One optimisation step on a global batch of K-view samples: (state, metrics).

  batch['views'] is uint8 [B, K, S, S, 3]; see apply_to_views for how they share BatchNorm.
  """
  views = batch['views']
  batch_size, num_views = views.shape[:2]
  images = views.reshape((batch_size * num_views,) + views.shape[2:]).astype(jnp.float32) / 255
  photometric_config = config.data.photometric
  if photometric_config.on_device:
    draws = jax.random.uniform(rng, (images.shape[0], augment.NUM_DRAWS))
    images = augment.photometric(images, draws, photometric_config, xp=jnp)

  def loss_fn(params):
    outputs, batch_stats = apply_to_views(
        model, {'params': params, 'batch_stats': state['batch_stats']},
        images.reshape(views.shape), config.model.bn_per_view)
    loss = losses.method_loss(config.method, outputs, batch['video_id'], config.loss)
    return loss, (outputs['feature'], batch_stats)

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  (loss, (features, batch_stats)), grads = grad_fn(state['params'])
  updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
  params = optax.apply_updates(state['params'], updates)
  features = losses.l2_normalize(features).reshape(batch_size * num_views, -1)
  metrics = {
      'loss': loss,
      'lr': schedule(state['step']),
      # Collapse indicator (SimSiam paper, Fig. 2), on the encoder features evaluation uses
      # (the projection passes through BatchNorm, which hides collapse): -> 0 when collapsed.
      'embed_std': jnp.mean(jnp.std(features, axis=0)),
      'grad_norm': optax.global_norm(grads),
  }
  new_state = dict(state, step=state['step'] + 1, params=params, batch_stats=batch_stats,
                   opt_state=opt_state)
  return new_state, metrics


def make_state_and_step(config, mesh):
  """(model, initial train state replicated over the mesh, jitted state-donating step_fn).

  step_fn(state, global batch, rng) -> (state, metrics); see train_step.
  """
  model = build_model(config)
  tx, schedule = optim.make_optimizer(config.optim, config.batch_size, config.total_steps)
  replicated = parallel.replicated(mesh)
  state = jax.jit(
      functools.partial(create_train_state, model=model, tx=tx, image_size=config.image_size),
      out_shardings=replicated)(jax.random.PRNGKey(config.seed))
  step_fn = jax.jit(
      functools.partial(train_step, model=model, tx=tx, schedule=schedule, config=config),
      in_shardings=(replicated, parallel.batch_sharding(mesh), replicated),
      out_shardings=(replicated, replicated), donate_argnums=(0,))
  return model, state, step_fn


def train_and_evaluate(config, workdir: str):
  """Trains `config` in `workdir`, resuming from its latest checkpoint. Returns the state."""
  mesh = parallel.make_mesh()
  config_checks.check_config(config, num_devices=mesh.devices.size,
                             num_processes=jax.process_count())
  config_checks.check_workdir(workdir)
  workdir = Path(workdir)
  is_chief = jax.process_index() == 0
  source = sources.open_source(config.data.train, config)
  if is_chief:
    atomic.write_text(workdir / 'config.json', config.to_json_best_effort(indent=2))

  model, state, step_fn = make_state_and_step(config, mesh)
  checkpoints = checkpointing.Checkpoints(workdir, config.keep_checkpoints)
  start_step = checkpoints.latest_step() or 0
  if start_step:
    state = checkpoints.restore(start_step, state)
    if is_chief:
      print(f"Resumed from {workdir / 'checkpoints'} at step {start_step}", flush=True)
  # This process reads the samples of the rows its devices hold; the next batch follows
  # from the step, whatever the process layout of the run that saved the checkpoint.
  data_iterator = pipeline.make_train_iterator(
      source, config, parallel.local_rows(mesh, config.batch_size), first_batch=start_step)

  monitor = KnnMonitor(config, model, mesh)
  writer = metrics_log.MetricWriter(workdir / 'metrics.jsonl', enabled=is_chief)
  if start_step == 0:
    knn_metrics = monitor(state)
    writer.write(0, knn_metrics)
    metrics_log.print_progress(0, config.total_steps, knn_metrics, float('nan'), is_chief)

  throughput = metrics_log.Throughput(start_step, config.batch_size)
  offsets = metrics_log.OffsetHistogram()  # This process's share; summed when logged.
  train_rng = jax.device_get(state['rng'])  # A host copy: `state` is donated each step.
  last_saved = start_step
  with checkpointing.StopRequest() as stop:
    for step in range(start_step + 1, config.total_steps + 1):
      local_batch = next(data_iterator)
      offsets.add(local_batch['dt'])
      batch = parallel.to_global(local_batch, mesh)
      state, metrics = step_fn(state, batch, jax.random.fold_in(train_rng, step))
      is_last = step == config.total_steps
      stop_now = stop.reached(step)
      save_now = step % config.checkpoint_every == 0 or is_last or stop_now

      # Metrics are fetched (a device sync) only when logged, and always before a save, so a
      # checkpoint never holds a diverged state.
      if step % config.log_every == 0 or save_now:
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        if not np.isfinite(metrics['loss']):
          checkpoints.close()
          raise TrainingDiverged(
              f"loss is {metrics['loss']} at step {step}; stopped. The last good checkpoint "
              f"(step {last_saved}) is kept in {workdir / 'checkpoints'}. Try a lower "
              f'config.optim.base_lr (now {config.optim.base_lr}).')
        metrics['pairs_per_sec'] = throughput.measure(step)
        writer.write(step, metrics)
        metrics_log.print_progress(step, config.total_steps, metrics,
                                   throughput.steps_per_sec, is_chief)

      if step % config.eval_every == 0 or is_last:
        started = time.perf_counter()
        knn_metrics = monitor(state)
        writer.write(step, knn_metrics | offsets.pop(parallel.sum_over_processes))
        metrics_log.print_progress(step, config.total_steps, knn_metrics,
                                   throughput.steps_per_sec, is_chief)
        throughput.pause(time.perf_counter() - started)

      if save_now:
        started = time.perf_counter()
        checkpoints.save(step, state)
        last_saved = step
        throughput.pause(time.perf_counter() - started)
      if stop_now:
        logging.warning('Interrupted: saved a checkpoint at step %d in %s; run the same '
                        'command again to resume.', step, workdir / 'checkpoints')
        break
  checkpoints.close()
  return state
