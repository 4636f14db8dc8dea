"""The Grain input pipeline: video order -> temporal sample -> crops -> batches.

Determinism: sample i of the global stream (its video, frames, crops and host-side
augmentation) is a pure function of (seed, i), whatever the number of processes or workers.
Each process reads, of every global batch, only the samples of the rows its devices hold
(parallel.local_rows), so every sample sits in the same row as on one process (on-device
augmentation draws per row) and no two processes read the same sample. The data position
is therefore a function of the step: a resumed run starts the iterator at global batch
`step` and continues with exactly the next batch, on any process layout (Grain's own
iterator state, which is per process, is not needed).
"""
import sys
import types

import grain
import numpy as np
from absl import logging

from vidjax.data import augment, pairs
from vidjax.errors import ConfigError, require


class BatchOrder:
  """Grain source: this process's record i -> (global sample index, video id).

  Each epoch visits every video once in a fresh order (a Feistel permutation, O(1) per
  look-up) and holds a whole number of global batches, so a batch never repeats a video
  when there are at least as many videos as samples in a batch.
  """

  def __init__(self, video_ids, global_batch: int, seed: int, rows=None):
    """rows: the positions in every global batch this process reads (default: all)."""
    self.video_ids = np.asarray(video_ids)
    self.global_batch = global_batch
    self.rows = np.arange(global_batch) if rows is None else np.asarray(rows)
    self.local_batch = len(self.rows)
    self.seed = seed
    num_videos = len(self.video_ids)
    self.per_epoch = num_videos if num_videos < global_batch else (
        num_videos // global_batch * global_batch)

  def __len__(self):
    return sys.maxsize

  def __getitem__(self, local_index: int):
    batch_index, offset = divmod(local_index, self.local_batch)
    global_index = batch_index * self.global_batch + int(self.rows[offset])
    epoch, position = divmod(global_index, self.per_epoch)
    shuffled = grain.experimental.index_shuffle(
        position, max_index=len(self.video_ids) - 1,
        seed=(self.seed * 1_000_003 + epoch) % 2**31, rounds=4)
    return global_index, int(self.video_ids[shuffled])


class MakeSample:
  """(global index, video) -> one training sample: K crops of K frames of that video."""

  def __init__(self, source, data_config, image_size: int, seed: int):
    self.source = source
    # Plain namespaces: a ConfigDict's attribute look-up took a twentieth of a sample.
    self.pairs, self.crop, self.photometric = (
        types.SimpleNamespace(**data_config[name].to_dict())
        for name in ('pairs', 'crop', 'photometric'))
    self.image_size = image_size
    self.seed = seed

  def __call__(self, record):
    global_index, video = record
    rng = np.random.default_rng((self.seed, global_index))
    frame_idx, deltas = pairs.sample_frames(rng, self.source.num_frames(video), self.pairs)
    frames = [self.source.frame(video, int(t)) for t in frame_idx]
    backdrop = None
    if self.crop.swap_prob and rng.random() < self.crop.swap_prob and len(self.source) > 1:
      other = int(rng.integers(len(self.source) - 1))
      other += other >= video
      backdrop = self.source.frame(other, int(rng.integers(self.source.num_frames(other))))
    far = []
    if self.pairs.far_negatives:
      far = [self.source.frame(video, int(t)) for t in pairs.far_frames(
          rng, self.source.num_frames(video), int(frame_idx[0]), self.pairs)]
    stored_change = None
    if self.crop.anchor == 'motion' and hasattr(self.source, 'motion'):  # Prepared shards.
      stored_change = self.source.motion(video, int(frame_idx[0]), int(frame_idx[1]))
    views, negatives = augment.crop_views(rng, frames, self.crop, self.image_size, backdrop,
                                          far, stored_change)
    if not self.photometric.on_device:
      draws = rng.random((len(views) + len(negatives), augment.num_draws(self.photometric)),
                         dtype=np.float32)
      both = augment.photometric_uint8(np.concatenate([views, negatives]), draws,
                                       self.photometric)
      views, negatives = both[:len(views)], both[len(views):]
    sample = {'views': views, 'video_id': np.int32(video), 'frame_idx': frame_idx, 'dt': deltas}
    if len(negatives):
      sample['negatives'] = negatives
    return sample


def trainable_videos(source, pairs_config):
  """Ids of the videos long enough for the temporal pdf; warns about the others."""
  needed = pairs.min_frames(pairs_config)
  keep, short = [], []
  for v in range(len(source)):
    (keep if source.num_frames(v) >= needed else short).append(v)
  if short:
    names = ', '.join(source.video_name(v) for v in short[:3])
    logging.warning('skipping %d of %d videos with fewer than the %d frames the temporal pdf '
                    'needs: %s%s', len(short), len(source), needed, names,
                    ', ...' if len(short) > 3 else '')
  return keep


def make_train_iterator(source, config, rows=None, first_batch: int = 0):
  """An endless iterator of this process's share of each global batch: the samples at
  positions `rows` (default: all), from global batch number `first_batch` on (a run resumed
  at step s starts at batch s).

  Batches are dicts of numpy arrays: views uint8 [b, K, S, S, 3], video_id [b],
  frame_idx [b, K] and dt [b, K] (frame offsets from the anchor).
  """
  video_ids = trainable_videos(source, config.data.pairs)
  if not video_ids:
    raise ConfigError(f'config.data.train={config.data.train!r}: no video has the '
                      f'{pairs.min_frames(config.data.pairs)} frames the temporal pdf needs '
                      f'(config.data.pairs.min_gap={config.data.pairs.min_gap}); the longest '
                      f'has {max(map(source.num_frames, range(len(source))))}')
  if len(video_ids) < config.batch_size:
    logging.warning('only %d videos for batches of %d samples: some batches hold several '
                    'samples of one video (the loss treats them as positives, not negatives)',
                    len(video_ids), config.batch_size)
  order = BatchOrder(video_ids, config.batch_size, config.seed, rows)
  dataset = (grain.MapDataset.source(order)
             .map(MakeSample(source, config.data, config.image_size, config.seed))
             .batch(order.local_batch, drop_remainder=True))[first_batch:]
  dataset = dataset.to_iter_dataset(grain.ReadOptions(
      num_threads=config.data.read_threads, prefetch_buffer_size=config.data.prefetch_batches))
  if config.data.num_workers > 0:
    dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=config.data.num_workers))
  return iter(dataset)


def check_config(data_config):
  """config.data: one ConfigError naming the field (the source spec is checked when opened)."""
  pairs.check_config(data_config.pairs)
  augment.check_config(data_config)
  fps, frame_size = data_config.fps or 0, data_config.frame_size or 0
  require(fps >= 0, f'config.data.fps must be >= 0 (0 = native rate), got {fps}')
  require(isinstance(frame_size, int) and frame_size >= 0,
          f'config.data.frame_size must be an integer >= 0 (0 = as stored), got {frame_size!r}')
  require(data_config.num_workers >= 0,
          f'config.data.num_workers must be >= 0, got {data_config.num_workers}')
  require(data_config.read_threads >= 1,
          f'config.data.read_threads must be >= 1, got {data_config.read_threads}')
