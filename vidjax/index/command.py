"""What `python -m vidjax.index` does, given its flags as attributes of any object (absl's
FLAGS, or `arguments(**overrides)` from code and tests)."""
import os
import shutil
import types

import jax

from vidjax import atomic, checkpointing, disk_space, parallel, workdir as runs, writer_lock
from vidjax.data.sources import open_source
from vidjax.errors import ConfigError
from vidjax.evaluate import encoders
from vidjax.index import build, embedding, regions

DEFAULTS = dict(workdir=None, checkpoint='', init='trained', corpus=None, output=None, fps=1.0,
                keyframes_only=False, dedup=0.02, regions=[], grid_scales=['0.5', '0.33'],
                frame_size=0, max_videos=0, index='', memory_gb=0.0, shard='0/1', merge=0,
                overwrite=False)


def arguments(**overrides):
  """The flags of `python -m vidjax.index` as a namespace: its defaults, then `overrides`."""
  unknown = set(overrides) - set(DEFAULTS)
  if unknown:
    raise TypeError(f'unknown vidjax.index flags: {", ".join(sorted(unknown))}')
  return types.SimpleNamespace(**{**DEFAULTS, **overrides})


WEIGHTS_COPY = 'weights.safetensors'  # The index's copy of --init=weights:PATH's file.


def parse_shard(text: str):
  try:
    shard, count = (int(v) for v in text.split('/'))
  except ValueError:
    raise ConfigError(f'--shard={text}: expected I/N, e.g. 0/4') from None
  if not 0 <= shard < count:
    raise ConfigError(f'--shard={text}: expected 0 <= I < N')
  return shard, count


def _options(config, f) -> dict:
  unknown = set(f.regions) - set(regions.REGION_KINDS)
  if unknown:
    raise ConfigError(f'--regions: unknown {", ".join(sorted(unknown))}; expected any of '
                      f'{", ".join(regions.REGION_KINDS)}')
  try:
    scales = [float(s) for s in f.grid_scales]
  except ValueError:
    raise ConfigError(f'--grid_scales={",".join(f.grid_scales)}: expected numbers') from None
  if not all(0 < s <= 1 for s in scales):
    raise ConfigError('--grid_scales: expected sides in (0, 1], x the shorter side')
  if f.fps < 0 or not 0 <= f.dedup < 1:
    raise ConfigError('--fps must be >= 0 and --dedup in [0, 1)')
  return dict(fps=f.fps, keyframes_only=f.keyframes_only, dedup=f.dedup,
              regions=sorted(f.regions), grid_scales=scales, image_size=config.image_size,
              frame_size=f.frame_size or config.data.frame_size, init=f.init,
              max_videos=f.max_videos)


def _checkpoint(workdir: str, init: str, checkpoint: str) -> str:
  """The checkpoint folder the trained encoder comes from ('' for random / pixels): fixed
  once, so that every shard, the merge and the index's copy use the same one."""
  if init != 'trained' or checkpoint:
    return os.path.abspath(checkpoint) if init == 'trained' else ''
  step = checkpointing.latest_step(workdir)
  if step is None:
    return ''  # load_encoder says what is missing.
  return os.path.abspath(str(checkpointing.checkpoint_dir(workdir) / str(step)))


def _stage_encoder(workdir: str, checkpoint: str, output: str, init: str) -> tuple:
  """(folder with the encoder's config.json [and checkpoint or weights], step or None): the
  index's own copy, so queries are embedded by this encoder even after the run's
  checkpoints rotate or the weights file moves."""
  staged = os.path.join(f'{output}.partial', 'encoder')
  shutil.rmtree(staged, ignore_errors=True)
  os.makedirs(os.path.join(staged, 'checkpoints'))
  shutil.copy(os.path.join(workdir, runs.CONFIG), staged)
  if init.startswith(encoders.WEIGHTS):
    shutil.copy(init[len(encoders.WEIGHTS):], os.path.join(staged, WEIGHTS_COPY))
  step = None
  if checkpoint:
    step = int(os.path.basename(os.path.normpath(checkpoint)))
    shutil.copytree(checkpoint, os.path.join(staged, 'checkpoints', str(step)))
  return staged, step


def run(f):
  output = os.path.abspath(os.path.expanduser(f.output))
  shard, count = parse_shard(f.shard)
  # A shard of a parallel build is its own writer; a whole build or a merge writes OUTPUT.
  if count > 1 and not f.merge:
    folder, flag, beside = embedding.shard_dir(output, shard, count), '--shard', False
  else:
    folder, flag, beside = output, '--output', True
  with writer_lock.hold(folder, flag, beside=beside):
    with disk_space.reporting(output, '--output', (
        f'the videos embedded so far are kept in {output}.partial and {output} is untouched; '
        'free some space and run the same command again to resume')):
      _build(f, output, shard, count)


def _build(f, output: str, shard: int, count: int):
  atomic.recover_folder(output)
  shutil.rmtree(f'{output}{build.FINISHED}', ignore_errors=True)
  if os.path.exists(output) and not f.overwrite:
    raise ConfigError(f'--output={f.output} exists; pass --overwrite to rebuild it (the new '
                      'index is built beside it and swapped in when complete)')
  config = runs.load_config(f.workdir)
  encoders.check_init(f.init)
  options = _options(config, f)
  mesh = parallel.make_mesh(jax.local_devices())
  checkpoint = _checkpoint(f.workdir, f.init, f.checkpoint)
  encode, description = encoders.load_encoder(config, f.workdir, f.init, mesh, checkpoint)
  # Part of the options every shard is checked against: vectors of two encoders never mix.
  options['encoder'] = dict(init=f.init, workdir=os.path.abspath(f.workdir),
                            checkpoint=checkpoint)
  if not f.merge:
    read_config = config.copy_and_resolve_references()
    read_config.data.fps, read_config.data.frame_size = f.fps, options['frame_size']
    source = open_source(f.corpus, read_config, f'--corpus={f.corpus}', f.keyframes_only)
    if f.max_videos:
      source = embedding.FirstVideos(source, f.max_videos)
    summary = embedding.embed_shard(source, f.corpus, encode, options,
                                    embedding.shard_dir(output, shard, count), shard, count)
    print(f'shard {shard}/{count}: {summary["videos"]} videos, {summary["vectors"]} vectors, '
          f'{len(summary["skipped"])} skipped')
    if count > 1:
      print(f'when all {count} shards are done: python -m vidjax.index --merge={count} '
            f'(same --workdir, --output and options)')
      return
  count = f.merge or count
  encoder_dir, step = _stage_encoder(f.workdir, checkpoint, output, f.init)
  memory = f.memory_gb * 2**30 or os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2
  summary = build.finalise(output, count, f.index, memory, encoder_dir, options, dict(
      corpus=f.corpus, encoder=description, checkpoint_step=step,
      # Queries load the encoder's copy in the index (relative to encoder/).
      init=encoders.WEIGHTS + WEIGHTS_COPY if f.init.startswith(encoders.WEIGHTS) else f.init,
      workdir=os.path.abspath(f.workdir), options=options))
  print(f'index: {output} | {summary["vectors"]} vectors ({summary["dim"]}-d) | '
        f'{summary["factory"]} nprobe {summary["nprobe"]} recall@10 {summary["recall_at_10"]}')


