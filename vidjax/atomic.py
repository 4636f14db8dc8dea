"""Writes that never leave a half-written file under its final name (temporary name, then
rename): what users produced must survive a crash or a full disk mid-write."""
import json
import os


def write_bytes(path, data: bytes):
  tmp = f'{path}.tmp'
  with open(tmp, 'wb') as f:
    f.write(data)
  os.replace(tmp, path)


def write_text(path, text: str):
  write_bytes(path, text.encode())


def write_json(path, value, indent=1):
  write_text(path, json.dumps(value, indent=indent))
