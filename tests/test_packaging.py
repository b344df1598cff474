"""The package as pip builds and installs it: contents, metadata, console script, extras."""

from __future__ import annotations

import email
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import jaxgan
from jaxgan._version import __version__

ROOT = Path(__file__).resolve().parents[1]
CORE = {'jax', 'flax', 'optax', 'chex', 'numpy'}
# Modules of the training program; everything else in jaxgan is the library.
PROGRAM = {
  'jaxgan.cli',
  'jaxgan.config_checks',
  'jaxgan.train',
  'jaxgan.run_setup',
  'jaxgan.checkpoint',
  'jaxgan.workdir_lock',
}
# Top-level modules of the extras' distributions, which the library must not import.
EXTRA_MODULES = (
  'tensorflow_datasets',
  'array_record',
  'mlxtend',
  'sklearn',
  'PIL',
  'orbax',
  'ml_collections',
  'tensorboardX',
  'matplotlib',
  'tqdm',
  'grain',
  'torch',
  'tensorflow',
)


def library_modules() -> list[str]:
  names = [m.name for m in pkgutil.walk_packages(jaxgan.__path__, 'jaxgan.')]
  return sorted(n for n in names if n not in PROGRAM)


def _clean_env() -> dict:
  """The environment without PYTHONPATH, so a checkout on it cannot shadow an installed copy."""
  return {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}


