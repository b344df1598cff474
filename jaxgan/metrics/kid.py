"""Kernel (Inception) Distance: unbiased polynomial-kernel MMD² over subsets.

Binkowski et al. (2018): with ``k(x, y) = (x . y / d + 1)^3`` and ``m`` samples
from each set,

``MMD²_u = sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) / (m (m - 1))
- 2 sum_{i, j} k(x_i, y_j) / m²``,

an unbiased estimate of the squared MMD (so it is near 0, and can be
negative, for two samples of one distribution). KID averages it over random
subsets drawn without replacement and reports the mean and the standard
deviation over subsets. Kernel matrices are float32 products summed in
float64.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def _polynomial_mmd2_unbiased(x: Array, y: Array) -> Array:
  """Unbiased MMD² with the cubic polynomial kernel; ``x``, ``y`` ``[m, d]`` float32."""
  m, d = x.shape

  def kernel_sums(a, b):
    k = (jnp.matmul(a, b.T, precision='highest').astype(jnp.float64) / d + 1.0) ** 3
    return jnp.sum(k), jnp.trace(k)

  sum_xx, tr_xx = kernel_sums(x, x)
  sum_yy, tr_yy = kernel_sums(y, y)
  sum_xy, _ = kernel_sums(x, y)
  return (sum_xx - tr_xx + sum_yy - tr_yy) / (m * (m - 1)) - 2.0 * sum_xy / (m * m)


@jax.jit
def _subset_mmd2(real: Array, fake: Array, real_idx: Array, fake_idx: Array) -> Array:
  return jax.lax.map(
    lambda idx: _polynomial_mmd2_unbiased(real[idx[0]], fake[idx[1]]), (real_idx, fake_idx)
  )


def polynomial_mmd2_unbiased(x: np.ndarray | Array, y: np.ndarray | Array) -> float:
  """Unbiased MMD² between two equal-size feature sets ``[m, d]`` (cubic kernel)."""
  x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
  if x.ndim != 2 or x.shape != y.shape or x.shape[0] < 2:
    raise ValueError(
      f'x and y must both be [m, d] with the same m >= 2; got {x.shape} and {y.shape}.'
    )
  with jax.enable_x64(True):
    return float(_polynomial_mmd2_unbiased(jnp.asarray(x), jnp.asarray(y)))


def kernel_distance(
  real_features: np.ndarray | Array,
  fake_features: np.ndarray | Array,
  *,
  num_subsets: int = 100,
  subset_size: int = 1000,
  seed: int = 0,
) -> tuple[float, float]:
  """KID: mean and standard deviation of the unbiased MMD² over random subsets.

  Args:
    real_features: ``[N, D]``.
    fake_features: ``[M, D]``.
    num_subsets: number of subset pairs.
    subset_size: samples per subset; capped at ``min(N, M)``.
    seed: numpy seed of the subset draws (without replacement in each subset).

  Returns:
    ``(mean, std)`` over subsets, Python floats (``std`` is 0 for one subset).
  """
  real = np.asarray(real_features, np.float32)
  fake = np.asarray(fake_features, np.float32)
  if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
    raise ValueError(
      f'real and fake features must be [N, D] and [M, D] with the same D; got '
      f'{real.shape} and {fake.shape}.'
    )
  m = min(subset_size, real.shape[0], fake.shape[0])
  if m < 2:
    raise ValueError(
      f'KID needs subsets of at least 2 samples; got subset_size={subset_size}, '
      f'N={real.shape[0]}, M={fake.shape[0]}.'
    )
  if num_subsets < 1:
    raise ValueError(f'num_subsets must be >= 1, got {num_subsets}.')
  rng = np.random.default_rng(seed)
  real_idx = np.stack([rng.choice(real.shape[0], m, replace=False) for _ in range(num_subsets)])
  fake_idx = np.stack([rng.choice(fake.shape[0], m, replace=False) for _ in range(num_subsets)])
  with jax.enable_x64(True):
    values = np.asarray(_subset_mmd2(real, fake, real_idx, fake_idx))
  return float(values.mean()), float(values.std())
