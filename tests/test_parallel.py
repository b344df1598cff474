"""Multi-device equivalence on 2 forced CPU devices (run in a subprocess)."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxgan import parallel


def test_sharded_and_pmap_steps_equal_single_device():
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2', JAX_PLATFORMS='cpu')
  here = Path(__file__).parent
  out = subprocess.run(
    [sys.executable, str(here / 'parallel_check.py')],
    cwd=here,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert 'PARALLEL_OK' in out.stdout, out.stdout + out.stderr


def test_batch_that_does_not_divide_is_refused():
  mesh = parallel.make_mesh()
  parallel.check_global_batch(8 * mesh.devices.size, mesh)
  three = parallel.make_mesh([jax.devices()[0]] * 1)
  with pytest.raises(
    ValueError, match=r'does not divide over 3 devices; use a multiple of 3 \(e.g. 9\)'
  ):
    parallel.check_global_batch(8, three.__class__(np.array(jax.devices()[:1] * 3), ('data',)))
