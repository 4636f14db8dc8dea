r"""Self-supervised pre-training of a video encoder.

  python main.py --config=configs/simsiam.py --workdir=runs/simsiam
  python main.py --config=configs/npair.py --workdir=runs/npair --config.batch_size=256

Running the same command again resumes from the latest checkpoint in --workdir.
Multi-host (the same command on every host; README "Multi-host training"):

  python main.py --config=configs/simsiam.py --workdir=/shared/run \
      --coordinator_address=host0:1234 --num_processes=N --process_id=$RANK
  python main.py --config=configs/simsiam.py --workdir=/shared/run --distributed  # TPU VM, SLURM
"""
import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from vidjax import multihost, train
from vidjax.errors import ConfigError, TrainingDiverged

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Training config file, e.g. configs/simsiam.py[:smoke].', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where checkpoints, metrics and config go.')
flags.mark_flags_as_required(['config', 'workdir'])


def parse_flags(argv):
  """absl's flag parsing, with every bad flag or --config override reported in one line."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:  # Its message may embed a traceback: keep the first and last line.
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    sys.exit('error: ' + (f'{lines[0]} {lines[-1]}' if len(lines) > 1 else lines[0]))
  except (AttributeError, KeyError) as e:  # ml_collections: an override of a missing field.
    # The message is a (nested) repr such as '\\'nme\\'\\nDid you mean "name" ...'.
    field = re.search(r'[A-Za-z_]\w*', str(e)).group()
    hint = re.search(r'Did you mean "\w+"', str(e))
    given = [a for a in argv if a.startswith('--config.') and
             field in a.split('=')[0].split('.')]
    sys.exit(f"error: {given[0] if given else '--config'}: the config has no field {field!r}"
             + (f' ({hint.group()}?)' if hint else ''))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  # Orbax and Grain log every checkpoint at INFO; --verbosity=0 brings them back.
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  try:
    config = _CONFIG.value
    config.method  # ml_collections defers a load failure to the first attribute access.
  except OSError:
    sys.exit(f'error: --config={flags.FLAGS["config"].config_filename}: cannot load this '
             'config file; expected a path such as configs/simsiam.py')
  try:
    multihost.initialize_from_flags()
  except multihost.FlagError as e:
    sys.exit(f'error: {e}')
  try:
    train.train_and_evaluate(config, _WORKDIR.value)
  except (ConfigError, TrainingDiverged) as e:
    sys.exit(f'error: {e}')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
