"""Test-session set-up shared by every test file."""

from __future__ import annotations

import os
import tempfile

import jax
import pytest

# Many tests compile the same small steps; a persistent XLA cache shared by the xdist
# workers (and the subprocess tests, through the environment) compiles each once.
_XLA_CACHE = {
  'jax_compilation_cache_dir': os.path.join(
    tempfile.gettempdir(), f'jaxgan-tests-xla-cache-{os.getuid()}'
  ),
  'jax_persistent_cache_min_compile_time_secs': 0.2,
  'jax_persistent_cache_min_entry_size_bytes': 0,
}
for _name, _value in _XLA_CACHE.items():
  _value = os.environ.setdefault(_name.upper(), str(_value))
  jax.config.update(_name, type(_XLA_CACHE[_name])(_value))


@pytest.fixture(scope='session', autouse=True)
def _isolated_data_dir(tmp_path_factory):
  """Datasets and cached classifiers go to a temporary directory, not ~/.cache/jaxgan.

  Set through the environment so that subprocess tests (resume after SIGKILL,
  the two-process run) use the same directory. Tests of the default location
  override it themselves.
  """
  previous = os.environ.get('JAXGAN_DATA_DIR')
  os.environ['JAXGAN_DATA_DIR'] = str(tmp_path_factory.mktemp('jaxgan_data'))
  yield
  if previous is None:
    os.environ.pop('JAXGAN_DATA_DIR', None)
  else:
    os.environ['JAXGAN_DATA_DIR'] = previous
