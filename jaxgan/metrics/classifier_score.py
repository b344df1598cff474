"""Inception Score (a.k.a. classifier score) from class probabilities (Salimans et al., 2016).

``IS = exp(E_x KL(p(y|x) || p(y)))`` with ``p(y)`` the mean of ``p(y|x)`` over
the split. The samples are cut into ``splits`` consecutive, equal parts (the
``N mod splits`` last samples are left out, as in the original code); the
score is computed per part and reported as mean and standard deviation.
Computed in float64 numpy.
"""

from __future__ import annotations

import numpy as np


def inception_score(
  probs: np.ndarray | None = None, *, logits: np.ndarray | None = None, splits: int = 10
) -> tuple[float, float]:
  """Inception Score, mean and std over ``splits`` parts.

  Args:
    probs: class probabilities ``[N, K]`` (rows sum to 1). Give this or
      ``logits``.
    logits: unnormalised log-probabilities ``[N, K]`` (softmax is applied in
      float64).
    splits: number of parts; each needs at least one sample.

  Returns:
    ``(mean, std)`` as Python floats; 1 is the minimum, ``K`` the maximum.
  """
  if (probs is None) == (logits is None):
    raise ValueError('pass exactly one of probs=[N, K] or logits=[N, K].')
  if logits is not None:
    logits = np.asarray(logits, np.float64)
    shifted = logits - np.max(logits, axis=-1, keepdims=True)
    log_p = shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
  else:
    probs = np.asarray(probs, np.float64)
    if probs.ndim == 2 and (np.any(probs < 0) or not np.allclose(probs.sum(1), 1.0, atol=1e-4)):
      raise ValueError(
        'probs rows must be non-negative and sum to 1; pass logits=... for unnormalised scores.'
      )
    with np.errstate(divide='ignore'):
      log_p = np.log(probs)
  if log_p.ndim != 2:
    raise ValueError(f'probabilities/logits must be [N, K]; got shape {log_p.shape}.')
  n = log_p.shape[0]
  if splits < 1 or n < splits:
    raise ValueError(f'need 1 <= splits <= N; got splits={splits}, N={n}.')
  part = n // splits
  scores = []
  for s in range(splits):
    lp = log_p[s * part : (s + 1) * part]
    p = np.exp(lp)
    with np.errstate(divide='ignore', invalid='ignore'):
      log_py = np.log(np.mean(p, axis=0))
      # 0 * log 0 = 0: classes with p(y|x) = 0 contribute nothing.
      kl = np.sum(np.where(p > 0, p * (lp - log_py), 0.0), axis=1)
    scores.append(np.exp(np.mean(kl)))
  return float(np.mean(scores)), float(np.std(scores))
