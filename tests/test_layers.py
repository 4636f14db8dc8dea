"""The import graph of vidjax/: no cycles, and no import from a lower layer to a higher one.

Walks every module's imports (function-level ones included) with `ast`, without importing
anything, so a cycle hidden behind a lazy import is found too.
"""
import ast
from pathlib import Path

VIDJAX = Path(__file__).resolve().parents[1] / 'vidjax'

# A module may import modules of its own layer or lower ones; the first prefix that
# matches a module's name gives its layer.
LAYERS = [
    ('vidjax.errors', 0), ('vidjax.atomic', 0), ('vidjax.config_defaults', 0), ('vidjax.cli', 0),
    ('vidjax.hog', 0), ('vidjax.disk_space', 0), ('vidjax.writer_lock', 0),
    ('vidjax.data', 1), ('vidjax.models', 1), ('vidjax.losses', 1), ('vidjax.optim', 1),
    ('vidjax.parallel', 1), ('vidjax.multihost', 1), ('vidjax.metrics_log', 1),
    ('vidjax.step', 2), ('vidjax.checkpointing', 2), ('vidjax.config_checks', 2),
    ('vidjax.workdir', 3), ('vidjax.evaluate', 3),
    ('vidjax.train', 4), ('vidjax.train_command', 4), ('vidjax.prepare', 4), ('vidjax.world', 4),
    ('vidjax.evaluate.__main__', 4),
    ('vidjax.index', 4),  # The corpus index builds on the evaluator's encoders.
    ('vidjax.export', 4),  # Takes a trained encoder out.
    ('vidjax.search', 5),  # Queries an index.
    ('vidjax.labels', 6),  # Labels what a search finds.
    ('vidjax.serve', 7),  # Search and labelling over HTTP.
]


def _layer(module: str) -> int:
  if module == 'vidjax':
    return 0  # The package's __init__: its version string and nothing else.
  matches = [(len(prefix), layer) for prefix, layer in LAYERS
             if module == prefix or module.startswith(prefix + '.')]
  assert matches, f'{module} has no layer in tests/test_layers.py'
  return max(matches)[1]  # The longest prefix decides.


def _modules() -> dict:
  """{module name: path} for every module under vidjax/."""
  modules = {}
  for path in VIDJAX.rglob('*.py'):
    parts = path.relative_to(VIDJAX.parent).with_suffix('').parts
    name = '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)
    modules[name] = path
  return modules


def _imports(path: Path, modules: dict) -> set:
  """The vidjax modules a file imports (`from a import b` counts a.b when b is a module)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found |= {alias.name for alias in node.names if alias.name.startswith('vidjax')}
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('vidjax'):
      for alias in node.names:
        name = f'{node.module}.{alias.name}'
        found.add(name if name in modules else node.module)
  return found


def _graph() -> dict:
  modules = _modules()
  return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def test_no_import_cycles():
  graph = _graph()
  done, stack = set(), []

  def visit(module):
    if module in stack:
      raise AssertionError('import cycle: ' + ' -> '.join(stack[stack.index(module):] + [module]))
    if module in done:
      return
    stack.append(module)
    for imported in sorted(graph.get(module, ())):
      visit(imported)
    stack.pop()
    done.add(module)

  for module in sorted(graph):
    visit(module)


def test_imports_point_down():
  upward = [f'{module} (layer {_layer(module)}) imports {imported} (layer {_layer(imported)})'
            for module, imported_set in _graph().items() for imported in imported_set
            if _layer(imported) > _layer(module)]
  assert not upward, '\n'.join(upward)


def test_errors_imports_nothing_of_the_project():
  assert _graph()['vidjax.errors'] == set()
