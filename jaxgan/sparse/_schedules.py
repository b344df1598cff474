"""Schedules of dynamic sparse training: drop fraction and update steps.

Steps are counted as in :class:`~jaxgan.state.GANState`: ``t`` = iterations
done (``state.step`` after the step), which is the reference's 1-based
iteration number (its loop runs ``curr_iter = 1 .. max_iter``).
"""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp


def cosine_drop_fraction(
  step: Any, total_steps: int, initial: float = 0.5, final: float = 0.005
) -> Any:
  """``final + (initial - final) * (1 + cos(pi * t / T)) / 2``, ``t`` in ``[0, T]``.

  The reference's schedule (PyTorch ``CosineAnnealingLR`` with
  ``eta_min=final`` stepped once per G update): ``f(0) =
  initial``, ``f(T/2) = (initial + final) / 2``, ``f(T) = final``. Works on
  Python numbers (returns a float) and on traced steps (returns float32).

  Args:
    step: iterations done ``t`` (int or traced int).
    total_steps: ``T`` (the run's length).
    initial: ``f(0)`` (G: 0.5; strict-mode D DST: 0.5).
    final: the floor (0.005; RigL's cosine decays to 0).
  """
  if total_steps <= 0:
    raise ValueError(f'total_steps must be positive, got {total_steps}.')
  if isinstance(step, int | float):
    t = min(max(float(step), 0.0), float(total_steps))
    return final + (initial - final) * (1.0 + math.cos(math.pi * t / total_steps)) / 2.0
  t = jnp.clip(jnp.asarray(step, jnp.float32), 0.0, float(total_steps))
  return final + (initial - final) * (1.0 + jnp.cos(jnp.pi * t / total_steps)) / 2.0


def is_update_step(
  step: int, every: int, *, total_steps: int | None = None, end_step: int | None = None
) -> bool:
  """Host-side: is ``t`` a mask-update iteration?

  True when ``t > 0``, ``t % every == 0``, ``t != total_steps`` (the reference
  never updates at the last iteration) and ``t <= end_step`` (if given;
  RigL stops updating at 75% of training).
  """
  if every <= 0:
    raise ValueError(f'update interval must be positive, got {every}.')
  step = int(step)
  if step <= 0 or step % every:
    return False
  if total_steps is not None and step == total_steps:
    return False
  return end_step is None or step <= end_step
