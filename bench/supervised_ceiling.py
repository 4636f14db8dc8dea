r"""How much of the embedded world is learnable: the same encoder trained with labels.

Trains a config's encoder (plus a linear classifier) with cross-entropy on labelled object
crops of the world's *training* videos, for a fixed wall time (AdamW, warmup and cosine),
with random-resized crops and flips (and with --photometric the config's colour
augmentation); then saves it as a run's workdir, so that
`python -m vidjax.evaluate` measures it exactly like a self-supervised run:

  python bench/supervised_ceiling.py --config=configs/npair.py --workdir=runs/supervised --minutes=15
  python -m vidjax.evaluate --workdir=runs/supervised --init=all \
      --support=imagefolder:/tmp/world/support --query=imagefolder:/tmp/world/query

The world's family is the one `--config.data.train=synthetic:FAMILY` names (textures by
default), e.g. `--config.data.train=synthetic:glyphs` for the glyphs' ceiling.

The crops come from the training videos only; support and query (from disjoint videos) are
never trained on. Only the encoder is kept: the projector and predictor stay at init.
"""
import os
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import app, flags, logging
from ml_collections import config_flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from vidjax import checkpointing, parallel, step, workdir as runs  # noqa: E402
from vidjax.data import augment, sources  # noqa: E402
from vidjax.data.sources import world_crops  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file('config', None, 'A training config file.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where the trained encoder is saved.')
_MINUTES = flags.DEFINE_float('minutes', 15.0, 'Wall time of training.')
_PHOTOMETRIC = flags.DEFINE_bool(
    'photometric', False, "Apply the config's colour augmentation too. Off by default: the "
    'labels already say that colour does not matter, and on the embedded world it halved '
    'the train accuracy reached in the same time (docs/experiments.md).')
_PER_CLASS = flags.DEFINE_integer('per_class', 250, 'Training crops per category.')
_OPTIMIZER = flags.DEFINE_enum('optimizer', 'adamw', ['adamw', 'sgd'],
                               'adamw (weight decay 1e-4) or sgd (momentum 0.9, decay 5e-4).')
_LR = flags.DEFINE_float('lr', 2e-3, 'Peak learning rate (warmup, then cosine to 0).')
flags.mark_flags_as_required(['config', 'workdir'])

_CROPS = ml_collections.ConfigDict(dict(
    mode='rrc', anchor='uniform', uniform_share=1.0, track=False, jitter=0.0,
    scale=(0.7, 1.0), ratio=(0.8, 1.25), flip=True, swap_prob=0.0, negatives=0, fit=False,
    margin=(1.1, 1.6)))
_ZOOM = 1.25  # Crops are cut this much larger than the model input, then random-resized.


def batches(crops, labels, batch_size: int, image_size: int, seed: int):
  """Endless (images uint8 [B, S, S, 3], labels [B]) with random-resized crops and flips."""
  rng = np.random.default_rng(seed)
  while True:
    rows = rng.choice(len(crops), batch_size, replace=False)
    images = np.stack([augment.crop_views(rng, [crops[r]], _CROPS, image_size)[0][0]
                       for r in rows])
    yield images, labels[rows]


