"""k-NN manifold metrics: precision/recall and density/coverage.

Both estimate each set's support as a union of balls, one per sample, whose
radius is the distance to the sample's k-th nearest neighbour in its own set
(the sample itself excluded). A point is inside a ball when its distance is
at most the radius.

* Improved precision and recall (Kynkäänniemi et al., 2019; k = 3):
  precision is the fraction of fake samples inside the real manifold, recall
  the fraction of real samples inside the fake manifold.
* Density and coverage (Naeem et al., 2020; k = 5), from the real balls only:
  density is the number of (real ball, fake sample) containments divided by
  ``k M`` (about 1 when the sets match, unbounded above); coverage is the
  fraction of real balls that contain at least one fake sample.

Distances are computed block by block on device (``|a|^2 + |b|^2 - 2 a.b``,
in the features' dtype), so memory stays ``O(block * N)``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def _sq_dists(a: Array, b: Array) -> Array:
  d2 = (
    jnp.sum(a * a, axis=1)[:, None]
    + jnp.sum(b * b, axis=1)[None, :]
    - 2.0 * jnp.matmul(a, b.T, precision='highest')
  )
  return jnp.maximum(d2, 0.0)


@functools.partial(jax.jit, static_argnames='k')
def _kth_nn_sq(block: Array, points: Array, k: int) -> Array:
  # The block's own points are in `points` at distance 0: the (k+1)-th
  # smallest distance is the k-th neighbour other than the point itself.
  neg_smallest, _ = jax.lax.top_k(-_sq_dists(block, points), k + 1)
  return -neg_smallest[:, k]


@jax.jit
def _ball_counts(queries: Array, centers: Array, radii_sq: Array) -> Array:
  """Per query: how many balls ``(centers, radii)`` contain it."""
  return jnp.sum(_sq_dists(queries, centers) <= radii_sq[None, :], axis=1)


@jax.jit
def _covered(centers: Array, radii_sq: Array, queries: Array) -> Array:
  """Per ball: whether any query lies in it."""
  return jnp.min(_sq_dists(centers, queries), axis=1) <= radii_sq


def _blocks(fn, x: np.ndarray, block_size: int, *args) -> np.ndarray:
  return np.concatenate(
    [np.asarray(fn(x[i : i + block_size], *args)) for i in range(0, len(x), block_size)]
  )


def _check(real, fake, k: int, block_size: int) -> tuple[np.ndarray, np.ndarray]:
  real, fake = np.asarray(real), np.asarray(fake)
  if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
    raise ValueError(
      f'real and fake features must be [N, D] and [M, D] with the same D; got '
      f'{real.shape} and {fake.shape}.'
    )
  if k < 1 or min(len(real), len(fake)) <= k:
    raise ValueError(
      f'k={k} needs k >= 1 and more than k samples in each set; got N={len(real)}, M={len(fake)}.'
    )
  if block_size < 1:
    raise ValueError(f'block_size must be positive, got {block_size}.')
  dtype = np.result_type(real.dtype, fake.dtype, np.float32)
  return real.astype(dtype), fake.astype(dtype)


def knn_radii_sq(features: np.ndarray, k: int, block_size: int = 1024) -> np.ndarray:
  """Squared distance of each row of ``features`` ``[N, D]`` to its k-th nearest other row."""
  features = np.asarray(features)
  points = jnp.asarray(features)
  return _blocks(lambda b: _kth_nn_sq(b, points, k), features, block_size)


def precision_recall(
  real_features: np.ndarray | Array,
  fake_features: np.ndarray | Array,
  *,
  k: int = 3,
  block_size: int = 1024,
) -> dict[str, float]:
  """Improved precision and recall (Kynkäänniemi et al., 2019).

  Args:
    real_features: ``[N, D]``.
    fake_features: ``[M, D]``.
    k: neighbourhood size for the ball radii.
    block_size: rows per distance block.

  Returns:
    ``{'precision': float, 'recall': float}``, both in [0, 1].
  """
  real, fake = _check(real_features, fake_features, k, block_size)
  real_r2 = jnp.asarray(knn_radii_sq(real, k, block_size))
  fake_r2 = jnp.asarray(knn_radii_sq(fake, k, block_size))
  real_j, fake_j = jnp.asarray(real), jnp.asarray(fake)
  in_real = _blocks(lambda b: _ball_counts(b, real_j, real_r2), fake, block_size) > 0
  in_fake = _blocks(lambda b: _ball_counts(b, fake_j, fake_r2), real, block_size) > 0
  return {'precision': float(in_real.mean()), 'recall': float(in_fake.mean())}


def density_coverage(
  real_features: np.ndarray | Array,
  fake_features: np.ndarray | Array,
  *,
  k: int = 5,
  block_size: int = 1024,
) -> dict[str, float]:
  """Density and coverage (Naeem et al., 2020).

  Args:
    real_features: ``[N, D]``.
    fake_features: ``[M, D]``.
    k: neighbourhood size for the real ball radii.
    block_size: rows per distance block.

  Returns:
    ``{'density': float, 'coverage': float}``; coverage in [0, 1].
  """
  real, fake = _check(real_features, fake_features, k, block_size)
  real_r2 = knn_radii_sq(real, k, block_size)
  real_j, fake_j, real_r2_j = jnp.asarray(real), jnp.asarray(fake), jnp.asarray(real_r2)
  counts = _blocks(lambda b: _ball_counts(b, real_j, real_r2_j), fake, block_size)
  covered = np.concatenate(
    [
      np.asarray(_covered(real_j[i : i + block_size], real_r2_j[i : i + block_size], fake_j))
      for i in range(0, len(real), block_size)
    ]
  )
  return {
    'density': float(counts.sum() / (k * len(fake))),
    'coverage': float(covered.mean()),
  }
