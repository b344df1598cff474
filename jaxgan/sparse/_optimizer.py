"""An optax transformation that keeps pruned weights exactly zero.

:func:`masked_optimizer` wraps any optax transformation (a chain with Adam, weight decay,
clipping, schedules...). Its state, :class:`SparseState`, carries the masks next to the inner
state, so a player's ``opt_state`` holds everything about its sparsity and one checkpoint of the
:class:`~jaxgan.state.GANState` is complete. Each update returns ``where(mask, u, -params)``, so
that ``params + update`` is exactly ``0.0`` at every pruned weight whatever the inner optimizer
did there (Adam moments, decoupled weight decay, momentum).

Gradient modes: ``'dense'`` (the DDST/ADAPT reference) gives the inner optimizer the dense
gradient, so Adam's moments of pruned weights keep evolving and a regrown weight inherits them;
``'masked'`` (jaxpruner, the lottery-ticket code) zeroes the gradient at pruned weights first.
:func:`find_mask_state`, :func:`get_masks` and :func:`replace_masks` (optionally zeroing the
moments of newly alive weights with :func:`reset_moments`) find the state inside any chain.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxgan.sparse._distributions import layer_densities_for
from jaxgan.sparse._masks import (
  FilterFn,
  apply_masks,
  check_masks,
  is_none,
  map_masked,
  random_masks,
)
from jaxgan.state import GANState, Player

PyTree = Any
GRAD_MODES = ('dense', 'masked')


class SparseState(NamedTuple):
  """State of :func:`masked_optimizer`.

  Attributes:
    masks: the mask tree (bool arrays at masked leaves, ``None`` at dense
      leaves).
    inner: the wrapped transformation's state.
  """

  masks: PyTree
  inner: PyTree

  def constrain_params(self, params: PyTree) -> PyTree:
    """``params`` with the pruned weights at zero, the constraint this transformation keeps.

    The steps apply it to G's EMA (:func:`jaxgan.steps.constrain_params`).
    """
    return apply_masks(params, self.masks)


def masked_optimizer(
  inner: optax.GradientTransformation,
  init_masks: PyTree | Callable[[PyTree], PyTree],
  *,
  grad_mode: str = 'dense',
) -> optax.GradientTransformationExtraArgs:
  """Wraps ``inner`` so that masked weights stay exactly zero.

  Args:
    inner: the optimizer (any optax transformation or chain).
    init_masks: the mask tree, or a function ``params -> masks`` called by
      ``init`` (e.g. :func:`jaxgan.sparse.mask_initializer`).
    grad_mode: ``'dense'`` (inner optimizer sees dense gradients; the
      reference) or ``'masked'`` (gradients zeroed at pruned weights).

  Returns:
    A transformation whose ``update`` requires ``params``. Params must be
    stored masked from the start: call :func:`jaxgan.sparse.sparsify_player`
    (or ``apply_masks``) after ``init``; the first update zeroes any pruned
    weight that is not.
  """
  if grad_mode not in GRAD_MODES:
    raise ValueError(f'grad_mode must be one of {GRAD_MODES}, got {grad_mode!r}.')
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    masks = init_masks(params) if callable(init_masks) else init_masks
    check_masks(params, masks, where='jaxgan.sparse.masked_optimizer')
    return SparseState(masks=masks, inner=inner.init(params))

  def update_fn(updates, state, params=None, **extra_args):
    if params is None:
      raise ValueError(
        'jaxgan.sparse.masked_optimizer needs the params in update '
        '(tx.update(grads, state, params)) to keep pruned weights at exactly zero.'
      )
    masks = state.masks
    grads = updates if grad_mode == 'dense' else apply_masks(updates, masks)
    updates, inner_state = inner.update(grads, state.inner, params, **extra_args)
    updates = map_masked(
      lambda m, u, p: jnp.where(m, u, (-p).astype(u.dtype)), masks, updates, params
    )
    return updates, SparseState(masks=masks, inner=inner_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _is_sparse_state(x: Any) -> bool:
  return isinstance(x, SparseState)


def find_mask_state(opt_state: PyTree) -> SparseState | None:
  """The :class:`SparseState` inside ``opt_state`` (``None`` if there is none).

  Raises:
    ValueError: the optimizer holds more than one sparse transformation.
  """
  found = [x for x in jax.tree.leaves(opt_state, is_leaf=_is_sparse_state) if _is_sparse_state(x)]
  if len(found) > 1:
    raise ValueError(
      f'the optimizer state holds {len(found)} jaxgan.sparse.masked_optimizer transformations; '
      'wrap the whole chain once: masked_optimizer(optax.chain(...), masks).'
    )
  return found[0] if found else None


def get_masks(opt_state: PyTree) -> PyTree | None:
  """The mask tree in ``opt_state``, or ``None`` when the optimizer is dense."""
  state = find_mask_state(opt_state)
  return None if state is None else state.masks


def reset_moments(inner_state: PyTree, where: PyTree) -> PyTree:
  """Zeroes, at ``where``, every part of ``inner_state`` shaped like the params.

  Any subtree with the params' structure and shapes (Adam's ``mu`` and ``nu``,
  a momentum trace, an EMA) is set to 0 where ``where`` is True; counts,
  schedules and hyperparameters are left alone. Works for any optax state
  without knowing its type.

  Args:
    inner_state: an optax state.
    where: a mask tree (bool at masked leaves, ``None`` elsewhere), e.g. the
      newly alive weights.
  """
  target = jax.tree.structure(where, is_leaf=is_none)

  def is_param_like(node):
    return jax.tree.structure(node) == target

  def zero_at(w, x):
    if not hasattr(x, 'shape') or tuple(x.shape) != tuple(w.shape):
      return x
    return jnp.where(w, jnp.zeros_like(x), x)

  def visit(node):
    if is_param_like(node):
      return map_masked(lambda w, x: zero_at(w, x), where, node)
    return node

  return jax.tree.map(visit, inner_state, is_leaf=is_param_like)


def replace_masks(
  opt_state: PyTree, new_masks: PyTree, *, reset_at: PyTree | None = None
) -> PyTree:
  """``opt_state`` with the sparse transformation's masks replaced.

  Args:
    opt_state: a state holding one :class:`SparseState`.
    new_masks: the new mask tree (same layout and shapes as the old one).
    reset_at: optional mask tree; the optimizer moments at these positions
      are zeroed (:func:`reset_moments`), e.g. the newly grown weights.
  """
  old = find_mask_state(opt_state)
  if old is None:
    raise ValueError(
      'the optimizer state has no sparse masks; wrap the optimizer with '
      'jaxgan.sparse.masked_optimizer(tx, masks) before init.'
    )
  if jax.tree.structure(new_masks, is_leaf=is_none) != jax.tree.structure(
    old.masks, is_leaf=is_none
  ):
    raise ValueError('replace_masks: the new masks do not have the layout of the old ones.')

  def swap(node):
    if not _is_sparse_state(node):
      return node
    inner = node.inner if reset_at is None else reset_moments(node.inner, reset_at)
    return SparseState(masks=new_masks, inner=inner)

  return jax.tree.map(swap, opt_state, is_leaf=_is_sparse_state)


def mask_initializer(
  key: jax.Array,
  density: float,
  *,
  distribution: str = 'erk',
  sampling: str = 'exact',
  filter_fn: FilterFn | None = None,
  exclude: Sequence[str] = (),
) -> Callable[[PyTree], PyTree]:
  """A ``params -> masks`` function for :func:`masked_optimizer`: random masks.

  Args:
    key: PRNG key of the masks.
    density: global density of the maskable leaves.
    distribution: ``'erk'`` (reference) or ``'uniform'`` per-layer densities.
    sampling: ``'exact'`` counts (``round(d_l * N_l)``) or ``'bernoulli'``
      (the reference's per-weight coin flips).
    filter_fn, exclude: which leaves are maskable (see
      :func:`jaxgan.sparse.dense_masks`).
  """
  # Checks the arguments now, with a placeholder, rather than inside tx.init.
  if distribution not in ('erk', 'uniform'):
    raise ValueError(f"distribution must be 'erk' or 'uniform', got {distribution!r}.")
  if sampling not in ('exact', 'bernoulli'):
    raise ValueError(f"sampling must be 'exact' or 'bernoulli', got {sampling!r}.")
  if not isinstance(density, int | float) or not 0.0 < density <= 1.0:
    raise ValueError(f'density must be in (0, 1], got {density!r}.')

  def init(params):
    densities = layer_densities_for(
      params, density, distribution, filter_fn=filter_fn, exclude=exclude
    )
    return random_masks(key, params, densities, sampling=sampling)

  return init


def sparsify_player(player: Player) -> Player:
  """Zeroes the player's pruned weights (call once after ``init``).

  A player whose optimizer has no masks is returned unchanged.
  """
  masks = get_masks(player.opt_state)
  if masks is None:
    return player
  return player.replace(params=apply_masks(player.params, masks))


def sparsify_state(state: GANState) -> GANState:
  """:func:`sparsify_player` on G and D, and G's masks on the EMA params."""
  g = sparsify_player(state.g)
  d = sparsify_player(state.d)
  ema = state.ema_params
  if ema is not None:
    ema = apply_masks(ema, get_masks(g.opt_state))
  return state.replace(g=g, d=d, ema_params=ema)
