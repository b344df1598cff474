"""Lottery tickets of GANs: iterative magnitude pruning (IMP) with rewinding.

Stage I of Chen et al. (NeurIPS 2021, lottery.md §1): starting from all-alive
masks and a fixed initialisation ``theta0``, repeat

1. rewind: weights ``theta0 * mask`` (or a saved step-``k`` copy instead of
   ``theta0``: late rewinding), fresh optimizer state, EMA = rewound G;
2. train on the same (small) data, the masks fixed;
3. prune ``rate`` (default 20 %) of the *remaining* weights of every pruned
   network by ``|w|``, ranked across the network (``scope='global'``, the
   reference) or inside each layer (``scope='layer'``).

Masks are nested (each round's mask is a subset of the previous one) and every
round's masks are kept, so a ticket of any sparsity can be retrained (Stage
II: the ticket's masks fixed, rewound weights, DiffAugment and AdvAug in the
game; that wiring lives in the training loop, see :func:`rewind_state`).

**Counts.** A round prunes ``k = round(rate * n_alive)`` weights (Python's
``round``, half to even, as torch's ``L1Unstructured`` with a float amount),
or ``floor`` with ``rounding='floor'`` (the BigGAN code's ``int``). With
``scope='global'``, ``n_alive`` is the network's alive count; with
``scope='layer'`` each maskable leaf uses its own. So after ``R`` rounds
``n_R = n_{R-1} - round(rate * n_{R-1})``: exactly ``(1 - rate)^R * n_0``
whenever every ``rate * n_r`` is an integer (e.g. ``rate = 0.2`` and ``n_0``
divisible by ``5^R``), and within ``0.5 / rate`` weights of it otherwise
(the per-round errors shrink geometrically). Ties in ``|w|`` are broken by
position (the later weight goes first), so counts are exact.

**What is pruned** (the *prunable set*): by default the convolution and
transposed-convolution kernels only, as the authors' code (``Conv2d`` and
``ConvTranspose2d`` weights; G's first linear layer, embeddings, norm params
and biases are never pruned, and the paper's "remaining weights" count conv
weights only). A conv kernel is recognised as a 4-D leaf ``[kh, kw, in,
out]``: Flax ``Conv`` / ``ConvTranspose``, :class:`jaxgan.nn.ConvTranspose4x4s2`,
:class:`jaxgan.nn.Project4x4` (a ``ConvTranspose2d`` on a 1x1 input) and
StyleGAN2's modulated-conv ``weight`` all are; a 2-D Dense kernel (e.g. the
28x28 and 32x32 DCGAN G's ``project``) is not. ``layers`` names the kinds to
prune (:data:`LAYER_KINDS`: ``'conv'``, ``'dense'``, ``'embed'``; see
:func:`layer_kind`); ``exclude`` (regular expressions on the leaf path) keeps
chosen leaves dense, ``filter_fn`` replaces the rule. ``prune=('g',)`` (the
default) leaves D dense and resets it to ``phi0`` every round, as the released
limited-data code does.

**Which weights rank the pruning** is the caller's ``train_fn``'s choice; the
reference ranks the trained raw G that the next round rewinds (SNGAN
``pruning_generate(gen_net)``, BigGAN likewise); the SNGAN code also prunes its
EMA copy by the EMA's own magnitudes and hands that mask to Stage II. Each
round's :attr:`Ticket.agreement` says how close the round came to pruning at
initialisation (:func:`init_agreement`: the rank correlation of ``|theta0|``
and the trained ``|w|``, and the overlap of the pruned set with the one
``|theta0|`` would pick).

Networks are handled by name: :func:`find_ticket` takes ``{'g': theta0, 'd':
phi0}`` (any names) and prunes those in ``prune``, each with its own global
ranking.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgan.sparse.masked_optimizer import find_mask_state, replace_masks
from jaxgan.sparse.masks import (
  FilterFn,
  apply_masks,
  check_masks,
  count_alive,
  global_density,
  is_none,
  layer_counts,
  leaves_with_paths,
)
from jaxgan.sparse.masks import dense_masks as all_alive_masks
from jaxgan.sparse.prune_regrow import SCOPES, prune_by_magnitude
from jaxgan.state import GANState

PyTree = Any
Masks = dict[str, PyTree | None]
ROUNDINGS = ('round', 'floor')
LAYER_KINDS = ('conv', 'dense', 'embed')
DEFAULT_LAYERS = ('conv',)


class Ticket(NamedTuple):
  """The masks after one IMP round.

  Attributes:
    round: number of prunings done (0: all alive).
    masks: ``{network: mask tree}``; ``None`` for a network that is not pruned.
    density: ``{network: alive fraction of its prunable weights}`` (1.0 for a
      network that is not pruned).
    agreement: ``{network: init_agreement(...)}`` of the pruning that made
      this ticket, for the pruned networks (``None`` for round 0).
  """

  round: int
  masks: Masks
  density: dict[str, float]
  agreement: dict[str, dict[str, float]] | None = None


# ----------------------------------------------------------------------------
# The prunable set
# ----------------------------------------------------------------------------


def layer_kind(path: str, leaf: Any) -> str | None:
  """The kind of a param leaf for the prunable set, or ``None`` (never pruned).

  Args:
    path: the leaf's path, e.g. ``'up1/kernel'``.
    leaf: the array (or anything with ``.ndim``).

  Returns:
    ``'conv'`` for a 4-D kernel ``[kh, kw, in, out]`` (convolutions and
    transposed convolutions), ``'embed'`` for an embedding table (a 2-D leaf
    named ``embedding``, Flax ``nn.Embed``), ``'dense'`` for any other 2-D
    leaf (linear kernels), ``None`` for the rest (biases, norm params, 3-D
    constants).
  """
  ndim = getattr(leaf, 'ndim', 0)
  if ndim == 4:
    return 'conv'
  if ndim == 2:
    return 'embed' if path.rsplit('/', 1)[-1] == 'embedding' else 'dense'
  return None


def _check_layers(layers: Sequence[str]) -> tuple[str, ...]:
  if isinstance(layers, str) or not layers or any(k not in LAYER_KINDS for k in layers):
    raise ValueError(
      f'layers must be a non-empty sequence of {LAYER_KINDS}, got {layers!r}; the reference '
      "prunes ('conv',), e.g. ('conv', 'dense') also prunes linear layers."
    )
  return tuple(layers)


def prunable_filter(layers: Sequence[str] = DEFAULT_LAYERS) -> FilterFn:
  """A ``(path, leaf) -> bool`` filter keeping the leaves whose :func:`layer_kind` is in ``layers``."""
  kinds = _check_layers(layers)
  return lambda path, leaf: layer_kind(path, leaf) in kinds


def dense_masks(
  params: PyTree,
  *,
  layers: Sequence[str] | None = None,
  filter_fn: FilterFn | None = None,
  exclude: Sequence[str] = (),
) -> PyTree:
  """All-alive masks over the prunable set of ``params`` (``None`` at the other leaves).

  Unlike :func:`jaxgan.sparse.dense_masks` (DDST's rule: conv and linear
  kernels), the default keeps only conv kernels, the lottery reference's set.

  Args:
    params: the params (arrays or ``jax.ShapeDtypeStruct``).
    layers: kinds of :data:`LAYER_KINDS` to prune (default ``('conv',)``).
    filter_fn: ``(path, leaf) -> bool`` replacing the ``layers`` rule (give
      one or the other).
    exclude: regular expressions; a leaf whose path matches any stays dense.
  """
  if filter_fn is not None and layers is not None:
    raise ValueError('give layers or filter_fn, not both (filter_fn replaces the layers rule).')
  if filter_fn is None:
    filter_fn = prunable_filter(DEFAULT_LAYERS if layers is None else layers)
  return all_alive_masks(params, filter_fn=filter_fn, exclude=exclude)


def kernel_density(params: PyTree, masks: PyTree) -> float:
  """Alive fraction of all kernels of ``params`` (every leaf of ``ndim >= 2``).

  Kernels outside the prunable set count as alive, so this is what a reader
  of "x % of G's weights" expects, next to :func:`global_density` (the
  prunable set only).
  """
  check_masks(params, masks, where='kernel_density')
  total = alive = 0
  for m, p in zip(jax.tree.leaves(masks, is_leaf=is_none), jax.tree.leaves(params)):
    if p.ndim < 2 and m is None:
      continue
    total += math.prod(p.shape)
    alive += math.prod(p.shape) if m is None else int(np.sum(np.asarray(m)))
  return alive / total if total else 1.0


# ----------------------------------------------------------------------------
# One round
# ----------------------------------------------------------------------------


def _check_rate(rate: float, rounding: str) -> None:
  if not isinstance(rate, int | float) or not 0.0 < rate < 1.0:
    raise ValueError(
      f'IMP rate must be a fraction in (0, 1) of the remaining weights, got {rate!r} '
      '(the reference prunes 0.2 per round).'
    )
  if rounding not in ROUNDINGS:
    raise ValueError(
      f"rounding must be 'round' (torch L1Unstructured) or 'floor' (BigGAN code), got {rounding!r}."
    )


def _check_scope(scope: str) -> None:
  if scope not in SCOPES:
    raise ValueError(f"scope must be one of {SCOPES}, got {scope!r} ('global' is the reference).")


def prune_count(n_alive: int, rate: float, rounding: str = 'round') -> int:
  """Weights one round removes from ``n_alive``: ``round`` or ``floor`` of ``rate * n_alive``."""
  _check_rate(rate, rounding)
  x = rate * int(n_alive)
  return int(round(x)) if rounding == 'round' else int(math.floor(x))


_prune = jax.jit(prune_by_magnitude, static_argnames=('scope',))


def imp_round(
  params: PyTree,
  masks: PyTree,
  *,
  rate: float = 0.2,
  scope: str = 'global',
  rounding: str = 'round',
) -> PyTree:
  """Prunes ``rate`` of the remaining weights by magnitude.

  Counts are computed on the host (exact integers, see the module docstring);
  the selection runs compiled, once per mask layout.

  Args:
    params: the trained params (mirror ``masks``); ranked by ``|w|`` among the
      alive weights.
    masks: the current mask tree (``True`` = alive, ``None`` = dense leaf).
    rate: fraction of the *remaining* weights to remove.
    scope: ``'global'`` (rank across all masked leaves) or ``'layer'`` (each
      leaf loses ``rate`` of its own alive weights).
    rounding: ``'round'`` or ``'floor'`` of ``rate * n_alive``.

  Returns:
    The new mask tree, a subset of ``masks``.
  """
  _check_rate(rate, rounding)
  _check_scope(scope)
  check_masks(params, masks, where='imp_round')
  if scope == 'global':
    k = prune_count(int(count_alive(masks)), rate, rounding)
  else:
    alive = [int(c) for c in jax.tree.leaves(layer_counts(masks))]
    k = [prune_count(a, rate, rounding) for a in alive]
  return _prune(params, masks, k, scope=scope)


def _average_ranks(x: np.ndarray) -> np.ndarray:
  """Ranks ``1..n`` of ``x``, ties sharing their average rank."""
  _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
  upper = np.cumsum(counts)
  return (upper - 0.5 * (counts - 1))[inverse]


def _alive_values(tree: PyTree, masks: PyTree) -> np.ndarray:
  """The entries of ``tree`` (params or a mask tree) at the alive weights, flattened."""
  pairs = zip(jax.tree.leaves(masks, is_leaf=is_none), jax.tree.leaves(tree, is_leaf=is_none))
  parts = [np.asarray(p)[np.asarray(m)] for m, p in pairs if m is not None]
  return np.concatenate(parts) if parts else np.zeros((0,))


def init_agreement(
  initial: PyTree,
  trained: PyTree,
  masks: PyTree,
  *,
  rate: float = 0.2,
  scope: str = 'global',
  rounding: str = 'round',
) -> dict[str, float]:
  """How close one IMP round comes to pruning at initialisation.

  Args:
    initial: the weights the round started from (``theta0``).
    trained: the weights the round ranks (the trained G).
    masks: the round's masks before pruning; only their alive weights count.
    rate, scope, rounding: the round's pruning (:func:`imp_round`).

  Returns:
    ``{'spearman': ..., 'overlap': ...}``: Spearman's rank correlation of
    ``|initial|`` and ``|trained|`` over the alive prunable weights (ties
    share their average rank; ``nan`` if either is constant), and the
    fraction of the weights this round prunes by ``|trained|`` that
    :func:`imp_round` on ``|initial|`` would prune too (``nan`` if the round
    prunes none). A ranking unrelated to ``|initial|`` gives an overlap of
    about ``rate``; 1.0 is pruning at initialisation.
  """
  check_masks(initial, masks, where='init_agreement initial')
  check_masks(trained, masks, where='init_agreement trained')
  a = _average_ranks(np.abs(_alive_values(initial, masks)))
  b = _average_ranks(np.abs(_alive_values(trained, masks)))
  spearman = float('nan')
  if a.size > 1 and np.ptp(a) > 0 and np.ptp(b) > 0:
    spearman = float(np.corrcoef(a, b)[0, 1])
  by_trained = imp_round(trained, masks, rate=rate, scope=scope, rounding=rounding)
  by_initial = imp_round(initial, masks, rate=rate, scope=scope, rounding=rounding)
  pruned = ~_alive_values(by_trained, masks)
  both = pruned & ~_alive_values(by_initial, masks)
  n = int(pruned.sum())
  return {'spearman': spearman, 'overlap': int(both.sum()) / n if n else float('nan')}


def rewind(initial_params: PyTree, masks: PyTree | None) -> PyTree:
  """The ticket's starting weights: ``initial_params`` zeroed where pruned.

  Args:
    initial_params: ``theta0``, or a copy saved at step ``k`` (late
      rewinding).
    masks: the ticket's mask tree, or ``None`` (a dense network: the initial
      params unchanged).

  Returns:
    ``where(mask, initial, 0)`` at masked leaves, ``initial`` elsewhere.
  """
  if masks is None:
    return initial_params
  check_masks(initial_params, masks, where='rewind')
  return apply_masks(initial_params, masks)


def rewind_state(
  initial_state: GANState,
  g_tx: optax.GradientTransformation,
  d_tx: optax.GradientTransformation,
  masks: Mapping[str, PyTree | None],
) -> GANState:
  """A fresh run of a ticket: rewound weights, new optimizer states, EMA = G.

  Everything else (model state such as batch statistics and spectral-norm
  vectors, step, RNG, technique state) is taken from ``initial_state``, the
  state the first round started from (pass a step-``k`` state for late
  rewinding).

  Args:
    initial_state: the run's initial :class:`~jaxgan.state.GANState`.
    g_tx: G's optimizer; must be a :func:`jaxgan.sparse.masked` transformation
      when G has masks (``grad_mode='masked'`` matches the reference: pruned
      weights get zero gradient and zero Adam moments).
    d_tx: D's optimizer (likewise for D's masks).
    masks: ``{'g': mask tree or None, 'd': mask tree or None}`` (missing keys
      mean dense), e.g. ``ticket.masks``.

  Returns:
    The state to train: params rewound, ``opt_state = tx.init(params)`` with
    the ticket's masks installed, ``ema_params`` = rewound G params.
  """
  unknown = sorted(set(masks) - {'g', 'd'})
  if unknown:
    raise ValueError(f"rewind_state takes masks for 'g' and 'd', got keys {unknown}.")

  def player(p, tx, m, name):
    params = rewind(p.params, m)
    opt_state = tx.init(params)
    if m is not None:
      check_masks(p.params, m, where=f'rewind_state masks[{name!r}]')
      if find_mask_state(opt_state) is None:
        raise ValueError(
          f"rewind_state: {name}'s optimizer has no sparse masks; build it as "
          "jaxgan.sparse.masked(inner_tx, masks, grad_mode='masked') so the ticket stays sparse."
        )
      opt_state = replace_masks(opt_state, m)
    return p.replace(params=params, opt_state=opt_state)

  g = player(initial_state.g, g_tx, masks.get('g'), 'g')
  d = player(initial_state.d, d_tx, masks.get('d'), 'd')
  ema = None if initial_state.ema_params is None else jax.tree.map(lambda x: x, g.params)
  return initial_state.replace(g=g, d=d, ema_params=ema)


# ----------------------------------------------------------------------------
# The search
# ----------------------------------------------------------------------------


def _ticket(r: int, masks: Masks, agreement: dict[str, dict[str, float]] | None = None) -> Ticket:
  density = {name: 1.0 if m is None else float(global_density(m)) for name, m in masks.items()}
  return Ticket(round=r, masks=dict(masks), density=density, agreement=agreement)


def find_ticket(
  train_fn: Callable[[dict, Masks, int], Mapping[str, PyTree]],
  init_params: Mapping[str, PyTree],
  rounds: int,
  *,
  prune: Sequence[str] = ('g',),
  rate: float = 0.2,
  scope: str = 'global',
  rounding: str = 'round',
  rewind_params: Mapping[str, PyTree] | None = None,
  init_masks: Mapping[str, PyTree | None] | None = None,
  layers: Sequence[str] | None = None,
  filter_fn: FilterFn | None = None,
  exclude: Sequence[str] = (),
  on_round: Callable[[Ticket, Mapping[str, PyTree]], None] | None = None,
) -> list[Ticket]:
  """Runs ``rounds`` rounds of IMP and returns the masks of every round.

  Round ``r`` (``0 <= r < rounds``): ``params = rewind(rewind_params, masks)``
  per network, ``trained = train_fn(params, masks, r)``, then the networks in
  ``prune`` lose ``rate`` of their remaining weights by the magnitudes of
  ``trained`` (:func:`imp_round`).

  Args:
    train_fn: the caller's training, ``(params, masks, round) -> trained``,
      both dicts by network name. It builds a fresh optimizer (and EMA) each
      round (see :func:`rewind_state`), trains with the masks fixed on the
      same limited data, and returns the params whose magnitudes decide the
      pruning: the trained raw generator in the reference (the EMA's is the
      caller's other choice).
    init_params: ``{name: theta0}`` of every network (e.g. ``{'g': ...,
      'd': ...}``).
    rounds: number of train-then-prune rounds (``R``; the last mask has
      density about ``(1 - rate)^R``).
    prune: the networks to prune (default G only, the released limited-data
      code); the others stay dense and are rewound every round.
    rate: fraction of the remaining weights removed per round.
    scope: ``'global'`` (per network) or ``'layer'``.
    rounding: ``'round'`` or ``'floor'`` of ``rate * n_alive``.
    rewind_params: the weights to rewind to (default ``init_params``; a
      step-``k`` copy for late rewinding).
    init_masks: starting masks per pruned network (default all alive over
      the prunable set, :func:`dense_masks` with ``layers`` / ``filter_fn`` /
      ``exclude``).
    layers: kinds of :data:`LAYER_KINDS` to prune (default ``('conv',)``, the
      reference: conv and transposed-conv kernels); e.g. ``('conv',
      'dense')`` also prunes linear layers.
    filter_fn: ``(path, leaf) -> bool`` replacing the ``layers`` rule.
    exclude: regular expressions on leaf paths that stay dense.
    on_round: called after each pruning with the new :class:`Ticket` (its
      ``agreement`` compares the round's ranking with ``|rewind_params|``)
      and the trained params of that round (e.g. to save both).

  Returns:
    ``rounds + 1`` tickets; ``tickets[r].masks`` has been pruned ``r`` times.
  """
  if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
    raise ValueError(f'rounds must be an int >= 0, got {rounds!r}.')
  _check_rate(rate, rounding)
  _check_scope(scope)
  names = list(init_params)
  if isinstance(prune, str):
    raise ValueError(f"prune must be a sequence of network names, e.g. ('g',), got {prune!r}.")
  missing = [n for n in prune if n not in init_params]
  if missing:
    raise ValueError(f'prune names {missing} are not networks of init_params ({names}).')
  rewind_params = init_params if rewind_params is None else rewind_params
  if set(rewind_params) != set(names):
    raise ValueError(
      f'rewind_params must have the networks of init_params ({names}), got {list(rewind_params)}.'
    )

  masks: Masks = {}
  for name in names:
    if name not in prune:
      masks[name] = None
    elif init_masks is not None and init_masks.get(name) is not None:
      check_masks(init_params[name], init_masks[name], where=f'find_ticket init_masks[{name!r}]')
      masks[name] = init_masks[name]
    else:
      masks[name] = dense_masks(
        init_params[name], layers=layers, filter_fn=filter_fn, exclude=exclude
      )
      if not jax.tree.leaves(masks[name]):
        raise ValueError(
          f'network {name!r} has no prunable leaf (layers/filter_fn/exclude left every leaf '
          "dense); a network without convolutions needs layers=('conv', 'dense')."
        )

  tickets = [_ticket(0, masks)]
  for r in range(rounds):
    params = {name: rewind(rewind_params[name], masks[name]) for name in names}
    trained = train_fn(params, dict(masks), r)
    how = dict(rate=rate, scope=scope, rounding=rounding)
    agreement = {
      name: init_agreement(rewind_params[name], trained[name], m, **how)
      for name, m in masks.items()
      if m is not None
    }
    masks = {
      name: None if m is None else imp_round(trained[name], m, **how) for name, m in masks.items()
    }
    tickets.append(_ticket(r + 1, masks, agreement))
    if on_round is not None:
      on_round(tickets[-1], trained)
  return tickets


def expected_alive(n0: int, rounds: int, rate: float = 0.2, rounding: str = 'round') -> list[int]:
  """Alive counts ``[n_0, ..., n_R]`` of a network (or leaf) of ``n0`` weights.

  ``n_r = n_{r-1} - prune_count(n_{r-1})``: what :func:`imp_round` produces.
  """
  counts = [int(n0)]
  for _ in range(rounds):
    counts.append(counts[-1] - prune_count(counts[-1], rate, rounding))
  return counts


# ----------------------------------------------------------------------------
# Saving
# ----------------------------------------------------------------------------


def masks_to_arrays(masks: PyTree) -> dict[str, np.ndarray]:
  """``{leaf path: bool array}`` of a mask tree (dense leaves left out).

  A flat dict of numpy arrays saves with ``np.savez(path, **arrays)``.
  """
  return {name: np.asarray(m) for name, m in leaves_with_paths(masks) if m is not None}


def masks_from_arrays(arrays: Mapping[str, Any], params: PyTree) -> PyTree:
  """Inverse of :func:`masks_to_arrays` for the params ``params``.

  Leaves of ``params`` without an entry are dense (``None``).

  Raises:
    ValueError: an entry names no leaf of ``params`` or has the wrong shape.
  """
  by_name = {name: leaf for (name, leaf) in leaves_with_paths(params)}
  unknown = sorted(set(arrays) - set(by_name))
  if unknown:
    raise ValueError(
      f'saved masks {unknown} match no leaf of the params (leaves: {sorted(by_name)}).'
    )
  out = []
  for name, leaf in leaves_with_paths(params):
    if name not in arrays:
      out.append(None)
      continue
    m = np.asarray(arrays[name]).astype(bool)
    if m.shape != tuple(leaf.shape):
      raise ValueError(
        f'saved mask {name!r} has shape {m.shape}, the param has {tuple(leaf.shape)}.'
      )
    out.append(jnp.asarray(m))
  return jax.tree.unflatten(jax.tree.structure(params), out)


def is_nested(inner: PyTree, outer: PyTree) -> bool:
  """True when every weight alive in ``inner`` is alive in ``outer``."""
  pairs = zip(
    jax.tree.leaves(inner, is_leaf=is_none), jax.tree.leaves(outer, is_leaf=is_none), strict=True
  )
  return all(
    (a is None and b is None) or bool(np.all(~np.asarray(a) | np.asarray(b))) for a, b in pairs
  )
