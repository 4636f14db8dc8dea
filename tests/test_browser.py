"""The search and labelling page in a real headless browser: Debian's chromium, driven by
Playwright (never `playwright install`, which downloads a browser), against the real server
over a small index. A person's path through it: upload a photo, see its neighbours, create a
label, accept crops by button and by key, review proposals, search by a box of a video frame,
export, and find the accepted crops on disk. Leaves page.png in $VIDJAX_TEST_ARTIFACTS (default
test-artifacts/)."""
import csv
import io
import json
import os
import re
import urllib.request
import zipfile

import pytest
from PIL import Image

from served_index import build_index, running_server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = '/usr/bin/chromium'
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', '--no-first-run',
                 '--disable-quic']
LABEL = 'striped disc'
TIMEOUT_MS = 60_000  # The first search compiles the encoder.


def _require_chromium():
  """Skips (fails under CI=true) when Debian's chromium or Playwright is missing."""
  reason = None
  if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
    reason = "Debian's chromium is not installed (apt-get install -y chromium)"
  else:
    try:
      import playwright.sync_api  # pylint: disable=import-outside-toplevel,unused-import
    except ImportError:
      reason = 'Playwright for Python is not installed (pip install -r requirements.txt)'
  if reason is None:
    return
  if os.environ.get('CI') == 'true':
    pytest.fail(f'{reason}: CI must have it (.ci/run installs it)', pytrace=False)
  pytest.skip(reason)


@pytest.fixture(scope='module')
def index_folder(smoke_run, tmp_path_factory):
  _require_chromium()  # Before building the index, so a skip is quick.
  return build_index(smoke_run, str(tmp_path_factory.mktemp('browser') / 'index'))


@pytest.fixture
def server(index_folder, tmp_path):
  """(base URL, the app, export folder) of the real server, in a thread, on a free port."""
  export_dir = str(tmp_path / 'export')
  with running_server(index_folder, export_dir=export_dir) as (url, app):
    yield url, app, export_dir


def _artifacts() -> str:
  folder = os.environ.get('VIDJAX_TEST_ARTIFACTS') or os.path.join(ROOT, 'test-artifacts')
  os.makedirs(folder, exist_ok=True)
  return folder


def _query_image(index, path) -> str:
  """A PNG of the first moving object the index found, with some of its surroundings."""
  row = next(r for r in map(index.row, range(len(index))) if r['kind'] == 'motion')
  frame = Image.fromarray(index.frame_of(row))
  x0, y0, x1, y1 = row['x0'], row['y0'], row['x1'], row['y1']
  pad = (x1 - x0) // 4
  frame.crop((max(0, x0 - pad), max(0, y0 - pad), min(frame.width, x1 + pad),
              min(frame.height, y1 + pad))).save(path)
  return str(path)


def _tile_ids(page) -> list:
  return [int(i) for i in page.eval_on_selector_all('#grid .tile',
                                                    'tiles => tiles.map(t => t.dataset.id)')]


def _wait_images(page, selector):
  page.wait_for_function(f'[...document.querySelectorAll({json.dumps(selector)})]'
                         '.every(i => i.complete && i.naturalWidth > 0)')


