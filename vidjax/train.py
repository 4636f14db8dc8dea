"""The trainer: self-supervised pre-training on temporal views of video.

Read top to bottom: checks -> data -> model and state (vidjax/step.py) -> resume -> the loop
with metrics, the kNN monitor and checkpoints.
"""
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from vidjax import (checkpointing, config_checks, disk_space, metrics_log, parallel, step,
                    workdir as runs, writer_lock)
from vidjax.data import pipeline, sources
from vidjax.errors import ConfigError, TrainingDiverged
from vidjax.evaluate.online import KnnMonitor
from vidjax.models import pretrained


def _create(workdir: Path):
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise ConfigError(f'--workdir={workdir} is not writable: {e.strerror or e}') from None


def train_and_evaluate(config, workdir: str):
  """Trains `config` in `workdir`, resuming from its latest checkpoint. Returns the state."""
  # Everything that can fail on the user's input fails here, before the workdir is touched.
  mesh = parallel.make_mesh()
  config_checks.check_config(config, num_devices=mesh.devices.size,
                             num_processes=jax.process_count())
  config_checks.check_workdir(workdir)
  is_chief = jax.process_index() == 0
  source = sources.open_source(config.data.train, config)
  with writer_lock.hold(workdir, '--workdir', enabled=is_chief):
    with disk_space.reporting(workdir, '--workdir', lambda: _kept(workdir, is_chief)):
      return _train(config, Path(workdir), mesh, source, is_chief)


def _kept(workdir: str, is_chief: bool) -> str:
  """What a run stopped by a full disk leaves: its last finished checkpoint."""
  if is_chief:
    checkpointing.discard_unfinished(workdir)
  saved = checkpointing.latest_step(workdir)
  kept = (f'the last good checkpoint is step {saved}' if saved else 'no checkpoint was saved')
  return f'{kept}; free some space and run the same command again to resume'


def _start_step(config, workdir: Path) -> int:
  """The checkpoint to resume from: the latest, or config.resume_step; 0 for a new run."""
  steps = checkpointing.finished_steps(workdir)
  if not config.resume_step:
    return steps[-1] if steps else 0
  if config.resume_step not in steps:
    raise ConfigError(f'--config.resume_step={config.resume_step}: no such checkpoint in '
                      f"{workdir / 'checkpoints'} (it has {', '.join(map(str, steps)) or 'none'})")
  return config.resume_step


def _restore(checkpoints, start_step: int, state, workdir: Path):
  try:
    return checkpoints.restore(start_step, state)
  except Exception as e:  # pylint: disable=broad-except  # Orbax's and tensorstore's many.
    if disk_space.is_out_of_space(e):
      raise
    reason = (str(e).strip().splitlines() or [type(e).__name__])[0].split(' See full')[0][:160]
    earlier = [s for s in checkpointing.finished_steps(workdir) if s < start_step]
    hint = (f'to resume from checkpoint {earlier[-1]} instead, pass '
            f'--config.resume_step={earlier[-1]} (the later ones are set aside, not deleted)'
            if earlier else 'there is no earlier checkpoint; start again in a new --workdir')
    raise ConfigError(f'--workdir={workdir}: checkpoint {start_step} cannot be restored '
                      f'({reason}); {hint}') from None


def _with_pretrained_encoder(state, path: str):
  """`state` with the encoder's params and BatchNorm statistics from the weights at `path`,
  placed as the ones they replace."""
  flag = '--config.model.init'
  params, stats = pretrained.encoder_variables(
      pretrained.read(path, flag), path, state['params']['encoder'],
      state['batch_stats']['encoder'], flag)
  place = lambda new, old: jax.device_put(new.astype(old.dtype), old.sharding)  # noqa: E731
  params = dict(state['params'], encoder=jax.tree.map(place, params, state['params']['encoder']))
  stats = dict(state['batch_stats'],
               encoder=jax.tree.map(place, stats, state['batch_stats']['encoder']))
  return dict(state, params=params, batch_stats=stats)


