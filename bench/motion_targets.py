r"""Does predicting what moves teach an encoder objects? (Pathak et al. 2017, "Learning
features by watching objects move".)

Every view of the usual temporal sample (two frames of one video, anchored crops around
what moves, the config's colour augmentation) also gets a target: the moving-region mask
of `vidjax/data/motion.py`, cut with the view's box and flip and averaged over the cells
of the encoder's last feature map. A 1x1 convolution on that map predicts it (per-cell
binary cross-entropy, weight --mask_weight) beside the config's N-pair loss (weight
--contrast_weight; 0 trains on the masks alone). Background texture does not tell where
an object moves; the object's own look does. The kNN monitor is the trainer's.
--targets=truth replaces the motion mask by the world's true object masks (an oracle: is
a perfect mask better?). --targets=hog instead predicts the HOG of the view before colour
augmentation (vidjax/hog.py; MaskFeat's target, Wei et al. 2022, without the masking),
weight --mask_weight: the whole descriptor from the pooled feature through an MLP (cosine
loss; --hog_from=pooled), or each cell's histogram from its cell of the last feature map
(squared error; --hog_from=cells).

  python bench/motion_targets.py --config=configs/npair.py --steps=300
  python bench/motion_targets.py --config=configs/npair.py --steps=300 --contrast_weight=0
  python bench/motion_targets.py --config=configs/npair.py --steps=300 --targets=truth
  python bench/motion_targets.py --config=configs/npair.py --steps=300 --targets=hog \
      --contrast_weight=0
"""
import functools
import os
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags
from ml_collections import config_flags
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from vidjax import hog, losses, optim, parallel  # noqa: E402
from vidjax.data import augment, motion, pairs  # noqa: E402
from vidjax.data.sources import world  # noqa: E402
from vidjax.evaluate.online import KnnMonitor  # noqa: E402
from vidjax.models import build_model, downsampling  # noqa: E402
from vidjax.models.heads import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from views import true_objects  # noqa: E402  (bench/views.py)

_CONFIG = config_flags.DEFINE_config_file('config', None, 'An N-pair training config file.')
_STEPS = flags.DEFINE_integer('steps', 300, 'Training steps (the lr schedule spans them).')
_EVAL_EVERY = flags.DEFINE_integer('eval_every', 100, 'Steps between kNN evaluations.')
_MASK_WEIGHT = flags.DEFINE_float('mask_weight', 1.0, 'Weight of the moving-mask loss.')
_CONTRAST_WEIGHT = flags.DEFINE_float('contrast_weight', 1.0, 'Weight of the N-pair loss.')
_HOG_FROM = flags.DEFINE_enum('hog_from', 'pooled', ['pooled', 'cells'], '--targets=hog: '
                              'predict the whole descriptor from the pooled feature (cosine '
                              'loss), or each cell\'s histogram from its cell of the map.')
_TARGETS = flags.DEFINE_enum('targets', 'motion', ['motion', 'truth', 'hog'], "The target: "
                             "what motion.moving_mask finds, the world's true object masks, "
                             "or the view's HOG descriptor.")
flags.mark_flags_as_required(['config'])


class MotionModel(nn.Module):
  """The config's encoder and projector, and a 1x1 convolution on the last feature map
  that predicts, per cell, the share of it that moves on its own."""
  encoder: nn.Module
  projector: nn.Module
  hog_size: int
  embed_grid: int = 0  # SSLModel.embed, which the kNN monitor calls, reads it.

  def embed(self, images):
    return self.encoder((images - IMAGENET_MEAN) / IMAGENET_STD, train=False)

  @nn.compact
  def __call__(self, images, train: bool):
    feature_map = self.encoder((images - IMAGENET_MEAN) / IMAGENET_STD, train=train, pooled=False)
    feature = jnp.mean(feature_map, axis=(1, 2))
    mask_logits = nn.Conv(1, (1, 1), name='mask_head')(feature_map)[..., 0]
    if _HOG_FROM.value == 'cells':
      hidden = nn.relu(nn.BatchNorm(use_running_average=not train, name='hog_norm')(
          nn.Conv(256, (1, 1), use_bias=False, name='hog_hidden')(feature_map)))
      hog_prediction = nn.Conv(9, (1, 1), name='hog_head')(hidden)
    else:
      hidden = nn.relu(nn.BatchNorm(use_running_average=not train, name='hog_norm')(
          nn.Dense(512, use_bias=False, name='hog_hidden')(feature)))
      hog_prediction = nn.Dense(self.hog_size, name='hog_head')(hidden)
    return {'feature': feature, 'z': self.projector(feature, train=train),
            'mask_logits': mask_logits, 'hog': hog_prediction}