def make_supervised_step(model, config, num_classes: int, schedule):
  decay_mask = lambda p: jax.tree.map(lambda x: x.ndim > 1, p)
  if _OPTIMIZER.value == 'adamw':
    tx = optax.adamw(schedule, weight_decay=1e-4, mask=decay_mask)
  else:
    tx = optax.chain(optax.add_decayed_weights(5e-4, mask=decay_mask),
                     optax.sgd(schedule, momentum=0.9))

  def loss_fn(params, batch_stats, images, labels, rng):
    draws = jax.random.uniform(
        rng, (images.shape[0], augment.num_draws(config.data.photometric)))
    x = images.astype(jnp.float32) / 255
    if _PHOTOMETRIC.value:
      x = augment.photometric(x, draws, config.data.photometric, xp=jnp)
    outputs, updates = model.apply({'params': params['model'], 'batch_stats': batch_stats}, x,
                                   train=True, mutable=['batch_stats'])
    logits = outputs['feature'] @ params['head']['w'] + params['head']['b']
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss, (updates['batch_stats'], jnp.mean(jnp.argmax(logits, -1) == labels))

  @jax.jit
  def train_step(params, batch_stats, opt_state, images, labels, rng):
    (loss, (batch_stats, accuracy)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, batch_stats, images, labels, rng)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), batch_stats, opt_state, loss, accuracy

  return tx, train_step


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO.
  config = _CONFIG.value
  mesh = parallel.make_mesh(jax.devices()[:1])
  if config.data.train.partition(':')[0] != 'synthetic':
    sys.exit(f'error: --config.data.train={config.data.train}: the ceiling trains on the '
             'embedded world\'s labelled crops; expected synthetic or synthetic:FAMILY')
  family = sources.world_family(config.data.train, '--config.data.train')
  started = time.perf_counter()
  train_crops = world_crops.labelled_crops(
      seed=config.synthetic.seed, split='train', per_class=_PER_CLASS.value,
      crop_size=round(config.image_size * _ZOOM), frame_size=config.synthetic.frame_size,
      family=family)
  print(f'{len(train_crops)} labelled crops of training videos in '
        f'{time.perf_counter() - started:.1f} s', flush=True)
  model, state, _ = step.make_state_and_step(config, mesh)
  state = jax.device_get(state)
  feature_dim = model.apply({'params': state['params'], 'batch_stats': state['batch_stats']},
                            np.zeros((1, config.image_size, config.image_size, 3), np.float32),
                            train=False)['feature'].shape[-1]
  num_classes = len(train_crops.class_names)
  params = {'model': state['params'],
            'head': {'w': jnp.zeros((feature_dim, num_classes)), 'b': jnp.zeros(num_classes)}}
  batch_stats = state['batch_stats']
  data = batches(train_crops.images, train_crops.labels, config.batch_size, config.image_size,
                 config.seed)
  # Steps follow from the wall time: timed on a few steps, then the cosine spans the rest.
  probe_schedule = lambda count: _LR.value
  tx, train_step = make_supervised_step(model, config, num_classes, probe_schedule)
  opt_state = tx.init(params)
  rng = jax.random.PRNGKey(config.seed)
  images, labels = next(data)
  train_step(params, batch_stats, opt_state, images, labels, rng)  # Compile.
  started = time.perf_counter()
  for i in range(5):
    images, labels = next(data)
    jax.block_until_ready(train_step(params, batch_stats, opt_state, images, labels, rng))
  seconds_per_step = (time.perf_counter() - started) / 5
  total_steps = max(10, int(_MINUTES.value * 60 / seconds_per_step))
  schedule = optax.warmup_cosine_decay_schedule(0.0, _LR.value, min(50, total_steps // 10),
                                                total_steps)
  tx, train_step = make_supervised_step(model, config, num_classes, schedule)
  opt_state = tx.init(params)
  print(f'{seconds_per_step:.2f} s per step: {total_steps} steps in {_MINUTES.value} min',
        flush=True)
  started = time.perf_counter()
  for number in range(1, total_steps + 1):
    images, labels = next(data)
    params, batch_stats, opt_state, loss, accuracy = train_step(
        params, batch_stats, opt_state, images, labels, jax.random.fold_in(rng, number))
    if number % 50 == 0 or number == total_steps:
      print(f'step {number}/{total_steps} | loss {float(loss):.3f} | train accuracy '
            f'{float(accuracy):.3f} | {time.perf_counter() - started:.0f} s', flush=True)

  saved = dict(state, params=params['model'], batch_stats=batch_stats,
               step=np.asarray(total_steps, np.int32))
  os.makedirs(_WORKDIR.value, exist_ok=True)
  runs.save_config(_WORKDIR.value, config)
  with checkpointing.Checkpoints(_WORKDIR.value, 1) as checkpoints:
    checkpoints.save(total_steps, jax.device_put(saved, parallel.replicated(mesh)))
  print(f'saved: {_WORKDIR.value} (python -m vidjax.evaluate --workdir={_WORKDIR.value})')


if __name__ == '__main__':
  app.run(main)
