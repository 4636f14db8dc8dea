"""The Grain training pipeline on the synthetic world: batches, order, sharding, resume."""
import numpy as np

from configs import simsiam
from vidjax.data import pipeline, sources


def _config(**overrides):
  config = simsiam.get_config('smoke')
  config.batch_size = 8
  config.synthetic.num_videos = 20
  config.update(overrides)
  return config


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


def test_batch_contents_and_distinct_videos():
  config = _config()
  source = sources.open_source('synthetic', config)
  batches = _take(pipeline.make_train_iterator(source, config), 6)
  for batch in batches:
    assert batch['views'].shape == (8, 2, 32, 32, 3) and batch['views'].dtype == np.uint8
    assert len(set(batch['video_id'].tolist())) == 8
    np.testing.assert_array_equal(batch['dt'][:, 0], 0)
    assert np.all(np.abs(batch['dt'][:, 1]) >= 1) and np.all(np.abs(batch['dt'][:, 1]) <= 4)
    np.testing.assert_array_equal(batch['frame_idx'][:, 1] - batch['frame_idx'][:, 0],
                                  batch['dt'][:, 1])
  # 20 videos, batches of 8: each epoch is 16 samples of 16 distinct videos.
  epoch = np.concatenate([b['video_id'] for b in batches[:2]])
  assert len(set(epoch.tolist())) == 16


def test_same_seed_same_batches_other_seed_differs():
  config = _config()
  source = sources.open_source('synthetic', config)
  first = _take(pipeline.make_train_iterator(source, config), 2)
  again = _take(pipeline.make_train_iterator(source, config), 2)
  for a, b in zip(first, again):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  other = next(pipeline.make_train_iterator(source, _config(seed=1)))
  assert not np.array_equal(other['views'], first[0]['views'])


def test_processes_read_disjoint_slices_of_the_same_global_batch():
  config = _config()
  source = sources.open_source('synthetic', config)
  whole = _take(pipeline.make_train_iterator(source, config), 3)
  halves = [_take(pipeline.make_train_iterator(source, config, range(4 * p, 4 * p + 4)), 3)
            for p in range(2)]
  for step in range(3):
    for key in whole[step]:
      joined = np.concatenate([halves[0][step][key], halves[1][step][key]])
      np.testing.assert_array_equal(joined, whole[step][key])


def test_a_resumed_run_starts_with_exactly_the_next_batch_on_any_process_layout():
  config = _config()
  source = sources.open_source('synthetic', config)
  straight = _take(pipeline.make_train_iterator(source, config), 3)
  resumed = next(pipeline.make_train_iterator(source, config, first_batch=2))
  # Two processes whose devices hold rows 0, 1, 4, 5 and 2, 3, 6, 7 of every batch.
  rows = [[0, 1, 4, 5], [2, 3, 6, 7]]
  shares = [next(pipeline.make_train_iterator(source, config, r, first_batch=2)) for r in rows]
  for key in straight[2]:
    np.testing.assert_array_equal(resumed[key], straight[2][key])
    for share, r in zip(shares, rows):
      np.testing.assert_array_equal(share[key], straight[2][key][r])


def test_two_processes_never_read_the_same_sample_in_an_epoch():
  # 20 videos, global batch 8: an epoch is 2 batches, 16 samples; each process reads 4 a batch.
  orders = [pipeline.BatchOrder(range(20), 8, seed=3, rows=range(4 * p, 4 * p + 4))
            for p in range(2)]
  records = [orders[p][i] for p in range(2) for i in range(8)]
  assert sorted(index for index, _ in records) == list(range(16))
  assert len({video for _, video in records}) == 16
  # The same samples as one process reads, whatever the layout.
  single = pipeline.BatchOrder(range(20), 8, seed=3)
  assert sorted(records) == sorted(single[i] for i in range(16))
  # Process 1's first record is the 5th sample of the global stream.
  assert orders[1][0] == single[4]


def test_fewer_videos_than_samples_still_trains(caplog):
  config = _config()
  config.synthetic.num_videos = 3
  source = sources.open_source('synthetic', config)
  batch = next(pipeline.make_train_iterator(source, config))
  assert batch['views'].shape[0] == 8 and set(batch['video_id'].tolist()) <= {0, 1, 2}
  assert any('only 3 videos' in r.getMessage() for r in caplog.records)


def test_photometric_on_host_changes_views():
  config = _config()
  source = sources.open_source('synthetic', config)
  plain = _config()
  plain.data.photometric.update(jitter_prob=0.0, grayscale_prob=0.0)
  on_host = _config()
  on_host.data.photometric.update(on_device=False, jitter_prob=1.0)
  a = next(pipeline.make_train_iterator(source, plain))
  b = next(pipeline.make_train_iterator(source, on_host))
  np.testing.assert_array_equal(a['video_id'], b['video_id'])
  assert not np.array_equal(a['views'], b['views'])


def test_grain_worker_processes_give_the_same_batches():
  config = _config()
  source = sources.open_source('synthetic', config)
  threads = _take(pipeline.make_train_iterator(source, config), 2)
  config.data.num_workers = 2
  workers = _take(pipeline.make_train_iterator(source, config), 2)
  for a, b in zip(threads, workers):
    np.testing.assert_array_equal(a['views'], b['views'])
