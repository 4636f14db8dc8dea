"""A full disk, a quota or a read-only filesystem, reported in one line with what was kept.

Every writer wraps its writes in `reporting(...)`: whatever raises there, an OSError from
Python or the text of an error from C++ (Orbax's tensorstore says `RESOURCE_EXHAUSTED ...
No space left on device [os_error_code='28']`), becomes an OutOfSpace naming the folder,
the free space, and what the user still has. Before a long job, `warn_if_short` compares the
free space with a rough need and prints one warning line.
"""
import contextlib
import errno
import logging
import os
import shutil
import sys
import threading

from vidjax.errors import ConfigError

SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)
# How C++ libraries (tensorstore, faiss, array_record, SQLite) word the same errors.
SPACE_MESSAGES = ('no space left on device', 'disk quota exceeded', 'read-only file system',
                  "os_error_code='28'", "os_error_code='122'", "os_error_code='30'",
                  'database or disk is full', 'file too large')


class OutOfSpace(ConfigError):
  """A write failed for lack of space (or write permission on the filesystem); the message
  names the folder, the free space and what was kept."""


class SpaceShortfall(OSError):
  """ENOSPC raised before writing: `needed_bytes` will not fit."""

  def __init__(self, message: str, needed_bytes: int, free: int):
    super().__init__(errno.ENOSPC, message)
    self.needed_bytes, self.free = needed_bytes, free


def require_free(folder, needed: int, what: str):
  """SpaceShortfall when the filesystem of `folder` has less than `needed` bytes free."""
  free = free_bytes(str(folder))
  if free is not None and free < needed:
    raise SpaceShortfall(f'{what} needs about {human(needed)}, {human(free)} free', needed,
                         free)


def human(size: float) -> str:
  for unit in ('bytes', 'KB', 'MB', 'GB'):
    if size < 1024 or unit == 'GB':
      return f'{size:.0f} {unit}' if unit == 'bytes' else f'{size:.1f} {unit}'
    size /= 1024
  return f'{size:.1f} TB'


def free_bytes(path: str) -> int | None:
  """Free bytes for this user on the filesystem of `path` (or of its nearest existing
  parent); None when it cannot be told."""
  path = os.path.abspath(path)
  while not os.path.exists(path) and os.path.dirname(path) != path:
    path = os.path.dirname(path)
  try:
    return shutil.disk_usage(path).free
  except OSError:
    return None


def is_out_of_space(error: BaseException) -> bool:
  """Whether `error`, or an error it was raised from, is a full disk, quota or read-only
  filesystem."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in SPACE_ERRNOS:
      return True
    if _mentions_space(str(error)):
      return True
    error = error.__cause__ or error.__context__
  return False


def _mentions_space(text: str) -> bool:
  return any(words in text.lower() for words in SPACE_MESSAGES)


def _reason(error: BaseException) -> str:
  text = str(error).lower()
  if (isinstance(error, OSError) and error.errno == errno.EROFS) or 'read-only' in text:
    return 'the filesystem is read-only'
  if (isinstance(error, OSError) and error.errno == errno.EDQUOT) or 'quota' in text:
    return 'the disk quota is exceeded'
  return 'no space left on the device'


@contextlib.contextmanager
def reporting(folder: str, flag: str, kept, needed: int | None = None):
  """Turns an out-of-space error raised inside into an OutOfSpace one-liner: '{flag}={folder}:
  no space left on the device (N free[, needs about M]); {kept}'. `kept` is a string or a
  function returning one (read when the error happens: "the last good checkpoint is step 21;
  free space and run the same command again to resume")."""
  try:
    yield
  except OutOfSpace:
    raise
  except BaseException as e:  # pylint: disable=broad-except  # Re-raised unless out of space.
    if isinstance(e, (KeyboardInterrupt, SystemExit)) or not is_out_of_space(e):
      raise
    kept_text = kept() if callable(kept) else kept  # First: it may give space back.
    free = getattr(e, 'free', None)
    free = free_bytes(folder) if free is None else free
    space = [f'{human(free)} free'] if free is not None else []
    needed = getattr(e, 'needed_bytes', None) or needed
    if needed:
      space.append(f'needs about {human(needed)}')
    detail = f' ({", ".join(space)})' if space else ''
    raise OutOfSpace(f'{flag}={folder}: {_reason(e)}{detail}; {kept_text}') from None


class _DropSpaceErrors(logging.Filter):
  def filter(self, record):
    error = record.exc_info[1] if record.exc_info else None
    return not (is_out_of_space(error) if error else _mentions_space(record.getMessage()))


def _is_noise(error) -> bool:
  return is_out_of_space(error) or 'event loop is closed' in str(error).lower()


@contextlib.contextmanager
def quiet_background_errors():
  """Inside: a library's background threads and callbacks (Orbax's, tensorstore's) that fail
  for lack of space print nothing; the error that reaches the caller says it once."""
  unraisable, thread_hook = sys.unraisablehook, threading.excepthook
  sys.unraisablehook = lambda u: None if _is_noise(u.exc_value) else unraisable(u)
  threading.excepthook = lambda a: None if _is_noise(a.exc_value) else thread_hook(a)
  dropped = _DropSpaceErrors()
  logger = logging.getLogger('absl')
  logger.addFilter(dropped)
  try:
    yield
  finally:
    sys.unraisablehook, threading.excepthook = unraisable, thread_hook
    logger.removeFilter(dropped)


def warn_if_short(folder: str, flag: str, needed: int, what: str) -> bool:
  """Prints one warning line when the filesystem of `folder` has less than `needed` bytes
  free; True when it did."""
  free = free_bytes(folder)
  if free is None or free >= needed:
    return False
  print(f'warning: {flag}={folder}: {human(free)} free, {what} may need about '
        f'{human(needed)}', file=sys.stderr, flush=True)
  return True
