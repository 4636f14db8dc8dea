"""notebooks/quickstart.ipynb: stored clean, run end to end (train, evaluate, index, search)
on the smoke config in a fresh kernel, as nbclient runs it, and its install cell installs
the package (pyproject.toml) so that the console scripts run outside the checkout."""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import nbformat
from nbclient import NotebookClient

import vidjax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, 'notebooks', 'quickstart.ipynb')
HIT_ROW = re.compile(r'^\s*\d+\s+-?\d+\.\d+\s+(frame|grid|motion)\s+\d\d:\d\d:\d\d\.\d\s+\d+\s')


def _tags(cell):
  return cell.get('metadata', {}).get('tags', [])


def _text(cell) -> str:
  """The stream and plain-text outputs of an executed cell."""
  parts = []
  for output in cell.get('outputs', []):
    if output['output_type'] == 'stream':
      parts.append(output['text'])
    elif output['output_type'] in ('execute_result', 'display_data'):
      parts.append(output.get('data', {}).get('text/plain', ''))
  return ''.join(parts)


def _with_overrides(nb, overrides: dict):
  """The notebook without its install cell, with a cell setting `overrides` right after the
  parameters cell (what papermill does)."""
  nb.cells = [cell for cell in nb.cells if 'install' not in _tags(cell)]
  where = [i for i, cell in enumerate(nb.cells) if 'parameters' in _tags(cell)]
  assert len(where) == 1, 'expected one cell tagged parameters'
  source = '\n'.join(f'{name} = {value!r}' for name, value in overrides.items())
  nb.cells.insert(where[0] + 1, nbformat.v4.new_code_cell(
      source, metadata={'tags': ['injected-parameters']}))
  return nb


def test_notebook_is_stored_clean_with_install_and_parameters_cells():
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(nb)
  assert nb.nbformat == 4 and nb.metadata.kernelspec.name == 'python3'
  code = [cell for cell in nb.cells if cell.cell_type == 'code']
  assert all(not cell.outputs and cell.execution_count is None for cell in code)
  assert 'install' in _tags(code[0]) and 'parameters' in _tags(code[1])
  assert sum('install' in _tags(cell) for cell in nb.cells) == 1
  parameters = code[1].source
  for name in ('CONFIG', 'CONFIG_ARG', 'WORKDIR', 'STEPS', 'MAX_VIDEOS'):
    assert re.search(rf'^{name} = ', parameters, re.M), name
  # Every code cell says what it does first.
  for i, cell in enumerate(nb.cells):
    if cell.cell_type == 'code':
      assert i and nb.cells[i - 1].cell_type == 'markdown', f'code cell {i} has no markdown'


def test_notebook_runs_end_to_end_on_the_smoke_config(tmp_path, monkeypatch):
  # 4 videos: enough for 10 hits under search's default --window (one hit per 2 s of a video).
  # The kernel is a fresh process: none of conftest's JAX settings reach it, only the
  # environment (VIDJAX_CACHE, set by conftest, keeps its caches out of ~/.cache).
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')
  workdir = tmp_path / 'run'
  nb = _with_overrides(nbformat.read(NOTEBOOK, as_version=4), dict(
      CONFIG_ARG='smoke', WORKDIR=str(workdir), STEPS=3, MAX_VIDEOS=4))
  client = NotebookClient(nb, timeout=600, kernel_name='python3',
                          resources={'metadata': {'path': ROOT}})
  client.execute()  # Raises CellExecutionError, with the cell and its traceback, on an error.

  for cell in nb.cells:
    if cell.cell_type == 'code':
      assert not [o for o in cell.outputs if o['output_type'] == 'error'], cell.source
  assert (workdir / 'eval' / 'trained' / 'retrieval.png').is_file()
  comparison = (workdir / 'eval' / 'comparison.md').read_text()
  assert all(f'| {init} |' in comparison for init in ('trained', 'random', 'pixels'))
  assert (workdir / 'index' / 'index.json').is_file()
  assert (workdir / 'hits.png').is_file() and (workdir / 'query.png').is_file()

  search = [cell for cell in nb.cells if 'hits_table = ' in cell.get('source', '')]
  assert len(search) == 1
  lines = _text(search[0]).splitlines()
  header = [i for i, line in enumerate(lines) if re.match(r'\s*rank\s+score\s+kind', line)]
  assert len(header) == 1, _text(search[0])
  hits = [line for line in lines[header[0] + 1:] if HIT_ROW.match(line)]
  assert len(hits) == 10, _text(search[0])
  # The pictures were shown, not only written.
  shown = [o for cell in nb.cells for o in cell.get('outputs', [])
           if o['output_type'] == 'display_data' and 'image/png' in o.get('data', {})]
  assert len(shown) == 2


def test_install_cell_installs_a_package_that_trains_outside_the_checkout(tmp_path):
  """The install cell's pip commands, with REPO = this checkout, in a fresh venv (which sees
  the installed dependencies, so nothing is downloaded but the build backend): the console
  scripts answer --version and vidjax-train runs a shipped config from another folder."""
  nb = nbformat.read(NOTEBOOK, as_version=4)
  install = [cell for cell in nb.cells if 'install' in _tags(cell)][0].source
  assert re.search(r'^REPO = .*the one thing to edit', install, re.M)
  commands = [line[1:].strip() for line in install.splitlines() if line.startswith('!')]
  assert commands == ['pip install -q "{REPO}"']
  venv = tmp_path / 'venv'
  subprocess.run([sys.executable, '-m', 'venv', '--system-site-packages', str(venv)],
                 check=True)
  for command in commands:
    args = shlex.split(command.replace('{REPO}', ROOT))
    assert args[0] == 'pip'
    subprocess.run([str(venv / 'bin' / 'python'), '-m', *args], check=True, cwd=tmp_path)
  shutil.rmtree(os.path.join(ROOT, 'build'), ignore_errors=True)  # pip's in-tree build.
  elsewhere = tmp_path / 'elsewhere'
  elsewhere.mkdir()
  run = lambda *args: subprocess.run(  # noqa: E731
      [str(venv / 'bin' / args[0]), *args[1:]], cwd=elsewhere, capture_output=True,
      text=True, check=True, env=dict(os.environ, JAX_PLATFORMS='cpu'))
  for script in ('vidjax-train', 'vidjax-evaluate', 'vidjax-index', 'vidjax-search',
                 'vidjax-serve', 'vidjax-labels', 'vidjax-prepare', 'vidjax-world',
                 'vidjax-export'):
    assert run(script, '--version').stdout.strip() == f'vidjax {vidjax.__version__}'
  run('vidjax-train', '--config=npair:smoke', '--workdir=run', '--config.total_steps=2')
  with open(elsewhere / 'run' / 'config.json') as f:
    saved = json.load(f)
  assert saved['vidjax_version'] == vidjax.__version__ and saved['method'] == 'npair'
  installed = run('python', '-c', 'import vidjax; print(vidjax.__file__)').stdout
  assert str(venv) in installed  # The package, not this checkout.
