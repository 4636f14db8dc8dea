r"""The training command: `python main.py` in a checkout, `vidjax-train` where vidjax is
installed (pyproject.toml), with the same flags.

  vidjax-train --config=simsiam --workdir=runs/simsiam      # a shipped config, by name
  vidjax-train --config=my_config.py:smoke --workdir=/tmp/smoke
"""
import os
import re
import sys
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

from vidjax import cli, multihost, train
from vidjax.errors import ConfigError, TrainingDiverged

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Training config file, e.g. configs/simsiam.py[:smoke], or a shipped '
    'config by name (simsiam, npair, barlow, tcn; [:smoke]) from anywhere.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where checkpoints, metrics and config go.')
flags.mark_flags_as_required(['config', 'workdir'])


def _shipped_config_dir() -> Path:
  """configs/ of the checkout, or its copy inside an installed package (pyproject.toml)."""
  package = Path(__file__).resolve().parent
  installed = package / 'configs'
  return installed if installed.is_dir() else package.parent / 'configs'


def shipped_configs() -> list:
  return sorted(p.name for p in _shipped_config_dir().glob('*.py') if p.name != '__init__.py')


def resolve_config(value: str) -> str:
  """--config's PATH[:ARG], with a PATH that is not a file here but names a shipped config
  (simsiam.py, or configs/simsiam.py from outside a checkout) replaced by that file."""
  path, colon, arg = value.partition(':')
  if os.path.isfile(path) or os.path.dirname(path) not in ('', 'configs'):
    return value
  name = os.path.basename(path)
  name = name if name.endswith('.py') else name + '.py'
  shipped = _shipped_config_dir() / name
  return f'{shipped}{colon}{arg}' if name in shipped_configs() else value


def parse_flags(argv):
  """absl's flag parsing, with every bad flag or --config override reported in one line."""
  for i, arg in enumerate(argv):
    if arg.startswith('--config='):
      argv = argv[:i] + ['--config=' + resolve_config(arg[len('--config='):])] + argv[i + 1:]
    elif arg == '--config' and i + 1 < len(argv):
      argv = argv[:i + 1] + [resolve_config(argv[i + 1])] + argv[i + 2:]
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
             'config file; expected a path such as configs/simsiam.py or the name of a '
             f'shipped config ({", ".join(shipped_configs())})')
  try:
    multihost.initialize_from_flags()
  except multihost.FlagError as e:
    sys.exit(f'error: {e}')
  try:
    train.train_and_evaluate(config, _WORKDIR.value)
  except (ConfigError, TrainingDiverged) as e:
    sys.exit(f'error: {e}')


def run():
  """The vidjax-train console script, and python main.py."""
  cli.run(main, flags_parser=parse_flags)


if __name__ == '__main__':
  run()
