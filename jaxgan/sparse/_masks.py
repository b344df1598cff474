"""Sparsity masks as pytrees that mirror the params.

A *mask tree* has the structure of the params it belongs to: a ``bool`` array
of the leaf's shape where the leaf is sparsified (``True`` = weight alive), and
``None`` where the leaf stays dense. Which leaves are sparsified is decided by a
filter on the leaf's path (``'Dense_0/kernel'``) and the leaf itself:
:func:`default_filter` keeps the conv/linear kernels (``ndim >= 2``) and leaves
dense the biases, normalization scales, embedding tables and any leaf whose
path names a ``gain`` or a ``classifier`` (the DDST/ADAPT reference's rule).
A user adds names to keep dense with ``exclude`` (regular expressions searched
in the path) or replaces the rule with ``filter_fn``.

A *density tree* has the same layout with a float (the leaf's target density)
in place of each mask; :mod:`jaxgan.sparse._distributions` builds them.

Weights are stored already masked: a pruned weight is exactly ``0.0`` in the
params, so the gradient with respect to the params is dense (what gradient
regrowth needs) and the forward needs no mask.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgan.sparse._topk import topk_mask

PyTree = Any
Array = jax.Array
FilterFn = Callable[[str, Any], bool]

# Path components that mark a leaf as dense in the DDST/ADAPT reference code.
DENSE_NAME_PARTS = ('embed', 'gain', 'classifier')
SAMPLINGS = ('exact', 'bernoulli')


def is_none(x: Any) -> bool:
  return x is None


def key_name(entry: Any) -> str:
  """One path entry (dict key, attribute or index) as a string."""
  for attr in ('key', 'name', 'idx'):
    if hasattr(entry, attr):
      return str(getattr(entry, attr))
  return str(entry)


def path_str(path: Sequence[Any]) -> str:
  """A tree path as ``'a/b/kernel'``."""
  return '/'.join(key_name(p) for p in path)


def leaves_with_paths(tree: PyTree) -> list[tuple[str, Any]]:
  """``[(path_string, leaf)]`` in flattening order, ``None`` leaves included."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_none)
  return [(path_str(path), leaf) for path, leaf in flat]


def default_filter(path: str, leaf: Any) -> bool:
  """True for leaves the reference sparsifies: conv/linear kernels.

  Args:
    path: the leaf's path, e.g. ``'block1/Conv_0/kernel'``.
    leaf: the array (or anything with ``.ndim``).
  """
  if getattr(leaf, 'ndim', 0) < 2:
    return False
  lowered = path.lower()
  return not any(part in lowered for part in DENSE_NAME_PARTS)


def _check_exclude(exclude: Sequence[str]) -> list[re.Pattern]:
  if isinstance(exclude, str):
    raise ValueError(
      f'exclude must be a sequence of regular expressions, got the string {exclude!r}; '
      f'write exclude=({exclude!r},).'
    )
  return [re.compile(p) for p in exclude]


def maskable_tree(
  params: PyTree, *, filter_fn: FilterFn | None = None, exclude: Sequence[str] = ()
) -> PyTree:
  """``True`` at the leaves that get a mask, ``None`` at dense leaves.

  Args:
    params: the params (arrays or ``jax.ShapeDtypeStruct``).
    filter_fn: ``(path, leaf) -> bool``; defaults to :func:`default_filter`.
    exclude: regular expressions; a leaf whose path matches any stays dense.
  """
  patterns = _check_exclude(exclude)
  filter_fn = filter_fn or default_filter
  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  out = []
  for path, leaf in flat:
    name = path_str(path)
    keep = bool(filter_fn(name, leaf)) and not any(p.search(name) for p in patterns)
    out.append(True if keep else None)
  return jax.tree_util.tree_unflatten(treedef, out)


def dense_masks(
  params: PyTree, *, filter_fn: FilterFn | None = None, exclude: Sequence[str] = ()
) -> PyTree:
  """All-alive masks for the maskable leaves of ``params`` (``None`` elsewhere)."""
  template = maskable_tree(params, filter_fn=filter_fn, exclude=exclude)
  return jax.tree.map(
    lambda t, p: None if t is None else jnp.ones(p.shape, jnp.bool_),
    template,
    params,
    is_leaf=is_none,
  )


def check_masks(params: PyTree, masks: PyTree, *, where: str = 'masks') -> None:
  """Raises ``ValueError`` unless ``masks`` is a mask tree for ``params``."""
  p_def = jax.tree.structure(params)
  m_def = jax.tree.structure(masks, is_leaf=is_none)
  if p_def != m_def:
    raise ValueError(
      f'{where}: the mask tree does not mirror the params.\n  params: {p_def}\n  masks:  {m_def}\n'
      'Build masks from the same params (jaxgan.sparse.random_masks / dense_masks).'
    )
  for (name, m), p in zip(leaves_with_paths(masks), jax.tree.leaves(params)):
    if m is None:
      continue
    if tuple(m.shape) != tuple(p.shape):
      raise ValueError(
        f'{where}: mask {name!r} has shape {tuple(m.shape)} but the param has {tuple(p.shape)}.'
      )
    if m.dtype != jnp.bool_:
      raise ValueError(
        f'{where}: mask {name!r} has dtype {m.dtype}; masks are bool (use m.astype(bool)).'
      )


