"""The package surface: ``import jaxgan`` loads only the core dependencies; one version."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from test_packaging import EXTRA_MODULES

import jaxgan
from jaxgan import _version

ROOT = Path(__file__).resolve().parents[1]


def test_import_jaxgan_loads_only_the_core_dependencies():
  """Every public name of ``jaxgan`` loads JAX, Flax, optax and NumPy, and no extra."""
  code = (
    'import json, sys; import jaxgan; [getattr(jaxgan, name) for name in jaxgan.__all__]; '
    'print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))'
  )
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
  loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
  assert {'jax', 'flax', 'optax', 'numpy', 'jaxgan'} <= loaded
  extras = loaded & set(EXTRA_MODULES)
  assert not extras, f'import jaxgan loaded the optional {sorted(extras)}'


def test_one_version_and_typed():
  assert jaxgan.__version__ == _version.__version__
  assert re.fullmatch(r'\d+\.\d+\.\d+', jaxgan.__version__)
  assert (ROOT / 'jaxgan' / 'py.typed').is_file()
  assert "__version__ = '" in (ROOT / 'jaxgan' / '_version.py').read_text()


def test_public_names_and_lazy_submodules():
  for name in jaxgan.__all__:
    assert getattr(jaxgan, name) is not None, name
  assert jaxgan.models.get_models is not None  # imported on first access
  assert 'models' in dir(jaxgan)
  step = jaxgan.one_stage_step
  assert step is jaxgan.onestage.one_stage_step
