"""Timing helpers shared by the ``experiments/bench_*.py`` scripts."""

from __future__ import annotations

import os
import platform
import time

import jax


def timed(fn, *args) -> float:
  """Seconds of one call of ``fn(*args)``, waiting for its device results."""
  t = time.perf_counter()
  jax.block_until_ready(fn(*args))
  return time.perf_counter() - t


def machine() -> str:
  """One line naming the processor, core count, jax version and backend."""
  return (
    f'machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, '
    f'jax {jax.__version__}, backend {jax.default_backend()}'
  )
