"""Prune and regrow: pure, jit-compiled, exact in count, with traced counts.

Mask-level primitives: :func:`prune_by_magnitude` (remove the ``k`` alive weights of smallest
``|w|``), :func:`grow_by_score` (revive the ``k`` dead positions of largest score: ``|grad|`` for
RigL, uniform noise for SET), :func:`dst_masks` (prune ``floor(f * n_alive)``, then grow as many
among the positions dead after the prune, the DDST reference's rule) and :func:`set_count_masks`
(grow or prune to an exact count). ``scope='global'`` ranks across all masked leaves (the
reference), ``scope='layer'`` inside each leaf (RigL, jaxpruner). Ties are broken by position, so
counts are exact; counts and fractions may be traced, so nothing recompiles when they change.

Player-level functions (:func:`dst_update`, :func:`set_density`) read and write the masks in the
player's optimizer state (:func:`jaxgan.sparse.masked_optimizer`), zero the pruned weights, start
the grown ones at exactly 0 and optionally zero their optimizer moments (``reset_moments``; the
reference leaves them). ``docs/TECHNIQUES.md`` (Sparse training).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxgan.sparse._masks import check_masks, is_none, map_masked, num_maskable
from jaxgan.sparse._optimizer import find_mask_state, replace_masks
from jaxgan.sparse._topk import topk_mask
from jaxgan.state import Player

PyTree = Any
Array = jax.Array
REGROW = ('gradient', 'random')
SCOPES = ('global', 'layer')


# ----------------------------------------------------------------------------
# Selection over the masked leaves of a tree
# ----------------------------------------------------------------------------


def _masked_leaves(masks: PyTree, tree: PyTree) -> list:
  """Leaves of ``tree`` at the masked positions of ``masks`` (flattening order)."""
  out = []
  for m, x in zip(jax.tree.leaves(masks, is_leaf=is_none), jax.tree.leaves(tree, is_leaf=is_none)):
    if m is not None:
      out.append(x)
  return out


def _rebuild(masks: PyTree, new_leaves: list) -> PyTree:
  it = iter(new_leaves)
  return jax.tree.map(lambda m: None if m is None else next(it), masks, is_leaf=is_none)


def _count_leaves(masks: PyTree, counts: Any) -> list:
  """Per-leaf counts for ``scope='layer'``: a scalar for all, or a tree/list."""
  n = len(_masked_leaves(masks, masks))
  if isinstance(counts, list | tuple):
    leaves = list(counts)
  elif isinstance(counts, int | float) or getattr(counts, 'ndim', None) == 0:
    leaves = [counts] * n
  else:
    leaves = _masked_leaves(masks, counts)
  if len(leaves) != n:
    raise ValueError(f'scope="layer" needs one count per masked leaf ({n}), got {len(leaves)}.')
  return leaves


def _select(scores: list, candidates: list, k: Any, scope: str) -> list:
  """Top-``k`` of ``scores`` among ``candidates``, globally or per leaf."""
  if scope == 'layer':
    return [
      topk_mask(s.ravel(), c.ravel(), kl).reshape(c.shape)
      for s, c, kl in zip(scores, candidates, k)
    ]
  flat_s = jnp.concatenate([s.ravel().astype(jnp.float32) for s in scores])
  flat_c = jnp.concatenate([c.ravel() for c in candidates])
  sel = topk_mask(flat_s, flat_c, k)
  out, start = [], 0
  for c in candidates:
    size = math.prod(c.shape)
    out.append(sel[start : start + size].reshape(c.shape))
    start += size
  return out


def _alive(mask_leaves: list, scope: str):
  counts = [jnp.sum(m, dtype=jnp.int32) for m in mask_leaves]
  return counts if scope == 'layer' else sum(counts, jnp.zeros((), jnp.int32))


def _check_scope(scope: str) -> None:
  if scope not in SCOPES:
    raise ValueError(
      f"scope must be one of {SCOPES}, got {scope!r} ('global' is the reference's ranking)."
    )


def _check_regrow(regrow: str, key) -> None:
  if regrow not in REGROW:
    raise ValueError(
      f"regrow must be one of {REGROW} ('gradient' = RigL, 'random' = SET), got {regrow!r}."
    )
  if regrow == 'random' and key is None:
    raise ValueError("regrow='random' (SET) draws random scores: pass key=jax.random.PRNGKey(...).")


def prune_by_magnitude(params: PyTree, masks: PyTree, k: Any, *, scope: str = 'global') -> PyTree:
  """Removes the ``k`` alive weights of smallest ``|w|``.

  Args:
    params: the params (mirrors ``masks``).
    masks: current mask tree.
    k: number to remove; a scalar for ``scope='global'``; for
      ``scope='layer'`` a scalar (same for every leaf) or one per masked leaf
      (a list, or a tree mirroring the masks). May be traced.
    scope: ``'global'`` (rank across all leaves) or ``'layer'``.

  Returns:
    The new mask tree, a subset of ``masks`` with exactly ``k`` fewer alive
    (clipped at zero alive).
  """
  _check_scope(scope)
  m = _masked_leaves(masks, masks)
  w = _masked_leaves(masks, params)
  alive = _alive(m, scope)
  if scope == 'layer':
    keep = [jnp.maximum(a - kl, 0) for a, kl in zip(alive, _count_leaves(masks, k))]
  else:
    keep = jnp.maximum(alive - jnp.asarray(k, jnp.int32), 0)
  return _rebuild(masks, _select([jnp.abs(x) for x in w], m, keep, scope))


def grow_by_score(masks: PyTree, scores: PyTree, k: Any, *, scope: str = 'global') -> PyTree:
  """Makes alive the ``k`` dead positions with the largest ``scores``.

  Args:
    masks: current mask tree.
    scores: a tree mirroring the params (e.g. ``|grad|`` or uniform noise).
    k: number to add (as in :func:`prune_by_magnitude`).
    scope: ``'global'`` or ``'layer'``.

  Returns:
    The new mask tree, a superset of ``masks`` (exactly ``k`` more alive
    unless fewer dead positions exist).
  """
  _check_scope(scope)
  m = _masked_leaves(masks, masks)
  s = _masked_leaves(masks, scores)
  kk = _count_leaves(masks, k) if scope == 'layer' else k
  added = _select(s, [~x for x in m], kk, scope)
  return _rebuild(masks, [x | a for x, a in zip(m, added)])


def regrow_scores(masks: PyTree, grads: PyTree | None, regrow: str, key: Array | None) -> PyTree:
  """Grow scores: ``|grad|`` (``'gradient'``) or uniform noise (``'random'``)."""
  _check_regrow(regrow, key)
  if regrow == 'gradient':
    if grads is None:
      raise ValueError(
        "regrow='gradient' (RigL) ranks by |grad|: pass the dense gradient of the params."
      )
    return map_masked(lambda _, g: jnp.abs(g), masks, grads)
  leaves = jax.tree.leaves(masks, is_leaf=is_none)
  noise = [
    None if m is None else jax.random.uniform(jax.random.fold_in(key, i), m.shape)
    for i, m in enumerate(leaves)
  ]
  return jax.tree.unflatten(jax.tree.structure(masks, is_leaf=is_none), noise)


def drop_count(masks: PyTree, drop_fraction: Any, scope: str = 'global') -> Any:
  """``floor(f * n_alive)`` (global) or per leaf (list), as int32."""
  f = jnp.asarray(drop_fraction, jnp.float32)
  alive = _alive(_masked_leaves(masks, masks), scope)
  if scope == 'layer':
    return [jnp.floor(a.astype(jnp.float32) * f).astype(jnp.int32) for a in alive]
  return jnp.floor(alive.astype(jnp.float32) * f).astype(jnp.int32)


def dst_masks(
  params: PyTree,
  masks: PyTree,
  grads: PyTree | None,
  drop_fraction: Any,
  *,
  key: Array | None = None,
  regrow: str = 'gradient',
  scope: str = 'global',
) -> PyTree:
  """One prune-and-regrow exchange; the alive count is kept exactly.

  Prunes ``floor(f * n_alive)`` by magnitude (per leaf for ``'layer'``), then
  grows the same number among the positions dead after the prune.

  Args:
    params: the params (stored masked).
    masks: current mask tree.
    grads: dense gradient of the params (needed for ``regrow='gradient'``).
    drop_fraction: ``f`` in ``[0, 1]`` (may be traced).
    key: PRNG key (needed for ``regrow='random'``).
    regrow: ``'gradient'`` (RigL) or ``'random'`` (SET).
    scope: ``'global'`` (reference) or ``'layer'``.
  """
  _check_scope(scope)
  scores = regrow_scores(masks, grads, regrow, key)
  k = drop_count(masks, drop_fraction, scope)
  pruned = prune_by_magnitude(params, masks, k, scope=scope)
  return grow_by_score(pruned, scores, k, scope=scope)


def target_counts(masks: PyTree, density: Any, scope: str = 'global') -> Any:
  """``round(d * N)`` (global) or ``round(d_l * N_l)`` per leaf (list).

  For ``scope='layer'``, ``density`` is a scalar or a density tree.
  """
  if scope == 'layer':
    m = _masked_leaves(masks, masks)
    ds = _count_leaves(masks, density)
    return [
      jnp.round(jnp.asarray(d, jnp.float32) * math.prod(x.shape)).astype(jnp.int32)
      for d, x in zip(ds, m)
    ]
  return jnp.round(jnp.asarray(density, jnp.float32) * num_maskable(masks)).astype(jnp.int32)


def set_count_masks(
  params: PyTree,
  masks: PyTree,
  grads: PyTree | None,
  target: Any,
  *,
  key: Array | None = None,
  regrow: str = 'gradient',
  scope: str = 'global',
) -> PyTree:
  """Grows by score or prunes by magnitude to exactly ``target`` alive.

  Growing keeps every alive weight (superset); pruning only removes (subset).

  Args:
    params, masks, grads, key, regrow, scope: as in :func:`dst_masks`.
    target: alive count to reach (scalar for ``'global'``, one per leaf for
      ``'layer'``); may be traced.
  """
  _check_scope(scope)
  scores = regrow_scores(masks, grads, regrow, key)
  alive = _alive(_masked_leaves(masks, masks), scope)
  if scope == 'layer':
    t = _count_leaves(masks, target)
    k_prune = [jnp.maximum(a - x, 0) for a, x in zip(alive, t)]
    k_grow = [jnp.maximum(x - a, 0) for a, x in zip(alive, t)]
  else:
    t = jnp.asarray(target, jnp.int32)
    k_prune, k_grow = jnp.maximum(alive - t, 0), jnp.maximum(t - alive, 0)
  pruned = prune_by_magnitude(params, masks, k_prune, scope=scope)
  return grow_by_score(pruned, scores, k_grow, scope=scope)


def newly_alive(old_masks: PyTree, new_masks: PyTree) -> PyTree:
  """``new & ~old`` per masked leaf (``None`` at dense leaves)."""
  return map_masked(lambda o, n: n & ~o, old_masks, new_masks)


# ----------------------------------------------------------------------------
# Player level
# ----------------------------------------------------------------------------


def _player_masks(player: Player, where: str) -> PyTree:
  state = find_mask_state(player.opt_state)
  if state is None:
    raise ValueError(
      f'{where}: the player has no sparse masks; build its optimizer with '
      'jaxgan.sparse.masked_optimizer(tx, masks) before init_player/create_state.'
    )
  return state.masks


def _check_player_call(player: Player, grads, key, regrow: str, scope: str, where: str) -> None:
  """Raises before tracing unless ``player`` has masks and the options are valid."""
  _check_scope(scope)
  _check_regrow(regrow, key)
  _player_masks(player, where)
  if grads is not None and jax.tree.structure(grads) != jax.tree.structure(player.params):
    raise ValueError(f'{where}: grads must mirror the params, got {jax.tree.structure(grads)}.')


def set_player_masks(player: Player, new_masks: PyTree, *, reset_moments: bool = False) -> Player:
  """Installs ``new_masks`` in ``player``: masks in the optimizer state, params.

  Pruned weights become exactly 0; newly alive weights start at exactly 0;
  weights alive before and after keep their value. With ``reset_moments``,
  the optimizer moments of the newly alive weights are zeroed.
  """
  old = _player_masks(player, 'set_player_masks')
  check_masks(player.params, new_masks, where='set_player_masks')
  grown = newly_alive(old, new_masks)
  params = map_masked(
    lambda n, w, g: jnp.where(n & ~g, w, jnp.zeros_like(w)), new_masks, player.params, grown
  )
  opt_state = replace_masks(player.opt_state, new_masks, reset_at=grown if reset_moments else None)
  return player.replace(params=params, opt_state=opt_state)


@functools.partial(jax.jit, static_argnames=('regrow', 'scope', 'reset_moments'))
def _dst_update(player, grads, drop_fraction, key, *, regrow, scope, reset_moments):
  masks = _player_masks(player, 'dst_update')
  new = dst_masks(player.params, masks, grads, drop_fraction, key=key, regrow=regrow, scope=scope)
  return set_player_masks(player, new, reset_moments=reset_moments)


def dst_update(
  player: Player,
  grads: PyTree | None,
  *,
  drop_fraction: Any,
  key: Array | None = None,
  regrow: str = 'gradient',
  scope: str = 'global',
  reset_moments: bool = False,
) -> Player:
  """Prune by magnitude and regrow the same number, in a player (jitted).

  Args:
    player: a player whose optimizer is :func:`jaxgan.sparse.masked_optimizer`.
    grads: the dense gradient of the player's loss w.r.t. its params (RigL);
      ignored (may be ``None``) for ``regrow='random'``.
    drop_fraction: fraction of alive weights exchanged (traced: changing it
      does not recompile).
    key: PRNG key (SET).
    regrow: ``'gradient'`` (RigL, reference) or ``'random'`` (SET).
    scope: ``'global'`` (reference) or ``'layer'``.
    reset_moments: zero the optimizer moments of newly grown weights
      (RigL/jaxpruner); ``False`` is the reference.

  Returns:
    The updated player; total (or per-leaf) alive count unchanged.
  """
  _check_player_call(player, grads, key, regrow, scope, 'dst_update')
  if regrow == 'gradient' and grads is None:
    raise ValueError(
      "dst_update: regrow='gradient' needs grads (the dense gradient of the params)."
    )
  return _dst_update(
    player, grads, drop_fraction, key, regrow=regrow, scope=scope, reset_moments=reset_moments
  )


@functools.partial(jax.jit, static_argnames=('regrow', 'scope', 'reset_moments'))
def _set_density(player, grads, density, key, *, regrow, scope, reset_moments):
  masks = _player_masks(player, 'set_density')
  target = target_counts(masks, density, scope)
  new = set_count_masks(player.params, masks, grads, target, key=key, regrow=regrow, scope=scope)
  return set_player_masks(player, new, reset_moments=reset_moments)


def set_density(
  player: Player,
  grads: PyTree | None,
  density: Any,
  *,
  key: Array | None = None,
  regrow: str = 'gradient',
  scope: str = 'global',
  reset_moments: bool = False,
) -> Player:
  """Moves the player's density to ``density`` exactly (jitted).

  Growing adds the dead weights of largest ``|grad|`` (or random ones),
  keeping every alive weight; shrinking removes the alive weights of smallest
  ``|w|``. The alive count becomes ``round(density * N)`` (global) or
  ``round(d_l * N_l)`` per leaf (``scope='layer'``; ``density`` a scalar or a
  density tree).

  Args:
    player: a player whose optimizer is :func:`jaxgan.sparse.masked_optimizer`.
    grads: dense gradient of the params (needed when growing by gradient).
    density: target density (traced: no recompilation when it changes).
    key, regrow, scope, reset_moments: as in :func:`dst_update`.
  """
  _check_player_call(player, grads, key, regrow, scope, 'set_density')
  if regrow == 'gradient' and grads is None:
    raise ValueError("set_density: regrow='gradient' needs grads (pass zeros if you only prune).")
  if isinstance(density, int | float) and not 0.0 <= density <= 1.0:
    raise ValueError(f'set_density: density must lie in [0, 1], got {density}.')
  return _set_density(
    player, grads, density, key, regrow=regrow, scope=scope, reset_moments=reset_moments
  )
