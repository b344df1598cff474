"""The README's functional-API example runs as printed, on the data it names, and trains the EMA."""

from __future__ import annotations

import re
from pathlib import Path

import jax
import numpy as np

README = Path(__file__).resolve().parents[1] / 'README.md'


def _functional_api_block() -> str:
  text = README.read_text()
  section = text.split('## The functional API', 1)[1]
  blocks = re.findall(r'```python\n(.*?)```', section, flags=re.S)
  assert blocks, 'README: no python block under "## The functional API"'
  return blocks[0]


def test_functional_api_example_runs():
  scope: dict = {}  # nothing injected: the block loads its own images
  exec(compile(_functional_api_block(), str(README), 'exec'), scope)
  state, metrics, samples = scope['state'], scope['metrics'], scope['samples']
  assert int(state.step) == 2
  assert metrics and all(np.isfinite(float(v)) for v in metrics.values())
  assert samples.shape == (16, 28, 28, 1) and float(np.abs(samples).max()) <= 1.0
  # The EMA generator moved from the initial G (it is trained) and lags behind G.
  initial = scope['create_state'](
    jax.random.PRNGKey(0),
    g_module=scope['g'],
    d_module=scope['d'],
    g_tx=scope['g_tx'],
    d_tx=scope['d_tx'],
    latent_dim=100,
    image_shape=(28, 28, 1),
  )
  ema, g0, g2 = (jax.tree.leaves(t) for t in (state.ema_params, initial.g.params, state.g.params))
  assert any(not np.array_equal(e, a) for e, a in zip(ema, g0))
  assert any(not np.array_equal(e, b) for e, b in zip(ema, g2))
