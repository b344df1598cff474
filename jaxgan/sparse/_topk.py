"""Exact top-k selection with a traced ``k``.

Prune and regrow need "the k largest scores among these candidates" with ``k``
known only at run time (it follows the alive count and the drop fraction), an
exact count whatever the ties (many zero gradients tie at 0), and no
recompilation when ``k`` changes. ``lax.top_k`` needs a static ``k``, and a
threshold on the k-th value keeps every tie; so the selection here ranks all
entries with one stable sort and keeps ranks below ``k``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def topk_mask(scores: Array, candidates: Array | None, k: Array | int) -> Array:
  """The ``k`` candidates with the largest scores, as a boolean mask.

  Ties are broken by position (lower flat index first), so exactly
  ``min(k, number of candidates)`` entries are selected. ``k`` may be a traced
  integer: one compilation serves every ``k``.

  Args:
    scores: ``[N]`` finite scores (any float dtype).
    candidates: ``[N]`` bool, the entries that may be selected (``None``:
      all).
    k: how many to select (clipped to ``[0, N]``).

  Returns:
    ``[N]`` bool with ``min(k, sum(candidates))`` entries set.
  """
  if scores.ndim != 1:
    raise ValueError(
      f'topk_mask takes flat scores [N], got shape {scores.shape}; pass scores.ravel().'
    )
  n = scores.shape[0]
  if candidates is None:
    candidates = jnp.ones((n,), jnp.bool_)
  # + 0.0 turns -0.0 into +0.0 so that equal magnitudes tie (sort order is total).
  keyed = jnp.where(candidates, scores + 0.0, -jnp.inf)
  order = jnp.argsort(-keyed, stable=True)
  ranks = jnp.zeros((n,), jnp.int32).at[order].set(jnp.arange(n, dtype=jnp.int32))
  return (ranks < jnp.asarray(k, jnp.int32)) & candidates
