"""Fréchet distance between Gaussians fitted to feature sets (FID).

``FD = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))``.

Statistics are float64. The trace of the matrix square root uses the
symmetric form ``tr((S1 S2)^(1/2)) = sum_i sqrt(lambda_i(A S2 A))`` with
``A = S1^(1/2)``: ``S1 S2`` is similar to the symmetric PSD matrix ``A S2 A``
(``A^-1 (A S2 A) A = S1 S2`` when ``A`` is invertible, and by continuity
otherwise), so its eigenvalues are real and non-negative. Both steps are
``eigh`` calls, which run on accelerators, unlike a Schur-based ``sqrtm``;
tiny negative eigenvalues from round-off are clipped to zero. Singular
covariances (fewer samples than feature dimensions) need no regularising
offset in this form.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def _as_features(x, name: str) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim != 2:
    raise ValueError(f'{name} must be a feature matrix [N, D]; got shape {x.shape}.')
  if x.shape[0] < 2:
    raise ValueError(
      f'{name} has {x.shape[0]} row(s); a covariance needs at least 2 samples (N >= 2).'
    )
  return x


def feature_statistics(features: np.ndarray | Array) -> tuple[np.ndarray, np.ndarray]:
  """Mean and covariance of a feature matrix, in float64.

  Args:
    features: ``[N, D]`` with ``N >= 2``.

  Returns:
    ``(mu [D], sigma [D, D])``, float64 numpy; ``sigma`` is the unbiased
    (``N - 1``) sample covariance.
  """
  features = _as_features(features, 'features')
  with jax.enable_x64(True):
    x = jnp.asarray(features, jnp.float64)
    mu = jnp.mean(x, axis=0)
    xc = x - mu
    sigma = xc.T @ xc / (x.shape[0] - 1)
    return np.asarray(mu), np.asarray(sigma)


@jax.jit
def _trace_sqrt_product(sigma1: Array, sigma2: Array) -> Array:
  w1, v1 = jnp.linalg.eigh(sigma1)
  sqrt1 = (v1 * jnp.sqrt(jnp.clip(w1, 0.0))) @ v1.T
  inner = sqrt1 @ sigma2 @ sqrt1
  inner = 0.5 * (inner + inner.T)  # symmetric up to round-off; make it exactly so
  return jnp.sum(jnp.sqrt(jnp.clip(jnp.linalg.eigvalsh(inner), 0.0)))


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
  """``tr((sigma1 sigma2)^(1/2))`` for PSD ``sigma1``, ``sigma2`` ``[D, D]``, in float64."""
  with jax.enable_x64(True):
    return float(
      _trace_sqrt_product(jnp.asarray(sigma1, jnp.float64), jnp.asarray(sigma2, jnp.float64))
    )


def frechet_distance(
  mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
  """Fréchet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

  Args:
    mu1: mean ``[D]``; ``sigma1``: covariance ``[D, D]`` (symmetric PSD).
    mu2: mean ``[D]``; ``sigma2``: covariance ``[D, D]``.

  Returns:
    The squared Fréchet (2-Wasserstein) distance as a Python float (>= 0 up
    to round-off).
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  d = mu1.shape[0] if mu1.ndim == 1 else None
  for name, m, s in (('1', mu1, sigma1), ('2', mu2, sigma2)):
    if m.ndim != 1 or s.shape != (m.shape[0], m.shape[0]):
      raise ValueError(f'mu{name} must be [D] and sigma{name} [D, D]; got {m.shape} and {s.shape}.')
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(s))):
      raise ValueError(f'mu{name}/sigma{name} contain NaN or inf; check the features.')
  if mu2.shape[0] != d:
    raise ValueError(
      f'feature dimensions differ: {d} vs {mu2.shape[0]}; both sets must come from '
      'the same extractor.'
    )
  diff = mu1 - mu2
  tr_covmean = trace_sqrt_product(sigma1, sigma2)
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def frechet_distance_from_features(
  features1: np.ndarray | Array, features2: np.ndarray | Array
) -> float:
  """Fréchet distance between Gaussians fitted to two ``[N, D]`` feature matrices."""
  mu1, sigma1 = feature_statistics(features1)
  mu2, sigma2 = feature_statistics(features2)
  return frechet_distance(mu1, sigma1, mu2, sigma2)
