"""One writer per folder: an advisory lock held while a command writes there.

fcntl.flock's lock belongs to the open file description, so the OS releases it when the
process ends however it ends (SIGKILL included): a killed run never leaves a stale lock.
The lock file stays in place after release (deleting it would let a third process lock a
file the second one already opened). It holds the holder's pid and command line, so the
second writer's one-line error can name them.
"""
import contextlib
import fcntl
import os
import sys
import time

from vidjax.errors import ConfigError

LOCK_FILE = '.vidjax.lock'


class FolderBusy(ConfigError):
  """Another process holds the folder's writer lock; the message names it."""


def lock_path(folder: str, beside: bool = False) -> str:
  """FOLDER/.vidjax.lock, or PARENT/.NAME.vidjax.lock for a folder that is replaced whole
  by a rename (an index, an export), whose lock must outlive each copy of it."""
  folder = os.path.abspath(folder)
  if beside:
    return os.path.join(os.path.dirname(folder), f'.{os.path.basename(folder)}{LOCK_FILE}')
  return os.path.join(folder, LOCK_FILE)


def _holder(descriptor: int) -> str:
  for _ in range(20):  # The holder writes its pid right after it locks.
    text = os.pread(descriptor, 4096, 0).decode(errors='replace').strip()
    if text:
      return text
    time.sleep(0.05)
  return 'pid unknown'


def _command_line() -> str:
  try:  # As typed (python -m vidjax.index ...), which sys.argv no longer shows.
    with open('/proc/self/cmdline', 'rb') as f:
      words = f.read().rstrip(b'\0').decode(errors='replace').split('\0')
    return ' '.join([os.path.basename(words[0])] + words[1:])
  except OSError:
    return ' '.join([os.path.basename(sys.executable)] + sys.argv)


@contextlib.contextmanager
def hold(folder: str, flag: str, beside: bool = False, enabled: bool = True):
  """Holds `folder`'s writer lock inside the block (creating the folder, or for `beside` its
  parent); FolderBusy when another process holds it. `enabled=False` (the processes other
  than 0 of a multi-host run) takes nothing."""
  if not enabled:
    yield
    return
  path = lock_path(folder, beside)
  created = not os.path.exists(os.path.dirname(path))
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    raise ConfigError(f'{flag}={folder}: cannot write there ({e.strerror or e})') from None
  try:
    try:
      fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise FolderBusy(f'{flag}={folder}: another vidjax process is writing there '
                       f'({_holder(descriptor)}); wait for it to end, or use another '
                       'folder') from None
    command = _command_line()
    try:
      os.ftruncate(descriptor, 0)
      os.pwrite(descriptor, f'pid {os.getpid()}: {command}'[:4000].encode(), 0)
    except OSError:  # A full disk: the lock holds all the same, its note is left empty.
      pass
    yield
  finally:
    if created and os.listdir(os.path.dirname(path)) == [os.path.basename(path)]:
      os.remove(path)  # A start that failed leaves no folder it made for the lock alone.
      os.rmdir(os.path.dirname(path))
    os.close(descriptor)  # Releases the lock.
