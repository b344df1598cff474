"""The README's functional-API example runs as printed."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / 'README.md'


def _functional_api_block() -> str:
  text = README.read_text()
  section = text.split('## The functional API', 1)[1]
  blocks = re.findall(r'```python\n(.*?)```', section, flags=re.S)
  assert blocks, 'README: no python block under "## The functional API"'
  return blocks[0]


def test_functional_api_example_runs():
  real_images = np.random.default_rng(0).uniform(-1, 1, (8, 28, 28, 1)).astype(np.float32)
  scope = {'real_images': real_images}
  exec(compile(_functional_api_block(), str(README), 'exec'), scope)
  state, metrics = scope['state'], scope['metrics']
  assert int(state.step) == 1
  assert metrics and all(np.isfinite(float(v)) for v in metrics.values())
