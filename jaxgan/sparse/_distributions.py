"""Per-layer densities for a target global density: uniform and ERK.

Both return a *density tree*: the params' layout with a float at each maskable
leaf and ``None`` at dense leaves (see :mod:`jaxgan.sparse._masks`). They read
only shapes, so they accept ``jax.ShapeDtypeStruct`` trees and run on the host.

ERK (Erdős–Rényi-kernel, Evci et al., ICML 2020; the DDST reference's default): layer
``l`` with shape ``s`` gets density ``eps * (sum(s) / prod(s)) ** power``, the
kernel dimensions included in both sum and product, with ``eps`` solved so that
``sum_l d_l * N_l = d * N``. A layer whose density would exceed 1 is made dense
and ``eps`` is solved again over the others, until no layer exceeds 1 (each
round densifies the layers with the largest raw score).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax

from jaxgan.sparse._masks import FilterFn, leaves_with_paths, maskable_tree

PyTree = Any
DISTRIBUTIONS = ('erk', 'uniform')


def _check_density(density: float) -> float:
  if not isinstance(density, int | float) or not 0.0 < float(density) <= 1.0:
    raise ValueError(
      f'density must be a number in (0, 1], got {density!r} (e.g. 0.1 for 90% sparsity).'
    )
  return float(density)


def erk_from_shapes(
  shapes: Mapping[str, Sequence[int]], density: float, *, power_scale: float = 1.0
) -> dict[str, float]:
  """ERK densities for named shapes (see the module docstring).

  Args:
    shapes: ``{name: shape}`` of the maskable layers.
    density: target global density ``d`` in ``(0, 1]``.
    power_scale: exponent on the raw score (1 = ERK).

  Returns:
    ``{name: density}``; ``sum(d_l * N_l) == d * N`` up to float rounding.
  """
  density = _check_density(density)
  sizes = {name: math.prod(s) for name, s in shapes.items()}
  if any(n == 0 for n in sizes.values()):
    raise ValueError(f'ERK needs non-empty layers, got sizes {sizes}.')
  raw = {name: (sum(s) / sizes[name]) ** power_scale for name, s in shapes.items()}
  dense: set[str] = set()
  while True:
    sparse_names = [n for n in shapes if n not in dense]
    if not sparse_names:
      break
    # eps * sum_sparse(raw_l * N_l) + sum_dense(N_l) = d * N
    budget = density * sum(sizes.values()) - sum(sizes[n] for n in dense)
    eps = budget / sum(raw[n] * sizes[n] for n in sparse_names)
    top = max(raw[n] for n in sparse_names)
    if eps * top <= 1.0:
      break
    dense.update(n for n in sparse_names if raw[n] == top)
  out = {}
  for name in shapes:
    out[name] = 1.0 if name in dense else eps * raw[name]
  return out


def _density_tree(params: PyTree, values: dict[str, float], template: PyTree) -> PyTree:
  flat = leaves_with_paths(template)
  leaves = [None if t is None else values[name] for name, t in flat]
  return jax.tree.unflatten(jax.tree.structure(params), leaves)


def _maskable_shapes(params: PyTree, filter_fn, exclude) -> tuple[PyTree, dict[str, tuple]]:
  template = maskable_tree(params, filter_fn=filter_fn, exclude=exclude)
  shapes = {
    name: tuple(p.shape)
    for (name, t), p in zip(leaves_with_paths(template), jax.tree.leaves(params))
    if t is not None
  }
  if not shapes:
    raise ValueError(
      'no maskable leaf in the params (the filter kept none); sparsify conv/linear kernels '
      '(default filter) or pass filter_fn.'
    )
  return template, shapes


def uniform_densities(
  params: PyTree, density: float, *, filter_fn: FilterFn | None = None, exclude: Sequence[str] = ()
) -> PyTree:
  """The same density ``d`` at every maskable leaf (``None`` at dense leaves)."""
  density = _check_density(density)
  template, shapes = _maskable_shapes(params, filter_fn, exclude)
  return _density_tree(params, {name: density for name in shapes}, template)


def erk_densities(
  params: PyTree,
  density: float,
  *,
  filter_fn: FilterFn | None = None,
  exclude: Sequence[str] = (),
  power_scale: float = 1.0,
) -> PyTree:
  """ERK densities of the maskable leaves for global density ``d``.

  Args:
    params: params or their ``ShapeDtypeStruct``s.
    density: target fraction of alive weights among the maskable leaves.
    filter_fn: which leaves are maskable (default: conv/linear kernels).
    exclude: path regexes of leaves to keep dense.
    power_scale: ERK exponent (1 in the reference).
  """
  template, shapes = _maskable_shapes(params, filter_fn, exclude)
  return _density_tree(params, erk_from_shapes(shapes, density, power_scale=power_scale), template)


def layer_densities_for(
  params: PyTree,
  density: float,
  distribution: str = 'erk',
  *,
  filter_fn: FilterFn | None = None,
  exclude: Sequence[str] = (),
) -> PyTree:
  """Density tree by name: ``'erk'`` or ``'uniform'``."""
  if distribution == 'erk':
    return erk_densities(params, density, filter_fn=filter_fn, exclude=exclude)
  if distribution == 'uniform':
    return uniform_densities(params, density, filter_fn=filter_fn, exclude=exclude)
  raise ValueError(f'distribution must be one of {DISTRIBUTIONS}, got {distribution!r}.')


def density_items(densities: PyTree) -> dict[str, float]:
  """``{path: density}`` of a density tree (dense leaves skipped)."""
  return {name: float(d) for name, d in leaves_with_paths(densities) if d is not None}