def motion_sample(rng, source, video: int, config, grid: int):
  """(views uint8 [K, S, S, 3], masks float32 [K, grid, grid]) of one video."""
  frame_idx, _ = pairs.sample_frames(rng, source.num_frames(video), config.data.pairs)
  frames = [source.frame(video, int(t)) for t in frame_idx]
  change = motion.motion_map(frames[0], frames[1])
  if _TARGETS.value == 'hog':
    frame_masks = [np.zeros(frames[0].shape[:2], np.float32)] * len(frames)
  elif _TARGETS.value == 'truth':
    frame_masks = [true_objects(source, video, int(t)).astype(np.float32) for t in frame_idx]
  else:
    frame_masks = [motion.moving_mask(*change, frames[0].shape[:2])] * len(frames)
  crop = config.data.crop
  anchor = motion.sample_anchor(rng, frames[0], frames[1], crop.uniform_share, change)
  boxes = augment.crop_boxes(rng, frames[0].shape[:2], len(frames), crop, anchor)
  views, masks = [], []
  for frame, frame_mask, box in zip(frames, frame_masks, boxes):
    mask = Image.fromarray(frame_mask, mode='F')
    view = Image.fromarray(frame).resize((config.image_size,) * 2, Image.BILINEAR,
                                         box=tuple(box))
    cells = mask.resize((grid, grid), Image.BOX, box=tuple(box))
    if rng.random() < 0.5:
      view, cells = (x.transpose(Image.FLIP_LEFT_RIGHT) for x in (view, cells))
    views.append(np.asarray(view))
    masks.append(np.clip(np.asarray(cells), 0, 1))
  return np.stack(views), np.stack(masks)


def train_step(state, images, masks, video_id, rng, *, model, tx, config):
  batch_size, num_views = images.shape[:2]
  x = images.reshape((-1,) + images.shape[2:]).astype(jnp.float32) / 255
  if _HOG_FROM.value == 'cells':
    cells = hog.cell_histograms(x, cell=x.shape[1] // masks.shape[-1], xp=jnp)
    hog_target = cells / jnp.sqrt(
        jnp.mean(jnp.sum(cells ** 2, -1), axis=(1, 2))[:, None, None, None] + 1e-6)
  else:
    hog_target = hog.hog(x, xp=jnp)
    hog_target -= jnp.mean(hog_target, axis=-1, keepdims=True)  # as --init=hog embeds it
  draws = jax.random.uniform(rng, (x.shape[0],
                                     augment.num_draws(config.data.photometric)))
  x = augment.photometric(x, draws, config.data.photometric, xp=jnp)

  def loss_fn(params):
    outputs, updates = model.apply({'params': params, 'batch_stats': state['batch_stats']}, x,
                                   train=True, mutable=['batch_stats'])
    contrast = losses.info_nce_loss(outputs['z'].reshape(batch_size, num_views, -1),
                                    video_id, config.loss.temperature)
    if _TARGETS.value == 'hog' and _HOG_FROM.value == 'cells':
      mask_loss = jnp.mean(jnp.sum((outputs['hog'] - hog_target) ** 2, axis=-1))
    elif _TARGETS.value == 'hog':
      mask_loss = losses.hog_prediction_loss(outputs['hog'], hog_target)
    else:
      mask_loss = optax.sigmoid_binary_cross_entropy(
          outputs['mask_logits'], masks.reshape(outputs['mask_logits'].shape)).mean()
    loss = _CONTRAST_WEIGHT.value * contrast + _MASK_WEIGHT.value * mask_loss
    return loss, (contrast, mask_loss, updates['batch_stats'])

  (_, (contrast, mask_loss, batch_stats)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state['params'])
  updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
  params = optax.apply_updates(state['params'], updates)
  return (dict(state, params=params, batch_stats=batch_stats, opt_state=opt_state),
          contrast, mask_loss)


def main(argv):
  del argv
  config = _CONFIG.value
  config.total_steps = _STEPS.value
  ssl = build_model(config)
  model = MotionModel(encoder=ssl.encoder, projector=ssl.projector,
                      hog_size=hog.hog_size(config.image_size))
  grid = config.image_size // downsampling(config.model.name, config.model.cifar_stem)
  source = world.SyntheticWorld(config.synthetic.seed, 'train', config.synthetic.num_videos,
                                frame_size=config.synthetic.frame_size)
  tx, _ = optim.make_optimizer(config.optim, config.batch_size, config.total_steps)
  variables = model.init(jax.random.PRNGKey(config.seed),
                         jnp.zeros((2, config.image_size, config.image_size, 3)), train=False)
  state = {'params': variables['params'], 'batch_stats': variables['batch_stats'],
           'opt_state': tx.init(variables['params'])}
  step_fn = jax.jit(functools.partial(train_step, model=model, tx=tx, config=config))
  monitor = KnnMonitor(config, model, parallel.make_mesh())
  rng = np.random.default_rng(config.seed)
  started = time.perf_counter()
  print(f"step 0 | knn_top1 {monitor(state)['knn_top1']:.3f} | mask grid {grid}x{grid}",
        flush=True)
  for number in range(1, config.total_steps + 1):
    videos = rng.choice(len(source), config.batch_size, replace=False)
    samples = [motion_sample(rng, source, int(v), config, grid) for v in videos]
    state, contrast, mask_loss = step_fn(
        state, np.stack([s[0] for s in samples]), np.stack([s[1] for s in samples]),
        videos.astype(np.int32), jax.random.PRNGKey(number))
    if number % _EVAL_EVERY.value == 0 or number == config.total_steps:
      result = monitor(state)
      print(f"step {number} | n-pair {float(contrast):.3f} | mask {float(mask_loss):.4f} | "
            f"knn_top1 {result['knn_top1']:.3f} | context_match {result['context_match']:.3f} "
            f"| feature_rank {result['feature_rank']:.1f} | "
            f"{time.perf_counter() - started:.0f} s", flush=True)


if __name__ == '__main__':
  app.run(main)
