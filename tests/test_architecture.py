"""The import rules of ``docs/ARCHITECTURE.md``: its layer table, checked on every module of jaxgan/.

The table in the doc is the only copy of the rules; this file parses it, parses the imports of
every module with ``ast`` (imports inside functions included) and reports each import the table
does not allow.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = '| layer | modules | may import |'


def read_layers(doc: str) -> dict[str, tuple[list[str], set[str]]]:
  """``{layer: (module names, layers it may import)}`` from the doc's layer table."""
  lines = doc.splitlines()
  start = lines.index(HEADER) + 2  # skip the header and the |---| row
  layers = {}
  for line in lines[start:]:
    if not line.startswith('|'):
      break
    layer, modules, allowed = (cell.strip() for cell in line.strip('|').split('|'))
    layers[layer] = ([m.strip('`') for m in modules.split()], set(allowed.split()))
  return layers


def module_name(path: Path, library: Path) -> str:
  """``jaxgan/sparse/ddst.py`` -> ``'jaxgan.sparse.ddst'`` (a package is its ``__init__``)."""
  parts = list(path.relative_to(library.parent).with_suffix('').parts)
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def _exists(dotted: str, library: Path) -> bool:
  path = library.parent.joinpath(*dotted.split('.'))
  return path.with_suffix('.py').is_file() or (path / '__init__.py').is_file()


def imports_of(path: Path, library: Path) -> list[tuple[int, str]]:
  """``[(line, imported module)]`` of a file; ``from pkg import name`` is ``pkg.name`` when
  that is a module, else ``pkg``."""
  here = module_name(path, library)
  package = here if path.name == '__init__.py' else here.rpartition('.')[0]
  found = []
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      found += [(node.lineno, alias.name) for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:
        anchor = package.split('.')[: len(package.split('.')) - node.level + 1]
        base = '.'.join(anchor + ([base] if base else []))
      for alias in node.names:
        full = f'{base}.{alias.name}'
        found.append((node.lineno, full if _exists(full, library) else base))
  return found


def unit_of(module: str, layers: dict) -> tuple[str, str] | None:
  """``(layer, unit)`` of a ``jaxgan`` module, by the longest table name that covers it.

  A name covers its module or package; ``pkg.*`` covers the modules of ``pkg`` (not ``pkg``
  itself), each of them a unit of its own.
  """
  best = None
  for layer, (names, _) in layers.items():
    for name in names:
      dotted = 'jaxgan' if name == '__init__' else f'jaxgan.{name.removesuffix(".*")}'
      if name.endswith('.*'):
        covers = module.startswith(dotted + '.')
        unit = '.'.join(module.split('.')[: dotted.count('.') + 2])
      else:
        covers = module == dotted or (name != '__init__' and module.startswith(dotted + '.'))
        unit = name
      if covers and (best is None or len(dotted) > len(best[2])):
        best = (layer, unit, dotted)
  return None if best is None else best[:2]


def violations(library: Path, doc: str) -> list[str]:
  """Every import of ``library`` that the layer table of ``doc`` does not allow."""
  layers = read_layers(doc)
  problems = []
  for path in sorted(library.rglob('*.py')):
    where = path.relative_to(library.parent)
    me = unit_of(module_name(path, library), layers)
    if me is None:
      problems.append(f'{where}: in no row of the layer table; add it to its layer.')
      continue
    for line, target in imports_of(path, library):
      top = target.split('.')[0]
      if top == 'experiments':
        problems.append(f'{where}:{line} imports {target}: library code never imports experiments.')
      if top != 'jaxgan':
        continue
      other = unit_of(target, layers)
      if other is None or other[1] == me[1] or other[0] in layers[me[0]][1]:
        continue
      problems.append(
        f'{where}:{line} imports {target} ({other[0]} layer): the {me[0]} layer may import '
        f'only {sorted(layers[me[0]][1]) or "nothing of jaxgan"}.'
      )
  return problems


def test_jaxgan_follows_the_layer_table():
  doc = (ROOT / 'docs' / 'ARCHITECTURE.md').read_text()
  problems = violations(ROOT / 'jaxgan', doc)
  assert not problems, 'imports that break docs/ARCHITECTURE.md:\n' + '\n'.join(problems)


def test_the_check_reports_each_kind_of_violation(tmp_path):
  """A small tree with one violation of each rule (and allowed imports) next to its table."""
  doc = textwrap.dedent("""\
    | layer | modules | may import |
    |---|---|---|
    | core | `steps` | core |
    | techniques | `dat` `sparse` | core |
    | wiring | `wiring.*` | techniques core |
    | program | `train` `wiring` | program wiring techniques core |
    """)
  files = {
    '__init__.py': '',
    'steps.py': 'def f():\n  from jaxgan import dat\n',
    'dat.py': 'from jaxgan import steps\nfrom jaxgan.sparse import masks\n',
    'sparse/__init__.py': 'from . import masks\nfrom .masks import apply\n',
    'sparse/masks.py': 'import jaxgan.steps\n',
    'train.py': 'import jaxgan.dat\nimport experiments.configs\n',
    'loose.py': '',
    'wiring/__init__.py': 'from jaxgan.wiring import dat, sparse\n',
    'wiring/dat.py': 'def build():\n  from jaxgan import dat\n',
    'wiring/sparse.py': 'from jaxgan.wiring import dat\n',
  }
  for name, text in files.items():
    path = tmp_path / 'jaxgan' / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
  problems = violations(tmp_path / 'jaxgan', doc)
  expected = [
    'jaxgan/__init__.py: in no row',
    'jaxgan/dat.py:2 imports jaxgan.sparse.masks (techniques layer)',
    'jaxgan/loose.py: in no row',
    'jaxgan/steps.py:2 imports jaxgan.dat (techniques layer): the core layer',
    'jaxgan/train.py:2 imports experiments.configs',
    'jaxgan/wiring/sparse.py:1 imports jaxgan.wiring.dat (wiring layer): the wiring layer',
  ]
  assert len(problems) == len(expected), problems
  for problem, start in zip(problems, expected, strict=True):
    assert problem.startswith(start), (problem, start)
