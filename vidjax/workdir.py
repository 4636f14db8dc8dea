"""A training run's folder: its config.json, read back and compared before a run resumes.

config.json holds the full config of the run and the vidjax version that wrote it. Runs
written by earlier versions lack the fields added since; `load_config` merges what a run
saved over today's defaults (vidjax/config_defaults.py), whose value for every field added
later is the behaviour runs had before it existed. So code reads `config.model.zero_init_residual`, never `.get(...)`.
"""
import json
import os

import jax
import ml_collections

from vidjax import __version__, atomic, config_defaults, step
from vidjax.errors import ConfigError

CONFIG = 'config.json'
VERSION_KEY = 'vidjax_version'


def _merge(defaults: dict, saved: dict) -> dict:
  merged = dict(defaults)
  for key, value in saved.items():
    if isinstance(value, dict) and isinstance(defaults.get(key), dict):
      value = _merge(defaults[key], value)
    merged[key] = value
  return merged


def load_config(workdir: str, flag: str = '--workdir') -> ml_collections.ConfigDict:
  """The config of the run in `workdir`, fields it predates filled with today's defaults."""
  path = os.path.join(workdir, CONFIG)
  if not os.path.isfile(path):
    raise ConfigError(f'{flag}={workdir}: no {CONFIG}; expected the workdir of a '
                      'python main.py run')
  try:
    with open(path) as f:
      saved = json.load(f)
  except (OSError, ValueError) as e:
    raise ConfigError(f'{flag}={workdir}: {CONFIG} is not readable JSON: {e}') from None
  saved.pop(VERSION_KEY, None)
  return ml_collections.ConfigDict(_merge(config_defaults.base_config().to_dict(), saved))


def save_config(workdir: str, config):
  """config.json: the config, and the vidjax version that wrote it (not a config field)."""
  values = json.loads(config.to_json_best_effort())
  atomic.write_json(os.path.join(workdir, CONFIG), {VERSION_KEY: __version__, **values},
                    indent=2)


def _flat(config, prefix='') -> dict:
  flat = {}
  for key, value in config.items():
    if isinstance(value, (dict, ml_collections.ConfigDict)):
      flat.update(_flat(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = list(value) if isinstance(value, tuple) else value
  return flat


def _set(config, name: str, value):
  *parents, leaf = name.split('.')
  for parent in parents:
    config = config[parent]
  config[leaf] = value


def _same_state(a, b) -> bool:
  return (jax.tree.structure(a) == jax.tree.structure(b)
          and all(x.shape == y.shape and x.dtype == y.dtype
                  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))))


def check_resumable(workdir: str, config):
  """ConfigError, before anything is written, when `config` builds a train state of other
  shapes than the run saved in `workdir` (a changed model, head or optimiser), naming the
  fields responsible. Fields that leave the state alone (steps, data, lr) may change."""
  saved = load_config(workdir)
  before, now = _flat(saved), _flat(config)
  differing = [name for name in now if name in before and before[name] != now[name]]
  if not differing:
    return
  wanted = step.abstract_state(config)
  if _same_state(step.abstract_state(saved), wanted):
    return
  culprits = []
  for name in differing:  # The fields that alone change the state's shapes.
    trial = ml_collections.ConfigDict(config.to_dict())
    _set(trial, name, before[name])
    try:
      if not _same_state(step.abstract_state(trial), wanted):
        culprits.append(name)
    except Exception:  # pylint: disable=broad-except  # An impossible mix changes it too.
      culprits.append(name)
  culprits = culprits or differing
  changes = ', '.join(f'config.{name}={now[name]!r} (the run has {before[name]!r})'
                      for name in culprits)
  raise ConfigError(f'--workdir={workdir}: cannot resume this run with {changes}: its '
                    'checkpoints hold a different model; use the run\'s values, or a new '
                    '--workdir')