@pytest.fixture(scope='module')
def wheel(tmp_path_factory) -> Path:
  """The wheel pip builds from a copy of the checkout (no build files left in the repository)."""
  tmp = tmp_path_factory.mktemp('wheel')
  src = tmp / 'src'
  src.mkdir()
  for name in ('pyproject.toml', 'README.md', 'LICENSE'):
    shutil.copy(ROOT / name, src / name)
  for name in ('jaxgan', 'experiments'):
    shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns('__pycache__'))
  subprocess.run(
    [sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-w', tmp, src],
    check=True,
    capture_output=True,
    env=_clean_env(),
    timeout=600,
  )
  (path,) = tmp.glob('jaxgan-*.whl')
  return path


def _metadata(wheel: Path) -> email.message.Message:
  with zipfile.ZipFile(wheel) as z:
    return email.message_from_bytes(z.read(f'jaxgan-{__version__}.dist-info/METADATA'))


def test_the_wheel_holds_the_library_and_no_experiments_package(wheel):
  with zipfile.ZipFile(wheel) as z:
    names = z.namelist()
    entry_points = z.read(f'jaxgan-{__version__}.dist-info/entry_points.txt').decode()
  assert {n.split('/')[0] for n in names} == {'jaxgan', f'jaxgan-{__version__}.dist-info'}
  sources = {str(p.relative_to(ROOT)) for p in (ROOT / 'jaxgan').rglob('*.py')}
  assert sources <= set(names), sorted(sources - set(names))
  assert re.search(r'^jaxgan-train = jaxgan\.cli:main$', entry_points, re.M)
  assert f'jaxgan-{__version__}.dist-info/licenses/LICENSE' in names


def test_metadata_core_dependencies_extras_version_license(wheel):
  meta = _metadata(wheel)
  assert meta['Version'] == __version__ == '0.2.0'
  assert meta['License-Expression'] == 'Apache-2.0'
  requires = meta.get_all('Requires-Dist')
  core = {re.split(r'[<>=\[ ;]', r)[0] for r in requires if 'extra ==' not in r}
  assert core == CORE
  assert set(meta.get_all('Provides-Extra')) == {'data', 'train', 'all', 'test', 'bench', 'prepare'}

  def extra(name):
    return {re.split(r'[<>=\[ ;]', r)[0] for r in requires if f'extra == "{name}"' in r}

  assert {'tensorflow-datasets', 'array_record', 'mlxtend', 'scikit-learn'} <= extra('data')
  assert {'orbax-checkpoint', 'ml_collections', 'tensorboardX', 'matplotlib', 'tqdm'} <= extra(
    'train'
  )
  assert 'jaxgan' in extra('train') and 'jaxgan' in extra('all') and 'jaxgan' in extra('test')


def test_installed_wheel_runs_outside_the_checkout(wheel, tmp_path):
  """A non-editable install: ``jaxgan`` from site-packages, the script, no ``experiments``."""
  venv = tmp_path / 'venv'
  subprocess.run([sys.executable, '-m', 'venv', '--without-pip', venv], check=True, timeout=120)
  python = venv / 'bin' / 'python'
  subprocess.run(
    [sys.executable, '-m', 'pip', '--python', python, 'install', '--no-deps', '--no-index', wheel],
    check=True,
    capture_output=True,
    env=_clean_env(),
    timeout=300,
  )
  site = Path(
    subprocess.run(
      [python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
      check=True,
      capture_output=True,
      text=True,
    ).stdout.strip()
  )
  assert not (site / 'experiments').exists()
  # The dependencies come from this test environment, appended after the new site-packages.
  deps = subprocess.run(
    [sys.executable, '-c', 'import jax, os; print(os.path.dirname(os.path.dirname(jax.__file__)))'],
    check=True,
    capture_output=True,
    text=True,
    env=_clean_env(),
  ).stdout.strip()
  (site / 'test_deps.pth').write_text(deps + '\n')
  probe = (
    'import importlib.util, jaxgan, jaxgan.onestage, jaxgan.cli\n'
    'print(jaxgan.__file__)\n'
    "print(importlib.util.find_spec('experiments'))\n"
  )
  out = subprocess.run(
    [python, '-c', probe], cwd=tmp_path, env=_clean_env(), capture_output=True, text=True
  )
  assert out.returncode == 0, out.stderr[-2000:]
  path, experiments = out.stdout.split()
  assert Path(path).is_relative_to(site) and experiments == 'None'
  script = subprocess.run(
    [venv / 'bin' / 'jaxgan-train', '--help'],
    cwd=tmp_path,
    env=_clean_env(),
    capture_output=True,
    text=True,
    timeout=300,
  )
  # The script starts and prints its usage (the exit code of --help is the command line's own).
  assert 'Traceback' not in script.stderr, script.stderr[-2000:]
  assert 'jaxgan-train' in script.stdout + script.stderr


def test_the_library_imports_none_of_the_extras():
  """``import jaxgan.<module>`` of every library module loads no optional dependency."""
  code = (
    'import importlib, sys\n'
    f'for name in {library_modules()!r}:\n'
    '  importlib.import_module(name)\n'
    f'print(sorted({{m.split(".")[0] for m in sys.modules}} & set({EXTRA_MODULES!r})))\n'
  )
  out = subprocess.run(
    [sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, timeout=300
  )
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip() == '[]'


def test_ci_runs_the_readme_test_command():
  readme = (ROOT / 'README.md').read_text()
  commands = re.findall(r'```bash\n(.*?)\n```', readme.split('## Install')[0], flags=re.S)
  assert len(commands) == 2
  quickstart, tests = commands
  assert "pip install -e '.[all]'" in quickstart and "pip install -e '.[test]'" in tests
  assert tests in (ROOT / '.ci' / 'run').read_text().splitlines()


@pytest.mark.slow
def test_fresh_venv_installs_from_pypi(wheel, tmp_path):
  """``pip install jaxgan`` (core) runs the library; ``[all]`` adds the program. Needs PyPI."""
  venv = tmp_path / 'venv'
  subprocess.run([sys.executable, '-m', 'venv', venv], check=True, timeout=300)
  pip, python = venv / 'bin' / 'pip', venv / 'bin' / 'python'
  env = _clean_env()
  subprocess.run([pip, 'install', '-q', wheel], check=True, env=env, timeout=1800)
  code = (
    'import importlib, sys\n'
    f'for name in {library_modules()!r}:\n'
    '  importlib.import_module(name)\n'
    'try:\n'
    '  import jaxgan.train\n'
    'except ImportError as e:\n'
    '  print("program needs", e.name)\n'
  )
  out = subprocess.run([python, '-c', code], cwd=tmp_path, env=env, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-2000:]
  assert 'program needs' in out.stdout
  subprocess.run([pip, 'install', '-q', f'{wheel}[all]'], check=True, env=env, timeout=1800)
  out = subprocess.run(
    [python, '-c', 'import jaxgan.train, jaxgan.data; print("ok")'],
    cwd=tmp_path,
    env=env,
    capture_output=True,
    text=True,
  )
  assert out.stdout.strip() == 'ok', out.stderr[-2000:]