def map_masked(fn: Callable[..., Any], masks: PyTree, *trees: PyTree) -> PyTree:
  """``fn(mask, *leaves)`` at masked leaves; the first tree's leaf elsewhere.

  ``trees`` must mirror the params; at dense leaves (mask ``None``) the result
  is the leaf of ``trees[0]`` unchanged.
  """

  def leaf_fn(m, *leaves):
    return leaves[0] if m is None else fn(m, *leaves)

  return jax.tree.map(leaf_fn, masks, *trees, is_leaf=is_none)


def apply_masks(params: PyTree, masks: PyTree | None) -> PyTree:
  """Zeroes the pruned weights: ``where(mask, w, 0)``; dense leaves untouched.

  Args:
    params: params (or any tree mirroring them, e.g. G's EMA params).
    masks: a mask tree, or ``None`` (returns ``params``).
  """
  if masks is None:
    return params
  return map_masked(lambda m, w: jnp.where(m, w, jnp.zeros_like(w)), masks, params)


def mask_leaves(masks: PyTree) -> list[Array]:
  """The mask arrays (dense leaves skipped), in flattening order."""
  return [m for m in jax.tree.leaves(masks, is_leaf=is_none) if m is not None]


def num_maskable(masks: PyTree) -> int:
  """Total number of maskable weights (a Python int: shapes are static)."""
  return int(sum(math.prod(m.shape) for m in mask_leaves(masks)))


def count_alive(masks: PyTree) -> Array:
  """Total number of alive weights (int32 scalar; traceable)."""
  counts = [jnp.sum(m, dtype=jnp.int32) for m in mask_leaves(masks)]
  return sum(counts, jnp.zeros((), jnp.int32))


def layer_counts(masks: PyTree) -> PyTree:
  """Alive weights per masked leaf (int32 scalars; ``None`` at dense leaves)."""
  return jax.tree.map(
    lambda m: None if m is None else jnp.sum(m, dtype=jnp.int32), masks, is_leaf=is_none
  )


def global_density(masks: PyTree) -> Array:
  """Alive fraction over all maskable weights (float32 scalar)."""
  n = num_maskable(masks)
  if n == 0:
    return jnp.ones((), jnp.float32)
  return count_alive(masks).astype(jnp.float32) / n


def layer_densities(masks: PyTree) -> dict[str, float]:
  """Host-side ``{path: density}`` of every masked leaf (for logs and FLOPs)."""
  return {
    name: float(np.mean(np.asarray(m))) for name, m in leaves_with_paths(masks) if m is not None
  }


def _exact_leaf_mask(key: Array, shape: tuple, density: float) -> Array:
  size = math.prod(shape)
  k = int(round(density * size))
  return topk_mask(jax.random.uniform(key, (size,)), None, k).reshape(shape)


@functools.partial(jax.jit, static_argnames=('specs', 'n', 'sampling'))
def _draw_masks(key, *, specs, n, sampling):
  """All leaves' masks in one compiled program (cached by shapes and densities)."""
  out = [None] * n
  for i, shape, d in specs:
    k = jax.random.fold_in(key, i)
    if sampling == 'exact':
      out[i] = _exact_leaf_mask(k, shape, d)
    else:
      out[i] = jax.random.uniform(k, shape) < d
  return out


def random_masks(
  key: Array, params: PyTree, densities: PyTree, *, sampling: str = 'exact'
) -> PyTree:
  """Random masks with the given per-leaf densities.

  Args:
    key: PRNG key (each leaf folds in its index).
    params: the params (arrays or ``ShapeDtypeStruct``; only shapes are read).
    densities: a density tree (float at maskable leaves, ``None`` at dense
      leaves), e.g. from :func:`jaxgan.sparse.erk_densities`.
    sampling: ``'exact'``: exactly ``round(d_l * N_l)`` alive weights per leaf,
      at uniformly random positions; ``'bernoulli'``: each weight alive with
      probability ``d_l`` (the reference's sampling, counts only approximate).

  Returns:
    The mask tree.
  """
  if sampling not in SAMPLINGS:
    raise ValueError(f'sampling must be one of {SAMPLINGS}, got {sampling!r}.')
  if jax.tree.structure(densities, is_leaf=is_none) != jax.tree.structure(params):
    raise ValueError(
      'densities must mirror the params (a float per maskable leaf, None elsewhere); build it with '
      'jaxgan.sparse.erk_densities(params, d) or uniform_densities(params, d).'
    )
  specs = []  # (index, shape, density) of the masked leaves
  leaves = jax.tree.leaves(densities, is_leaf=is_none)
  for i, (d, p) in enumerate(zip(leaves, jax.tree.leaves(params))):
    if d is None:
      continue
    d = float(d)
    if not 0.0 <= d <= 1.0:
      raise ValueError(f'leaf density must lie in [0, 1], got {d}.')
    specs.append((i, tuple(p.shape), d))

  out = _draw_masks(key, specs=tuple(specs), n=len(leaves), sampling=sampling)
  return jax.tree.unflatten(jax.tree.structure(params), out)
