r"""Pre-training on ground-truth object crops: is a method's failure its views' or its own?

The trainer's views come from video: frames near in time, cropped around what moves. This
script swaps them for oracle views, two random-resized crops (with flips) of one labelled
object crop of the synthetic world's training videos, and keeps everything else: the
config's model, loss, optimiser, on-device photometric augmentation, jitted step and kNN
monitor. If a method learns here but not from video, the view sampler is to blame; if it
learns in neither, the method or its settings are. At step 0 it also prints how similar the
random-init projections of two views of one object are, against two different objects.
--init_encoder starts the encoder from another run's checkpoint instead (heads stay random):
does the method keep, build on or lose features that already know the categories?

Other oracles, from ground-truth object tracks (crops of one object at 16 times of its
video): --pairing=times pairs crops of one object at least --min_gap frames apart (it has
moved, turned and is seen over other background); --batches=video draws 4 objects per video
and --batches=photo objects over 2 photographs only, so that the negatives share the
positives' background and matching backgrounds cannot tell them apart. --pairing=hog pairs,
for --hog_share of the samples (after --hog_after steps), an object crop with its nearest
crop from another video by HOG descriptor (vidjax/hog.py): positives across instances,
mined without labels.

  python bench/object_crop_views.py --config=configs/npair.py --steps=300
  python bench/object_crop_views.py --config=configs/simsiam.py --steps=300 \
      --config.model.zero_init_residual=False
  python bench/object_crop_views.py --config=configs/simsiam.py --steps=200 \
      --init_encoder=runs/npair/checkpoints/600
  python bench/object_crop_views.py --config=configs/npair.py --steps=300 --pairing=times
  python bench/object_crop_views.py --config=configs/npair.py --steps=300 --batches=photo
  python bench/object_crop_views.py --config=configs/npair.py --steps=300 --pairing=hog
"""
import os
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from vidjax import hog, losses, parallel, step, workdir as runs  # noqa: E402
from vidjax.data import augment  # noqa: E402
from vidjax.data.sources import world, world_crops  # noqa: E402
from vidjax.errors import ConfigError  # noqa: E402
from vidjax.evaluate import encoders  # noqa: E402
from vidjax.evaluate.online import KnnMonitor  # noqa: E402
from vidjax.models import ARCHITECTURES  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file('config', None, 'A training config file.')
_STEPS = flags.DEFINE_integer('steps', 300, 'Training steps (the lr schedule spans them).')
_PER_CLASS = flags.DEFINE_integer('per_class', 200, 'Object instances per category to train on.')
_EVAL_EVERY = flags.DEFINE_integer('eval_every', 100, 'Steps between kNN evaluations.')
_INIT_ENCODER = flags.DEFINE_string(
    'init_encoder', '', 'A checkpoint folder (WORKDIR/checkpoints/<step>) of a run with the '
    'same encoder: training starts from its encoder parameters and BatchNorm statistics.')
_PAIRING = flags.DEFINE_enum('pairing', 'same', ['same', 'times', 'hog'], 'Positives: two '
                             'crops of one object crop, of one object at two times (tracks), '
                             "or of an object crop and its HOG look-alike from another video.")
_HOG_SHARE = flags.DEFINE_float('hog_share', 0.5, '--pairing=hog: share of the samples whose '
                                'second view is the look-alike.')
_HOG_AFTER = flags.DEFINE_integer('hog_after', 0, '--pairing=hog: steps of same-crop pairs '
                                  'before the look-alikes join.')
_MIN_GAP = flags.DEFINE_integer('min_gap', 16, '--pairing=times: frames between the two.')
_BATCHES = flags.DEFINE_enum('batches', 'any', ['any', 'video', 'photo'], 'Objects of a batch: '
                             'any; 4 per video; or over 2 photographs only (tracks).')
_TRACK_VIDEOS = flags.DEFINE_integer('track_videos', 400, 'Training videos the tracks come from.')
flags.mark_flags_as_required(['config'])

# Object crops are cut at 1.5x the training image size, so random-resized crops of 60-100%
# of their side keep most of the object while the two views differ in scale and position.
_CROP_ZOOM = 1.5
_VIEW_CROPS = ml_collections.ConfigDict(dict(
    mode='rrc', anchor='uniform', uniform_share=1.0, track=False, jitter=0.0,
    scale=(0.6, 1.0), ratio=(0.75, 1.333), flip=True, swap_prob=0.0, negatives=0, fit=False,
    margin=(1.1, 1.6)))


def hog_partners(crops) -> np.ndarray:
  """Per crop, the index of its nearest crop from another video by HOG (cosine of centred
  descriptors); prints how often it shares the category and the photograph."""
  features = encoders.flat_centred(hog.hog(crops.images / 255.0))
  features /= np.linalg.norm(features, axis=1, keepdims=True) + 1e-12
  similarity = features @ features.T
  similarity[crops.videos[:, None] == crops.videos[None, :]] = -np.inf
  partner = np.argmax(similarity, axis=1)
  contexts = np.array(crops.contexts)
  print(f'HOG look-alikes: same category {np.mean(crops.labels[partner] == crops.labels):.3f}, '
        f'same photograph {np.mean(contexts[partner] == contexts):.3f}', flush=True)
  return partner


