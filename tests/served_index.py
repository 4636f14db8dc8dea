"""A small index of the embedded world, and the real server over it (uvicorn on a loopback
socket), for the index, server, labelling and browser tests."""
import contextlib
import os
import socket
import threading
import time

import httpx
import uvicorn

from configs import npair
from vidjax import train
from vidjax.index import command
from vidjax.serve.app import create_app


def train_smoke(workdir: str) -> str:
  """The smoke config of N-pair trained for 2 steps (a checkpoint at step 2) in workdir."""
  config = npair.get_config('smoke')
  config.update(total_steps=2, eval_every=100, checkpoint_every=100)
  train.train_and_evaluate(config, workdir)
  return workdir


def build_index(workdir: str, output: str) -> str:
  """Indexes 6 videos of the embedded world (2 fps; frames, half-frame grid windows, moving
  regions) with workdir's encoder into output."""
  command.run(command.arguments(workdir=workdir, output=output, corpus='synthetic', fps=2.0,
                                regions=['grid', 'motion'], grid_scales=['0.5'], max_videos=6))
  return output


@contextlib.contextmanager
def running_server(index_folder: str, **app_options):
  """Yields (base URL, app) of the app over index_folder, served in a thread on a socket
  bound here (so no other process can take the port in between)."""
  app = create_app(index_folder, **app_options)
  sock = socket.socket()
  sock.bind(('127.0.0.1', 0))
  port = sock.getsockname()[1]
  server = uvicorn.Server(uvicorn.Config(app, host='127.0.0.1', port=port, log_level='warning'))
  thread = threading.Thread(target=server.run, kwargs={'sockets': [sock]}, daemon=True)
  thread.start()
  url = f'http://127.0.0.1:{port}'
  deadline = time.monotonic() + 60
  while True:
    try:
      if httpx.get(f'{url}/api/health', timeout=5).status_code == 200:
        break
    except httpx.HTTPError:
      pass
    if time.monotonic() > deadline or not thread.is_alive():
      raise RuntimeError('the server did not answer /api/health')
    time.sleep(0.1)
  try:
    yield url, app
  finally:
    server.should_exit = True
    thread.join(timeout=30)
    sock.close()
