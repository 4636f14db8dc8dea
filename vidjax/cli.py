"""What every vidjax command (`python -m vidjax.<command>`, `vidjax-<command>`) does first."""
import sys

from absl import app, flags, logging

from vidjax import __version__

flags.DEFINE_bool('version', False, 'Print the vidjax version and exit.')


def run(main, **options):
  """absl's app.run(main, **options), after answering --version: a command's entry point."""
  if '--version' in sys.argv[1:]:
    print(f'vidjax {__version__}')
    sys.exit(0)
  app.run(main, **options)


def command_flags(argv):
  """absl's FLAGS for a command's main(argv), which takes no positional arguments; the
  command logs only warnings unless --verbosity says otherwise."""
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  return flags.FLAGS