def oracle_batch(rng, crops, batch_size: int, image_size: int, partner=None,
                 share: float = 0.0):
  """A training batch whose K=2 views are random-resized crops of one object crop each, or,
  for a --hog_share of them, of an object crop and its partner crop."""
  index = rng.choice(len(crops), batch_size, replace=False)
  second = index
  if partner is not None:
    second = np.where(rng.random(batch_size) < share, partner[index], index)
  views = np.stack([augment.crop_views(rng, [crops[i], crops[j]], _VIEW_CROPS, image_size)[0]
                    for i, j in zip(index, second)])
  zeros = np.zeros((batch_size, 2), np.int32)
  # Each object instance is its own "video": no two samples are positives of each other.
  return {'views': views, 'video_id': index.astype(np.int32), 'frame_idx': zeros, 'dt': zeros}


class TrackBatches:
  """Oracle batches from ground-truth object tracks: crops of each object (at least 60%
  visible) every 4 frames of its video, each knowing its video and photograph."""

  def __init__(self, config, num_videos: int):
    source = world.SyntheticWorld(config.synthetic.seed, 'train', num_videos,
                                  frame_size=config.synthetic.frame_size)
    size = round(config.image_size * _CROP_ZOOM)
    tracks = {}
    for video in range(num_videos):
      for t in range(0, source.num_frames(video), 4):
        rows = [r for r in source.boxes(video, t) if r['visible_fraction'] >= 0.6]
        frame = source.frame(video, t) if rows else None
        for r in rows:
          box = (r['x0'], r['y0'], r['x1'], r['y1'])
          tracks.setdefault((video, int(r['instance'])), []).append(
              (t, world_crops.crop(frame, box, size)))
    keys = [key for key, track in tracks.items() if len(track) >= 2]
    self.tracks = [tracks[key] for key in keys]
    self.videos = np.array([video for video, _ in keys])
    self.photos = np.array([world.PHOTOS.index(source.context(video)) for video, _ in keys])

  def __len__(self):
    return len(self.tracks)

  def _objects(self, rng, count: int, batches: str) -> np.ndarray:
    if batches == 'any':
      return rng.choice(len(self), count, replace=False)
    if batches == 'photo':
      pool = np.flatnonzero(np.isin(self.photos, rng.choice(np.unique(self.photos), 2,
                                                              replace=False)))
      rest = np.setdiff1d(np.arange(len(self)), pool)
      picked = rng.permutation(pool)[:count]
      return np.concatenate([picked, rng.choice(rest, count - len(picked), replace=False)])
    picked = []
    for video in rng.permutation(np.unique(self.videos)):
      picked += list(rng.permutation(np.flatnonzero(self.videos == video))[:4])
      if len(picked) >= count:
        return np.array(picked[:count])
    raise ValueError('fewer objects than a batch: raise --track_videos')

  def __call__(self, rng, batch_size: int, image_size: int, pairing: str, batches: str,
               min_gap: int):
    index = self._objects(rng, batch_size, batches)
    views = []
    for i in index:
      track = self.tracks[i]
      a = int(rng.integers(len(track)))
      b = a
      if pairing == 'times':
        far = [j for j, (t, _) in enumerate(track) if abs(t - track[a][0]) >= min_gap]
        b = int(rng.choice(far or [j for j in range(len(track)) if j != a]))
      views.append(augment.crop_views(rng, [track[a][1], track[b][1]], _VIEW_CROPS,
                                      image_size)[0])
    zeros = np.zeros((batch_size, 2), np.int32)
    return {'views': np.stack(views), 'video_id': index.astype(np.int32), 'frame_idx': zeros,
            'dt': zeros}


def view_cosine(model, state, batch, config, rng) -> tuple:
  """Mean cosine of the projections z of two views of one object, and of two different
  objects, under the config's colour augmentation: how much the views share for the model
  to amplify (SimSiam) or tell apart (N-pair)."""
  views = np.asarray(batch['views'], np.float32) / 255
  shape = views.shape
  images = views.reshape((-1,) + shape[2:])
  draws = jax.random.uniform(
        rng, (images.shape[0], augment.num_draws(config.data.photometric)))
  images = augment.photometric(images, draws, config.data.photometric, xp=jnp)
  outputs, _ = step.apply_to_views(
      model, {'params': state['params'], 'batch_stats': state['batch_stats']},
      images.reshape(shape), config.model.bn_per_view)
  z = np.asarray(losses.l2_normalize(outputs['z']))
  similarity = z[:, 0] @ z[:, 1].T
  different = ~np.eye(len(similarity), dtype=bool)
  return float(np.mean(np.diag(similarity))), float(np.mean(similarity[different]))


