"""Checks a config and workdir before any compute starts: one clear line per problem.

Each section is checked by the module that uses it (losses, optim, models, data.pipeline);
this module checks the top-level fields and calls them.
"""
import os

from vidjax import losses, models, optim
from vidjax.data import pipeline
from vidjax.errors import ConfigError, require


def _positive_int(config, name: str):
  value = config[name]
  require(isinstance(value, int) and value > 0,
          f'config.{name} must be a positive integer, got {value!r}')


def check_config(config, num_devices: int, num_processes: int = 1):
  """Raises ConfigError naming the offending field and what was expected."""
  for name in ('total_steps', 'batch_size', 'image_size', 'log_every', 'eval_every',
               'checkpoint_every', 'keep_checkpoints', 'steps_per_dispatch'):
    _positive_int(config, name)
  for name in ('total_steps', 'log_every', 'eval_every', 'checkpoint_every'):
    require(config[name] % config.steps_per_dispatch == 0,
            f'config.{name}={config[name]} is not a multiple of config.steps_per_dispatch='
            f'{config.steps_per_dispatch}; logging, the monitor and checkpoints happen between '
            'dispatches')
  require(config.batch_size % num_devices == 0,
          f'config.batch_size={config.batch_size} is not divisible by the {num_devices} '
          'devices; use a multiple of the device count')
  require(config.batch_size % num_processes == 0,
          f'config.batch_size={config.batch_size} is not divisible by the {num_processes} '
          'processes')
  losses.check_config(config)
  optim.check_config(config.optim)
  models.check_config(config)
  pipeline.check_config(config.data)


def check_workdir(workdir):
  """The workdir exists and is writable, or can be created; nothing is created yet, so a
  start that fails later leaves no empty folder behind."""
  require(bool(workdir), '--workdir is required (where checkpoints and metrics go)')
  path = os.path.abspath(workdir)
  existing = path
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise ConfigError(f'--workdir={workdir} is not writable: {existing} is a file')
  if not os.access(existing, os.W_OK | os.X_OK):
    raise ConfigError(f'--workdir={workdir} is not writable: no permission in {existing}')
