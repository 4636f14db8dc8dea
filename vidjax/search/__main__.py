r"""Search a corpus index for the frames and regions most like a query.

  python -m vidjax.search --index=/data/drives_index --image=query.jpg -k 50 --sheet=hits.png --video=hits.mp4
  python -m vidjax.search --index=/data/drives_index --frame=drive_017.mp4@00:03:12.4 --box=120,80,220,180 -k 50
  python -m vidjax.search --index=/data/drives_index --image=cow.png --json > hits.json
  python -m vidjax.search --server=http://127.0.0.1:8000 --image=query.jpg -k 20

With --server the query goes to a running `python -m vidjax.serve` (which keeps the index
and encoder loaded, so a query takes milliseconds instead of the seconds a fresh process
needs to load them); --image, --box, -k, --kinds, --window and --json work the same.

The query is embedded by the encoder the index was built with (its copy in INDEX/encoder),
cut as the index cut its regions: the whole image (or frame) squeezed to a square, or the
square around --box (pixels of the image, or of the frame as the index read it).
--exclude_same_video drops hits from the query frame's video; --window drops a hit within
that many seconds of a better hit in the same video, so one long shot does not fill the list.
"""
import sys

from absl import flags

from vidjax import cli
from vidjax.errors import ConfigError
from vidjax.search import command

D = command.DEFAULTS

flags.DEFINE_string('index', D['index'], 'An index folder (python -m vidjax.index).')
flags.DEFINE_string('server', D['server'], 'Query a running server (python -m vidjax.serve) '
                    'instead, e.g. http://127.0.0.1:8000.')
flags.DEFINE_string('image', D['image'], 'Query by an image file.')
flags.DEFINE_string('frame', D['frame'], 'Query by a frame of a corpus video: VIDEO@TIME '
                    '(TIME as SS.s, MM:SS.s or HH:MM:SS.s; VIDEO its path or file name).')
flags.DEFINE_string('box', D['box'], 'x0,y0,x1,y1: query by this box of the image or frame.')
flags.DEFINE_integer('k', D['k'], 'Hits to return.', short_name='k')
flags.DEFINE_list('kinds', D['kinds'], 'Only hits of these kinds (frame, grid, motion).')
flags.DEFINE_bool('exclude_same_video', D['exclude_same_video'],
                  'No hits from the query frame\'s video.')
flags.DEFINE_float('window', D['window'],
                   'Seconds: at most one hit per video within this window.')
flags.DEFINE_bool('json', D['json'], 'Print the hits as JSON instead of a table.')
flags.DEFINE_string('sheet', D['sheet'], 'Write a contact sheet PNG of the query and hits.')
flags.DEFINE_string('video', D['video'], 'Write the hits\' frames as an mp4, each captioned.')


def main(argv):
  f = cli.command_flags(argv)
  if not f.index and not f.server:
    sys.exit('error: --index is required (a folder written by python -m vidjax.index), or '
             '--server=URL of a running python -m vidjax.serve')
  try:
    command.run(f)
  except (ConfigError, ValueError) as e:
    sys.exit(f'error: {e}')


def run():
  cli.run(main)


if __name__ == '__main__':
  run()
