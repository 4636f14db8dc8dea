r"""The README's picture of the page: a real server over an index, a query uploaded in headless
chromium (Debian's, driven by Playwright; nothing is downloaded), two neighbours accepted.

  python bench/page_screenshot.py --index=/tmp/world_index \
      --image=/tmp/world/query/striped_disc/00000.png --out=docs/page.png

The label it creates (--label) and the two answers are written to the index like any
others; use a copy of an index you care about.
"""
import os
import socket
import sys
import threading
import time

import httpx
import uvicorn
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from vidjax.serve.app import create_app  # noqa: E402

CHROMIUM = '/usr/bin/chromium'
ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic']


def main(argv):
  del argv
  from playwright.sync_api import sync_playwright  # pylint: disable=import-outside-toplevel
  f = flags.FLAGS
  sock = socket.socket()
  sock.bind(('127.0.0.1', 0))
  url = f'http://127.0.0.1:{sock.getsockname()[1]}'
  server = uvicorn.Server(uvicorn.Config(create_app(f.index), log_level='warning'))
  thread = threading.Thread(target=server.run, kwargs={'sockets': [sock]}, daemon=True)
  thread.start()
  while True:
    try:
      httpx.get(f'{url}/api/health', timeout=5)
      break
    except httpx.HTTPError:
      time.sleep(0.2)
  try:
    with sync_playwright() as p:
      browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
      page = browser.new_page(viewport={'width': 1280, 'height': 1000})
      page.set_default_timeout(120_000)
      page.goto(url)
      page.wait_for_selector('body[data-ready=true]')
      page.set_input_files('#file-input', f.image)
      page.wait_for_selector('#grid[data-mode=search] .tile')
      page.fill('#who', 'readme')
      page.fill('#new-label', f.label)
      page.click('#create-label')
      page.wait_for_function(f'document.querySelector("#label-select").value === "{f.label}"')
      tiles = page.locator('#grid .tile')
      for i in f.accept:
        tiles.nth(int(i)).locator('.accept').click()
        page.wait_for_selector(f'#grid .tile:nth-child({int(i) + 1})[data-answer=accept]')
      page.wait_for_function('[...document.querySelectorAll("#grid .thumb")]'
                             '.every(i => i.complete && i.naturalWidth > 0)')
      page.screenshot(path=f.out)
      browser.close()
  finally:
    server.should_exit = True
    thread.join(timeout=30)
  print(f'written: {f.out}')


if __name__ == '__main__':
  flags.DEFINE_string('index', None, 'An index folder.')
  flags.DEFINE_string('image', None, 'The query image to upload.')
  flags.DEFINE_string('label', 'striped disc', 'The label to create.')
  flags.DEFINE_list('accept', ['0', '1'], 'Tiles (0-based) to accept.')
  flags.DEFINE_string('out', 'docs/page.png', 'Where the PNG goes.')
  flags.mark_flags_as_required(['index', 'image'])
  app.run(main)
