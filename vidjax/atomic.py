"""Writes that never leave a half-written file under its final name (temporary name, then
rename): what users produced must survive a crash or a full disk mid-write."""
import json
import os
import shutil


def write_bytes(path, data: bytes):
  tmp = f'{path}.tmp'
  with open(tmp, 'wb') as f:
    f.write(data)
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