def with_encoder_of(state, checkpoint: str, mesh):
  """`state` with the encoder (parameters and BatchNorm statistics) of another run's
  checkpoint, WORKDIR/checkpoints/<step>; projector and predictor are left as they are."""
  workdir = os.path.dirname(os.path.dirname(os.path.abspath(checkpoint)))
  try:
    other_config = runs.load_config(workdir)
    _, other, _ = step.make_state_and_step(other_config, mesh)
    other, _ = encoders.restore_state(other, workdir, checkpoint)
  except ConfigError as error:
    sys.exit(f'error: --init_encoder={checkpoint}: {error}')
  shapes = lambda tree: jax.tree.map(jnp.shape, tree)
  if shapes(other['params']['encoder']) != shapes(state['params']['encoder']):
    sys.exit(f'error: --init_encoder={checkpoint}: its encoder differs from --config.model '
             f'({other_config.model.to_dict()} there)')
  params = dict(state['params'], encoder=other['params']['encoder'])
  batch_stats = dict(state['batch_stats'], encoder=other['batch_stats']['encoder'])
  return jax.device_put(dict(state, params=params, batch_stats=batch_stats),
                        parallel.replicated(mesh))


def residual_scale(params, bottleneck: bool) -> float:
  """Mean |scale| of the residual blocks' last BatchNorm: 0 at a zero-initialised start; a
  block whose scale stays near 0 leaves its convolutions out of the features."""
  last = f'BatchNorm_{2 if bottleneck else 1}'  # Flax numbers a block's BNs in call order.
  encoder = params['encoder']
  return float(np.mean([np.abs(np.asarray(encoder[block][last]['scale'])).mean()
                        for block in encoder if 'Block' in block]))


def main(argv):
  del argv
  config = _CONFIG.value
  config.total_steps = _STEPS.value
  config.data.pairs.num_positives = 2
  # The oracle batches below are uint8 crops: colour augmentation has to happen in the step.
  config.data.photometric.on_device = True
  started = time.perf_counter()
  if _PAIRING.value in ('same', 'hog') and _BATCHES.value == 'any':
    labelled = world_crops.labelled_crops(
        seed=config.synthetic.seed, split='train', per_class=_PER_CLASS.value,
        crop_size=round(config.image_size * _CROP_ZOOM),
        frame_size=config.synthetic.frame_size)
    crops, count = labelled.images, len(labelled)
    partner = hog_partners(labelled) if _PAIRING.value == 'hog' else None
    make_batch = lambda rng, step_number=0: oracle_batch(
        rng, crops, config.batch_size, config.image_size, partner,
        _HOG_SHARE.value if step_number >= _HOG_AFTER.value else 0.0)
  else:
    tracks = TrackBatches(config, _TRACK_VIDEOS.value)
    count = len(tracks)
    make_batch = lambda rng, step_number=0: tracks(
        rng, config.batch_size, config.image_size, _PAIRING.value, _BATCHES.value,
        _MIN_GAP.value)
  print(f'{count} training objects in {time.perf_counter() - started:.1f} s', flush=True)
  if config.batch_size > count:
    sys.exit(f'error: --config.batch_size={config.batch_size} exceeds the {count} objects; '
             'raise --per_class or --track_videos')
  mesh = parallel.make_mesh()
  model, state, step_fn = step.make_state_and_step(config, mesh)
  if _INIT_ENCODER.value:
    state = with_encoder_of(state, _INIT_ENCODER.value, mesh)
  monitor = KnnMonitor(config, model, mesh)
  rng = np.random.default_rng(config.seed)
  _, bottleneck = ARCHITECTURES[config.model.name]
  # Its own rng, so that the training batches stay those of the runs the README cites.
  probe_batch = make_batch(np.random.default_rng(config.seed + 1))
  same, different = view_cosine(model, state, probe_batch, config, jax.random.PRNGKey(0))
  print(f"step 0 | knn_top1 {monitor(state)['knn_top1']:.3f} | view cosine of z: same object "
        f"{same:.3f}, different objects {different:.3f}", flush=True)
  for step_number in range(1, config.total_steps + 1):
    batch = make_batch(rng, step_number)
    state, metrics = step_fn(state, parallel.to_global(batch, mesh),
                             jax.random.PRNGKey(step_number))
    if step_number % _EVAL_EVERY.value == 0 or step_number == config.total_steps:
      knn_metrics = monitor(state)
      print(f"step {step_number} | loss {float(metrics['loss']):.4f} | knn_top1 "
            f"{knn_metrics['knn_top1']:.3f} | context_match {knn_metrics['context_match']:.3f} | "
            f"feature_rank {knn_metrics['feature_rank']:.1f} | "
            f"residual_scale {residual_scale(jax.device_get(state['params']), bottleneck):.3f}",
            flush=True)


if __name__ == '__main__':
  app.run(main)
