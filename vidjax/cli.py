"""What every `python -m vidjax.<command>` does first."""
from absl import app, flags, logging


def command_flags(argv):
  """absl's FLAGS for a command's main(argv), which takes no positional arguments; the
  command logs only warnings unless --verbosity says otherwise."""
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  return flags.FLAGS
