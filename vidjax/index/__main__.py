r"""Index a video corpus with an encoder: frames and regions -> faiss + SQLite metadata.

  python -m vidjax.index --workdir=runs/drives --corpus=videos:/data/drives --output=/data/drives_index
  python -m vidjax.index --workdir=runs/drives --corpus=videos:/data/drives --output=/data/drives_index --regions=grid,motion --fps=2
  python -m vidjax.index --workdir=runs/drives --corpus=synthetic --output=/tmp/idx --init=pixels   # baseline

--corpus is any training source spec (videos:, frames:, npy:, arrayrecord:, tfds:, synthetic).
Each video is read at --fps (or --keyframes_only), a frame within --dedup of the last kept one
is dropped (vidjax.prepare's test), and each kept frame gives a vector for the whole frame and,
with --regions, one per region crop: `grid` (square windows at --grid_scales of the shorter
side, half overlapping) and/or `motion` (the regions the motion detector finds moving).

Resumable: a killed run, rerun with the same flags, keeps the videos it finished. The
finished index is built beside --output and swapped in; an existing --output is replaced only
with --overwrite. A corpus too big for one machine: run `--shard=I/N` on N workers (shared
filesystem; e.g. a SLURM array, README), then once `--merge=N` (faiss's on-disk merge of the
shards' inverted lists). Folder layout: vidjax/index/build.py.
"""
import sys

from absl import flags

from vidjax import cli
from vidjax.errors import ConfigError
from vidjax.index import command, embedding, regions

D = command.DEFAULTS

flags.DEFINE_string('workdir', D['workdir'], 'The run whose encoder embeds the corpus.')
flags.DEFINE_string('checkpoint', D['checkpoint'], 'A WORKDIR/checkpoints/<step> folder '
                    '(default: the latest).')
flags.DEFINE_string('init', D['init'], 'Encoder: trained, random (init), pixels, hog '
                    '(baselines, as in vidjax.evaluate), or weights:PATH (pretrained ResNet '
                    'weights as safetensors).')
flags.DEFINE_string('corpus', D['corpus'], 'Source spec of the corpus (videos:DIR, ...).')
flags.DEFINE_string('output', D['output'], 'The index folder to write.')
flags.DEFINE_float('fps', D['fps'], 'Frames per second to index (0 = every frame).')
flags.DEFINE_bool('keyframes_only', D['keyframes_only'], 'Index only the videos\' keyframes '
                  '(videos: only).')
flags.DEFINE_float('dedup', D['dedup'], 'Drop a frame within this mean absolute difference of '
                   'the last kept one (16x16 grey thumbnails in [0, 1]; 0 keeps all).')
flags.DEFINE_list('regions', D['regions'], 'Region crops per frame besides the whole frame: '
                  f'any of {", ".join(regions.REGION_KINDS)}.')
flags.DEFINE_list('grid_scales', D['grid_scales'], 'Grid window sides, x the shorter side.')
flags.DEFINE_integer('frame_size', D['frame_size'], 'Shorter side frames are read at (0 = the '
                     'training config\'s data.frame_size).')
flags.DEFINE_integer('max_videos', D['max_videos'], 'Index only the first N videos (0 = all).')
flags.DEFINE_string('index', D['index'], 'faiss index_factory string (default: by size).')
flags.DEFINE_float('memory_gb', D['memory_gb'], 'Memory the index may take (default: half of '
                   'RAM); above it, OPQ + IVF-PQ.')
flags.DEFINE_string('shard', D['shard'], 'I/N: embed only this worker\'s share of the videos.')
flags.DEFINE_integer('merge', D['merge'], 'Build the index from N finished shards.')
flags.DEFINE_bool('overwrite', D['overwrite'], 'Replace an existing --output (built beside, '
                  'swapped in).')


def main(argv):
  f = cli.command_flags(argv)
  for name in ('workdir', 'output') + (() if f.merge else ('corpus',)):
    if not getattr(f, name):
      sys.exit(f'error: --{name} is required (see --help)')
  try:
    command.run(f)
  except (ConfigError, embedding.IndexBuildError, ValueError) as e:
    sys.exit(f'error: {e}')


def run():
  cli.run(main)


if __name__ == '__main__':
  run()
