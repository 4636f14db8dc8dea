"""Writes that never leave a half-written file under its final name (temporary name, then
rename): what users produced must survive a crash or a full disk mid-write."""
import contextlib
import json
import os
import shutil


@contextlib.contextmanager
def removed_on_error(path: str):
  """Removes the file or folder `path` when the block raises (a full disk, a kill's
  KeyboardInterrupt): what is half written gives its space back."""
  try:
    yield
  except BaseException:
    if os.path.isdir(path):
      shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
      os.remove(path)
    raise


def write_bytes(path, data: bytes):
  tmp = f'{path}.tmp'
  with removed_on_error(tmp):
    with open(tmp, 'wb') as f:
      f.write(data)
  os.replace(tmp, path)


def save_figure(figure, path: str, **options):
  """matplotlib's figure.savefig(path), through a temporary name."""
  tmp = f'{path}.tmp'
  with removed_on_error(tmp):
    figure.savefig(tmp, format=os.path.splitext(path)[1][1:] or 'png', **options)
  os.replace(tmp, path)


def write_text(path, text: str):
  write_bytes(path, text.encode())


def write_json(path, value, indent=1):
  write_text(path, json.dumps(value, indent=indent))


def replace_folder(built: str, output: str):
  """Replaces the folder `output` by the folder `built`: at every moment one of them is
  complete under its name (OUTPUT.old while the two renames happen; recover_folder puts it
  back after a crash)."""
  old = f'{output}.old'
  if os.path.exists(output):
    shutil.rmtree(old, ignore_errors=True)
    os.replace(output, old)
  os.replace(built, output)
  shutil.rmtree(old, ignore_errors=True)


def recover_folder(output: str):
  """After a crash between replace_folder's renames: the previous folder back under its name."""
  old = f'{output}.old'
  if os.path.exists(old) and not os.path.exists(output):
    os.replace(old, output)