def test_search_label_and_export_in_a_browser(server, tmp_path):
  from playwright.sync_api import expect, sync_playwright  # pylint: disable=import-outside-toplevel
  url, app, export_dir = server
  image = _query_image(app.state.index, tmp_path / 'query.png')
  errors = []
  with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    try:
      page = browser.new_page(viewport={'width': 1280, 'height': 1000})
      page.set_default_timeout(TIMEOUT_MS)
      expect.set_options(timeout=TIMEOUT_MS)
      page.on('pageerror', lambda error: errors.append(str(error)))
      page.goto(url)
      page.wait_for_selector('body[data-ready=true]')
      expect(page.locator('#status')).not_to_have_class('error')
      expect(page.locator('#health')).to_contain_text(f'{len(app.state.index)} vectors')

      # Upload a photo: its neighbours fill the grid, with their similarity histogram.
      page.set_input_files('#file-input', image)
      page.wait_for_selector('#grid[data-mode=search] .tile')
      expect(page.locator('#status')).to_contain_text('Found')
      tiles = page.locator('#grid .tile')
      assert tiles.count() >= 4
      expect(tiles.first.locator('.score')).to_have_text(re.compile(r'^-?\d\.\d{3}$'))
      expect(tiles.first.locator('.where')).to_have_text(re.compile(r' · \d\d:\d\d\.\d$'))
      expect(tiles.first.locator('.kind')).to_have_text(re.compile(r'^(frame|grid|motion)$'))
      expect(page.locator('#histogram rect.bar-rect')).to_have_count(20)
      expect(page.locator('#histogram rect.band')).to_have_count(1)

      # A bad label name is refused, the server's reason shown; then the label is created.
      page.fill('#new-label', '../escape')
      page.click('#create-label')
      expect(page.locator('#status.error')).to_contain_text('label name')
      page.fill('#who', 'tester')
      page.fill('#new-label', LABEL)
      page.click('#create-label')
      expect(page.locator('#label-select')).to_have_value(LABEL)
      expect(page.locator('#status')).not_to_have_class('error')
      expect(page.locator('#counts')).to_have_attribute('data-label', LABEL)

      # Accept one tile by its button, the next (now focused) by the key a.
      first, second = _tile_ids(page)[:2]
      tiles.nth(0).locator('.accept').click()
      expect(page.locator('#count-accept')).to_have_text('1')
      expect(tiles.nth(0)).to_have_attribute('data-answer', 'accept')
      expect(tiles.nth(1)).to_have_class(re.compile(r'\bfocused\b'))
      page.keyboard.press('a')
      expect(page.locator('#count-accept')).to_have_text('2')
      expect(tiles.nth(1)).to_have_attribute('data-answer', 'accept')
      expect(tiles.nth(2)).to_have_class(re.compile(r'\bfocused\b'))
      expect(page.locator('#count-reject')).to_have_text('0')
      expect(page.locator('#status')).not_to_have_class('error')
      _wait_images(page, '#grid .thumb')
      page.screenshot(path=os.path.join(_artifacts(), 'page.png'))

      # A thumbnail opens its whole frame; Escape closes it.
      tiles.nth(2).locator('.thumb').click()
      expect(page.locator('#lightbox')).to_be_visible()
      _wait_images(page, '#lightbox-img')
      page.keyboard.press('Escape')
      expect(page.locator('#lightbox')).to_be_hidden()

      # n: proposals for the label, seeded by the search, none of them answered already.
      with page.expect_request(re.compile(r'/api/labels/.+/proposals\?.*seed=')):
        page.keyboard.press('n')
      page.wait_for_selector('#grid[data-mode=proposals] .tile')
      expect(page.locator('#method')).to_have_text(re.compile(r'^(nearest|probe)$'))
      assert not {first, second} & set(_tile_ids(page))

      # A rectangle dragged on a video's frame searches by that box, in the frame's pixels.
      page.select_option('#video-select', '1')
      page.wait_for_selector('#query-view[data-query="1/0"]')
      _wait_images(page, '#query-img')
      width, height = page.eval_on_selector('#query-img', 'i => [i.naturalWidth, i.naturalHeight]')
      shown = page.locator('#query-img').bounding_box()
      with page.expect_request('**/api/search/frame') as request:
        page.mouse.move(shown['x'] + shown['width'] / 4, shown['y'] + shown['height'] / 4)
        page.mouse.down()
        page.mouse.move(shown['x'] + shown['width'] / 2, shown['y'] + shown['height'] / 2, steps=4)
        page.mouse.move(shown['x'] + shown['width'] * 3 / 4, shown['y'] + shown['height'] * 3 / 4,
                        steps=4)
        page.mouse.up()
      query = json.loads(request.value.post_data)
      assert query['video'] == 1 and query['k'] == 20
      assert query['box'] == pytest.approx([width / 4, height / 4, width * 3 / 4, height * 3 / 4],
                                           abs=max(width, height) / 50)
      page.wait_for_selector('#grid[data-mode=search] .tile')
      expect(page.locator('#status')).to_contain_text('Found')

      # Export: where it went, the counts, and the zip.
      page.click('#export')
      result = page.locator('#export-result')
      expect(result).to_be_visible()
      expect(result).to_contain_text(f'{LABEL}: 2')
      expect(result).to_contain_text(export_dir)
      href = result.locator('a').get_attribute('href')
    finally:
      browser.close()
  assert not errors, f'the page threw: {errors}'

  accepted = {first, second}
  files = sorted(os.listdir(os.path.join(export_dir, LABEL)))
  assert len(files) == 2 and {int(f.split('-')[0]) for f in files} == accepted
  assert all(re.fullmatch(r'\d+-\d+\.png', f) for f in files)
  with open(os.path.join(export_dir, 'labels.csv'), newline='') as f:
    rows = [r for r in csv.DictReader(f) if r['label'] == LABEL]
  assert {int(r['vector_id']) for r in rows} == accepted
  assert all(r['answer'] == 'accept' and r['who'] == 'tester' for r in rows)
  assert sorted(r['path'] for r in rows) == [f'{LABEL}/{name}' for name in files]
  with urllib.request.urlopen(url + href, timeout=30) as response:
    names = zipfile.ZipFile(io.BytesIO(response.read())).namelist()
  assert sorted(n for n in names if n.startswith(f'{LABEL}/')) == [f'{LABEL}/{n}' for n in files]
