"""The balance ratio (BR) of DDST/ADAPT and its FIFO window.

Per measured iteration the step reports three means, all with D after its
update of the iteration (Wang et al., NeurIPS 2023): ``df = mean D(G_pre(z))`` (from G's loss
forward), ``gf = mean D(G_post(z))`` (same ``z``, after G's update) and ``dr =
mean D(last real batch)``. One entry's ratio is ``(gf - df) / (dr - df)``:
how much of D's real/fake gap one G step closes. BR is the **mean of the
per-entry ratios** over the window (not a ratio of means; no epsilon).

The window is the reference's ``deque``: an entry is appended every
``br_freq`` iterations, and at the end of each iteration, *after* the D
controller, the queue is cut to its ``capacity`` Q (= ``da_iters //
br_freq``, 100). So the controller of an iteration that also pushed sees up
to Q + 1 entries. :class:`BRWindow` reproduces this with a ring buffer of
Q + 1 slots: :func:`push` drops the oldest entry only when Q + 1 are held
(the cut of the previous iteration), and :func:`window_view` counts at most
Q entries unless the newest one was pushed at the step being asked about.

Everything is a fixed-shape pytree (checkpointable, jit-able).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array
ESTIMATORS = ('mean_of_ratios', 'ratio_of_means')


class BRWindow(NamedTuple):
  """Ring buffer of ``(gf, df, dr)`` triples.

  Attributes:
    entries: ``[Q + 1, 3]`` float32 slots (columns gf, df, dr).
    count: number of held entries (int32, ``<= Q + 1``).
    head: slot of the oldest held entry (int32).
    last_push: step of the newest entry (int32; -1 when empty).
  """

  entries: Array
  count: Array
  head: Array
  last_push: Array

  @property
  def capacity(self) -> int:
    """Q, the window length the reference keeps between iterations."""
    return self.entries.shape[0] - 1


def init_window(capacity: int) -> BRWindow:
  """An empty window of capacity Q (``da_iters // br_freq``; 100 in the reference)."""
  if not isinstance(capacity, int) or capacity < 1:
    raise ValueError(
      f'window capacity must be a positive int, got {capacity!r} (da_iters // br_freq).'
    )
  return BRWindow(
    entries=jnp.zeros((capacity + 1, 3), jnp.float32),
    count=jnp.zeros((), jnp.int32),
    head=jnp.zeros((), jnp.int32),
    last_push=jnp.full((), -1, jnp.int32),
  )


def push(window: BRWindow, gf: Any, df: Any, dr: Any, step: Any) -> BRWindow:
  """Appends ``(gf, df, dr)`` measured at iteration ``step`` (jit-able).

  If Q + 1 entries are held (the previous iteration's cut was deferred), the
  oldest is dropped first.
  """
  slots = window.entries.shape[0]
  full = window.count >= slots
  head = jnp.where(full, (window.head + 1) % slots, window.head)
  count = jnp.where(full, window.count - 1, window.count)
  slot = (head + count) % slots
  row = jnp.stack([jnp.asarray(v, jnp.float32) for v in (gf, df, dr)])
  return BRWindow(
    entries=window.entries.at[slot].set(row),
    count=count + 1,
    head=head,
    last_push=jnp.asarray(step, jnp.int32),
  )


def push_if_due(window: BRWindow, gf: Any, df: Any, dr: Any, step: Any, br_freq: int) -> BRWindow:
  """:func:`push` when ``step % br_freq == 0`` (traced condition), else unchanged."""
  pushed = push(window, gf, df, dr, step)
  due = jnp.asarray(step, jnp.int32) % br_freq == 0
  return jax.tree.map(lambda a, b: jnp.where(due, a, b), pushed, window)


def window_view(window: BRWindow, step: Any) -> tuple[Array, Array]:
  """The entries the reference's queue holds at ``step``'s controller.

  Returns:
    ``(entries [Q + 1, 3], valid [Q + 1] bool)``; ``valid`` marks the newest
    ``min(count, Q + [last_push == step])`` entries.
  """
  slots = window.entries.shape[0]
  extra = (window.last_push == jnp.asarray(step, jnp.int32)).astype(jnp.int32)
  n = jnp.minimum(window.count, window.capacity + extra)
  # age 0 = newest entry.
  age = (window.head + window.count - 1 - jnp.arange(slots, dtype=jnp.int32)) % slots
  return window.entries, age < n


def window_size(window: BRWindow, step: Any) -> Array:
  """How many entries the reference's queue holds at ``step`` (int32)."""
  return jnp.sum(window_view(window, step)[1], dtype=jnp.int32)


def balance_ratio(window: BRWindow, step: Any, estimator: str = 'mean_of_ratios') -> Array:
  """BR over the window as seen at ``step`` (float32; NaN when empty).

  Args:
    window: the BR window.
    step: the current iteration (decides whether the deferred cut applies).
    estimator: ``'mean_of_ratios'`` (the reference: mean of
      ``(gf - df) / (dr - df)``) or ``'ratio_of_means'`` (a robust variant:
      ``(mean gf - mean df) / (mean dr - mean df)``).
  """
  if estimator not in ESTIMATORS:
    raise ValueError(f'estimator must be one of {ESTIMATORS}, got {estimator!r}.')
  entries, valid = window_view(window, step)
  gf, df, dr = entries[:, 0], entries[:, 1], entries[:, 2]
  n = jnp.sum(valid).astype(jnp.float32)
  if estimator == 'mean_of_ratios':
    ratios = jnp.where(valid, (gf - df) / jnp.where(valid, dr - df, 1.0), 0.0)
    return jnp.sum(ratios) / n

  def mean(x):
    return jnp.sum(jnp.where(valid, x, 0.0)) / n

  return (mean(gf) - mean(df)) / (mean(dr) - mean(df))


def entry_ratio(gf: Any, df: Any, dr: Any) -> Array:
  """One entry's ratio ``(gf - df) / (dr - df)`` (for logging)."""
  return (jnp.asarray(gf) - df) / (jnp.asarray(dr) - df)
