"""Limited-data subsets: an exact number of examples, drawn at random with a seed.

``class_balanced=True`` gives every class the same count (the remainder, when
the count is not a multiple of the number of classes, goes one each to classes
picked at random with the same seed). Rows keep their original order.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def _resolve_count(n: int, fraction: float | None, count: int | None) -> int:
  if (fraction is None) == (count is None):
    raise ValueError(
      f'give exactly one of fraction or count; got fraction={fraction}, count={count}.'
    )
  if fraction is not None:
    if not 0.0 < fraction <= 1.0:
      raise ValueError(f'fraction must be in (0, 1]; got {fraction}.')
    k = int(round(fraction * n))
    if k < 1:
      raise ValueError(
        f'fraction={fraction} of {n} examples rounds to 0; use a larger fraction or count.'
      )
    return k
  if isinstance(count, bool) or not isinstance(count, int | np.integer) or not 1 <= count <= n:
    raise ValueError(f'count must be an integer in [1, {n}] (the dataset size); got {count!r}.')
  return int(count)


def subset_indices(
  labels: np.ndarray,
  *,
  fraction: float | None = None,
  count: int | None = None,
  seed: int = 0,
  class_balanced: bool = False,
) -> np.ndarray:
  """Sorted row indices of a random subset.

  Args:
    labels: ``[N]`` integer class labels (only read when ``class_balanced``;
      its length is the dataset size).
    fraction: keep ``round(fraction * N)`` rows.
    count: keep exactly ``count`` rows.
    seed: the subset is a function of ``(N, labels, count, seed, class_balanced)``.
    class_balanced: the same number of rows per class (see the module docstring).

  Returns:
    int64 ``[count]``, sorted, without repeats.
  """
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(f'labels must be [N]; got shape {labels.shape}.')
  n = len(labels)
  k = _resolve_count(n, fraction, count)
  rng = np.random.default_rng(seed)
  if not class_balanced:
    return np.sort(rng.choice(n, size=k, replace=False)).astype(np.int64)
  if labels.size and labels.min() < 0:
    raise ValueError(
      'class_balanced=True needs class labels; this dataset has none (labels are -1).'
    )
  classes, sizes = np.unique(labels, return_counts=True)
  per_class = np.full(len(classes), k // len(classes), np.int64)
  per_class[rng.permutation(len(classes))[: k % len(classes)]] += 1
  short = per_class > sizes
  if short.any():
    c = int(np.argmax(short))
    raise ValueError(
      f'class_balanced subset of {k} needs {per_class[c]} examples of class {classes[c]}, which has '
      f'only {sizes[c]}; lower the count or use class_balanced=False.'
    )
  picked = [
    rng.choice(np.flatnonzero(labels == c), size=m, replace=False)
    for c, m in zip(classes, per_class, strict=True)
  ]
  return np.sort(np.concatenate(picked)).astype(np.int64)


def subset(
  arrays: Mapping[str, np.ndarray],
  *,
  fraction: float | None = None,
  count: int | None = None,
  seed: int = 0,
  class_balanced: bool = False,
) -> dict[str, np.ndarray]:
  """A random subset of a dataset, for limited-data training.

  Args:
    arrays: ``{'image': [N, ...], 'label': [N], ...}``; every value has ``N``
      rows (``'label'`` is needed only with ``class_balanced``).
    fraction: keep ``round(fraction * N)`` examples (e.g. 0.1 for 10%).
    count: keep exactly ``count`` examples. Give one of fraction or count.
    seed: same arguments and seed, same subset.
    class_balanced: equal numbers per class.

  Returns:
    The same keys, each with the kept rows in their original order.
  """
  if not arrays:
    raise ValueError('arrays is empty; expected a dict like {"image": [N, ...], "label": [N]}.')
  lengths = {key: len(value) for key, value in arrays.items()}
  if len(set(lengths.values())) != 1:
    raise ValueError(f'all arrays must have the same number of rows; got {lengths}.')
  n = next(iter(lengths.values()))
  if class_balanced and 'label' not in arrays:
    raise ValueError(f'class_balanced=True needs a "label" array; got keys {sorted(arrays)}.')
  labels = arrays['label'] if class_balanced else np.zeros(n, np.int64)
  idx = subset_indices(
    labels, fraction=fraction, count=count, seed=seed, class_balanced=class_balanced
  )
  return {key: np.asarray(value)[idx] for key, value in arrays.items()}


def holdout_split(
  arrays: Mapping[str, np.ndarray], *, test_count: int, seed: int
) -> dict[str, dict[str, np.ndarray]]:
  """A fixed class-balanced train/test split.

  ``'test'`` is :func:`subset_indices` with ``count=test_count,
  class_balanced=True, seed=seed``; ``'train'`` is every other row. Within
  each split the rows are put in a random order drawn from the same seed, so
  any prefix of a split mixes all classes.

  Args:
    arrays: ``{'image': [N, ...], 'label': [N]}``.
    test_count: rows in the test split.
    seed: fixes both the split and the row orders.

  Returns:
    ``{'train': arrays, 'test': arrays}`` with the same keys as ``arrays``.
  """
  labels = np.asarray(arrays['label'])
  test_idx = subset_indices(labels, count=test_count, seed=seed, class_balanced=True)
  train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
  rng = np.random.default_rng(seed)
  out = {}
  for split, idx in (('train', train_idx), ('test', test_idx)):
    idx = idx[rng.permutation(len(idx))]
    out[split] = {key: np.asarray(value)[idx] for key, value in arrays.items()}
  return out