def _train(config, workdir: Path, mesh, source, is_chief: bool):
  start_step = _start_step(config, workdir)
  if start_step and (workdir / runs.CONFIG).exists():
    runs.check_resumable(str(workdir), config)
  if config.resume_step and is_chief:  # A run resumed from N would overwrite the later ones.
    later = checkpointing.set_aside_after(workdir, start_step)
    if later:
      print(f"Moved checkpoints {', '.join(map(str, later))} to {workdir / 'set_aside'}",
            flush=True)
  per_dispatch = config.steps_per_dispatch
  if start_step % per_dispatch:
    raise ConfigError(f'--workdir={workdir}: the run resumes at step {start_step}, not a '
                      f'multiple of config.steps_per_dispatch={per_dispatch}; resume with '
                      '--config.steps_per_dispatch=1 (or a divisor of the step)')
  model, state, step_fn = step.make_state_and_step(config, mesh, per_dispatch)
  # This process reads the samples of the rows its devices hold; the next batch follows
  # from the step, whatever the process layout of the run that saved the checkpoint.
  data_iterator = pipeline.make_train_iterator(
      source, config, parallel.local_rows(mesh, config.batch_size), first_batch=start_step)
  monitor = KnnMonitor(config, model, mesh)

  if is_chief:
    _create(workdir)
    checkpointing.discard_unfinished(workdir)
    runs.save_config(str(workdir), config)
    disk_space.warn_if_short(str(workdir), '--workdir',
                             checkpointing.size_bytes(state) * (config.keep_checkpoints + 1),
                             f'{config.keep_checkpoints} checkpoints and one being written')
  checkpoints = checkpointing.Checkpoints(workdir, config.keep_checkpoints)
  writer = metrics_log.MetricWriter(workdir / 'metrics.jsonl', enabled=is_chief)
  # A killed run logged steps past its last checkpoint; they are replayed now.
  writer.drop_after(start_step if start_step else -1)
  if start_step:
    state = _restore(checkpoints, start_step, state, workdir)
    if is_chief:
      print(f"Resumed from {workdir / 'checkpoints'} at step {start_step}", flush=True)
  else:
    if config.model.init:
      state = _with_pretrained_encoder(state, config.model.init)
    knn_metrics = monitor(state)
    writer.write(0, knn_metrics)
    metrics_log.print_progress(0, config.total_steps, knn_metrics, float('nan'), is_chief)

  train_rng = jax.device_get(state['rng'])  # A host copy: `state` is donated each step.

  def next_dispatch(first: int):
    """(this process's batches, global batch(es), rng(s)) of steps first..first+K-1."""
    local = [next(data_iterator) for _ in range(per_dispatch)]
    rngs = [jax.random.fold_in(train_rng, s) for s in range(first, first + per_dispatch)]
    if per_dispatch == 1:
      return local, parallel.to_global(local[0], mesh), rngs[0]
    stacked = jax.tree.map(lambda *rows: np.stack(rows), *local)
    return local, parallel.to_global(stacked, mesh, stacked=True), jnp.stack(rngs)

  if start_step < config.total_steps:
    local_batches, batch, rng = next_dispatch(start_step + 1)
    started = time.perf_counter()
    # Compiled before the clock starts, so throughput and ETA count training only.
    step_fn = step_fn.lower(state, batch, rng).compile()
    if is_chief:
      print(f'Compiled the train step in {time.perf_counter() - started:.1f} s', flush=True)
  check_finite = jax.jit(lambda state: step.all_finite(
      {k: state[k] for k in ('params', 'batch_stats', 'opt_state')}))

  throughput = metrics_log.Throughput(start_step, config.batch_size)
  offsets = metrics_log.OffsetHistogram()  # This process's share; summed when logged.
  last_saved = start_step

  def diverged(what: str, at: int):
    return TrainingDiverged(
        f'{what} at step {at}; stopped. The last good checkpoint (step {last_saved}) is kept '
        f"in {workdir / 'checkpoints'}. Try a lower config.optim.base_lr (now "
        f'{config.optim.base_lr}).')

  with checkpoints, checkpointing.StopRequest() as stop:
    for step_number in range(start_step + per_dispatch, config.total_steps + 1, per_dispatch):
      if step_number > start_step + per_dispatch:
        local_batches, batch, rng = next_dispatch(step_number - per_dispatch + 1)
      for local_batch in local_batches:
        offsets.add(local_batch['dt'])
      state, metrics = step_fn(state, batch, rng)
      is_last = step_number == config.total_steps
      stop_now = stop.reached(step_number)
      save_now = step_number % config.checkpoint_every == 0 or is_last or stop_now

      # Metrics are fetched (a device sync) only when logged, and always before a save.
      if step_number % config.log_every == 0 or save_now:
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        if not np.isfinite(metrics['loss']):
          raise diverged(f"loss is {metrics['loss']}", step_number)
        metrics['pairs_per_sec'] = throughput.measure(step_number)
        writer.write(step_number, metrics)
        metrics_log.print_progress(step_number, config.total_steps, metrics,
                                   throughput.steps_per_sec, is_chief)

      if step_number % config.eval_every == 0 or is_last:
        started = time.perf_counter()
        knn_metrics = monitor(state)
        writer.write(step_number, knn_metrics | offsets.pop(parallel.sum_over_processes))
        metrics_log.print_progress(step_number, config.total_steps, knn_metrics,
                                   throughput.steps_per_sec, is_chief)
        throughput.pause(time.perf_counter() - started)

      if save_now:
        # The loss was computed before this step's update, which can itself diverge.
        if not bool(check_finite(state)):
          raise diverged('the parameters are no longer finite', step_number)
        started = time.perf_counter()
        checkpoints.save(step_number, state)
        last_saved = step_number
        throughput.pause(time.perf_counter() - started)
      if stop_now:
        logging.warning('Interrupted: saved a checkpoint at step %d in %s; run the same '
                        'command again to resume.', step_number, workdir / 'checkpoints')
        break
  return state
