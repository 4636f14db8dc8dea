r"""The labels of a corpus index: list them, or export them as a labelled imagefolder.

  python -m vidjax.labels list   --index=/data/drives_index
  python -m vidjax.labels export --index=/data/drives_index --output=/data/labelled [--labels=cow,sheep]

Labels and answers are given through the server's page or API (python -m vidjax.serve).
The export holds one folder of accepted crops per label, labels.csv (every latest answer,
rejected and skipped ones included, with who answered and when) and crops.csv; it is built
beside --output and swapped in when complete, and an existing --output is replaced only
with --overwrite. It reads as `imagefolder:OUTPUT` in `python -m vidjax.evaluate`.
"""
import os
import sys

from absl import flags, logging

from vidjax import cli, disk_space, writer_lock
from vidjax.errors import ConfigError, NotFound
from vidjax.labels import export, store
from vidjax.search import corpus

flags.DEFINE_string('index', None, 'An index folder (python -m vidjax.index).')
flags.DEFINE_string('output', '', 'export: the folder to write.')
flags.DEFINE_list('labels', [], 'export: only these labels (default: all).')
flags.DEFINE_bool('overwrite', False, 'export: replace an existing --output.')

COMMANDS = ('list', 'export')


def run_command(command: str, f):
  index = corpus.CorpusIndex(os.path.expanduser(f.index))
  labels = store.LabelStore(os.path.join(index.folder, 'metadata.sqlite'))
  try:
    if command == 'list':
      rows = labels.labels()
      print(f'{"label":<24} {"accepted":>8} {"rejected":>8} {"skipped":>8}')
      for row in rows:
        print(f'{row["name"]:<24} {row["accept"]:>8} {row["reject"]:>8} {row["skip"]:>8}')
      if not rows:
        print('(no labels yet: create them from the server, python -m vidjax.serve)')
      return
    if not f.output:
      raise ConfigError('export needs --output=FOLDER')
    output = os.path.abspath(os.path.expanduser(f.output))
    with (writer_lock.hold(output, '--output', beside=True),
          disk_space.reporting(output, '--output', f'{output} is as it was before; free some '
                               'space and run the same command again')):
      written = export.export(index, labels, output, f.labels or None, f.overwrite)
    print(f'exported {sum(written.values())} accepted crops of {len(written)} labels to '
          f'{f.output} (' + ', '.join(f'{name} {n}' for name, n in written.items()) + ')')
  finally:
    labels.close()
    index.close()


def main(argv):
  f = flags.FLAGS
  if not f['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  if len(argv) != 2 or argv[1] not in COMMANDS:
    sys.exit(f'error: expected one command, {" or ".join(COMMANDS)}: python -m vidjax.labels '
             'export --index=DIR --output=DIR')
  if not f.index:
    sys.exit('error: --index is required (a folder written by python -m vidjax.index)')
  try:
    run_command(argv[1], f)
  except (ConfigError, NotFound, ValueError) as e:
    sys.exit(f'error: {e}')


def run():
  cli.run(main)


if __name__ == '__main__':
  run()
