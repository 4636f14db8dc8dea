"""The user-facing errors: a problem the user can fix, reported in one line, no traceback.

Imports nothing of the project, so any module at any layer may raise them.
"""


class ConfigError(ValueError):
  """A problem with the config, a flag, an input or the workdir; the message names it."""


class TrainingDiverged(RuntimeError):
  """The loss or the parameters became NaN or infinite."""


def require(condition: bool, message: str):
  """Raises ConfigError(message) unless condition holds."""
  if not condition:
    raise ConfigError(message)


class NotFound(LookupError):
  """Something the user named (a vector id, a label, a video) does not exist; the message
  names it and what exists."""
