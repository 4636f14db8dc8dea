r"""Search a corpus index for the frames and regions most like a query.

  python -m vidjax.search --index=/data/drives_index --image=query.jpg -k 50 --sheet=hits.png --video=hits.mp4
  python -m vidjax.search --index=/data/drives_index --frame=drive_017.mp4@00:03:12.4 --box=120,80,220,180 -k 50
  python -m vidjax.search --index=/data/drives_index --image=cow.png --json > hits.json

The query is embedded by the encoder the index was built with (its copy in INDEX/encoder),
cut as the index cut its regions: the whole image (or frame) squeezed to a square, or the
square around --box (pixels of the image, or of the frame as the index read it).
--exclude_same_video drops hits from the query frame's video; --window drops a hit within
that many seconds of a better hit in the same video, so one long shot does not fill the list.
"""
import os
import sys

from absl import app, flags, logging

from vidjax.errors import ConfigError
from vidjax.search import corpus, outputs

flags.DEFINE_string('index', None, 'An index folder (python -m vidjax.index).')
flags.DEFINE_string('image', '', 'Query by an image file.')
flags.DEFINE_string('frame', '', 'Query by a frame of a corpus video: VIDEO@TIME (TIME as '
                    'SS.s, MM:SS.s or HH:MM:SS.s; VIDEO its path or file name).')
flags.DEFINE_string('box', '', 'x0,y0,x1,y1: query by this box of the image or frame.')
flags.DEFINE_integer('k', 20, 'Hits to return.', short_name='k')
flags.DEFINE_list('kinds', [], 'Only hits of these kinds (frame, grid, motion).')
flags.DEFINE_bool('exclude_same_video', False, 'No hits from the query frame\'s video.')
flags.DEFINE_float('window', 2.0, 'Seconds: at most one hit per video within this window.')
flags.DEFINE_bool('json', False, 'Print the hits as JSON instead of a table.')
flags.DEFINE_string('sheet', '', 'Write a contact sheet PNG of the query and hits.')
flags.DEFINE_string('video', '', 'Write the hits\' frames as an mp4, each captioned.')


def _query(index, f):
  """(query image for the sheet, its vector, the video to exclude or None)."""
  if bool(f.image) == bool(f.frame):
    raise ConfigError('give one of --image=FILE or --frame=VIDEO@TIME')
  box = corpus.parse_box(f.box) if f.box else None
  if f.image:
    image, video_name = corpus.read_image(f.image), None
  else:
    name, at, time = f.frame.rpartition('@')
    if not at or not name:
      raise ConfigError(f'--frame={f.frame}: expected VIDEO@TIME, e.g. drive_017.mp4@00:03:12.4')
    video, _, image = index.frame_at(name, corpus.parse_time(time))
    video_name = index.source.video_name(video)
  if box:
    corpus.check_box_inside(box, image.shape, f'--image={f.image}' if f.image else
                            f'the frame of --frame={f.frame} as the index read it')
  size = index.options['image_size']
  shown = (corpus.regions.square_crop(image, box, max(size, 96)) if box
           else corpus.regions.resize_square(image, 96))
  return shown, index.embed(image, box), video_name


def run(f):
  if f.k < 1:
    raise ConfigError(f'-k={f.k}: expected at least 1')
  index = corpus.CorpusIndex(os.path.expanduser(f.index))
  shown, vector, video_name = _query(index, f)
  hits = index.search(vector, f.k, video_name if f.exclude_same_video else None, f.window,
                      f.kinds)
  print(outputs.as_json(hits) if f.json else outputs.table(hits))
  if f.sheet and hits:
    outputs.contact_sheet(shown, [index.crop_of(h, 96) for h in hits], hits, f.sheet)
    print(f'sheet: {f.sheet}', file=sys.stderr)
  if f.video and hits:
    outputs.hits_video([index.frame_of(h) for h in hits], hits, f.video)
    print(f'video: {f.video}', file=sys.stderr)
  index.close()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  f = flags.FLAGS
  if not f['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  if not f.index:
    sys.exit('error: --index is required (a folder written by python -m vidjax.index)')
  try:
    run(f)
  except (ConfigError, ValueError) as e:
    sys.exit(f'error: {e}')


if __name__ == '__main__':
  app.run(main)
