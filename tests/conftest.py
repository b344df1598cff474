"""Test-session set-up shared by every test file."""

from __future__ import annotations

import os

import pytest


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
