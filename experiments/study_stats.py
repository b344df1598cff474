"""Statistics that decide a study's claims: mean ± std per arm, Welch intervals, verdicts.

A claim compares a technique arm with a reference arm over independent seeds. The
difference of their means gets Welch's two-sided t interval (unequal variances,
Welch-Satterthwaite degrees of freedom). The verdict reads that interval against the
claim: with ``worse`` the amount by which the technique is worse than the reference
(``technique - reference`` when lower is better, its negative otherwise) and a margin
``m`` >= 0 below which a difference counts as equal,

* ``reproduced``: the interval excludes "worse" (every value in it has ``worse <= m``);
* ``not reproduced``: it excludes "equal or better" (every value has ``worse > m``);
* ``inconclusive``: otherwise.

"Better" claims use ``m = 0``, and then a tie is not "better": the interval must lie
strictly below 0 worse. "Equal" and "at most" claims use an equivalence margin that the
study states.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import stats

REPRODUCED = 'reproduced'
NOT_REPRODUCED = 'not reproduced'
INCONCLUSIVE = 'inconclusive'


@dataclasses.dataclass(frozen=True)
class Interval:
  """Welch interval of ``mean(technique) - mean(reference)``."""

  difference: float
  low: float
  high: float
  df: float  # Welch-Satterthwaite degrees of freedom (inf when both arms are constant)
  confidence: float

  def __str__(self) -> str:
    return f'{self.difference:+.2f} [{self.low:+.2f}, {self.high:+.2f}]'


def mean_std(values) -> tuple[float, float]:
  """Mean and sample standard deviation (ddof 1; 0 for one value) of ``values`` ``[n]``."""
  v = np.asarray(values, np.float64)
  if v.ndim != 1 or v.size == 0:
    raise ValueError(f'mean_std needs a non-empty 1-D sequence; got shape {v.shape}.')
  return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def welch_interval(technique, reference, confidence: float = 0.95) -> Interval:
  """Welch's two-sided ``confidence`` interval of ``mean(technique) - mean(reference)``.

  Args:
    technique: per-seed values of the technique arm, ``[n1]`` with ``n1 >= 2``.
    reference: per-seed values of the reference arm, ``[n2]`` with ``n2 >= 2``.
    confidence: coverage in (0, 1).

  Returns:
    The :class:`Interval`.
  """
  a, b = np.asarray(technique, np.float64), np.asarray(reference, np.float64)
  if a.ndim != 1 or b.ndim != 1 or a.size < 2 or b.size < 2:
    raise ValueError(
      f'welch_interval needs at least 2 seeds per arm; got shapes {a.shape} and {b.shape}. '
      'Run more seeds.'
    )
  if not 0.0 < confidence < 1.0:
    raise ValueError(f'confidence must lie in (0, 1); got {confidence}.')
  va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
  diff = float(a.mean() - b.mean())
  se = math.sqrt(va + vb)
  if se == 0.0:
    return Interval(diff, diff, diff, math.inf, confidence)
  df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
  half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
  return Interval(diff, diff - half, diff + half, float(df), confidence)


def mean_interval(values, confidence: float = 0.95) -> Interval:
  """Student's t ``confidence`` interval of the mean of ``values`` ``[n]``, ``n >= 2``
  (``difference`` holds the mean)."""
  v = np.asarray(values, np.float64)
  if v.ndim != 1 or v.size < 2:
    raise ValueError(f'mean_interval needs at least 2 values; got shape {v.shape}.')
  if not 0.0 < confidence < 1.0:
    raise ValueError(f'confidence must lie in (0, 1); got {confidence}.')
  se = v.std(ddof=1) / math.sqrt(v.size)
  half = float(stats.t.ppf(0.5 + confidence / 2, v.size - 1)) * se
  return Interval(
    float(v.mean()), float(v.mean() - half), float(v.mean() + half), v.size - 1.0, confidence
  )


def verdict(interval: Interval, *, lower_is_better: bool, margin: float = 0.0) -> str:
  """The claim's verdict from the interval of ``technique - reference`` (module docstring).

  Args:
    interval: from :func:`welch_interval`.
    lower_is_better: True for FID-like metrics, False for accuracy-like ones.
    margin: differences up to ``margin`` in the worse direction count as equal (>= 0).
  """
  if margin < 0:
    raise ValueError(f'margin must be >= 0; got {margin}.')
  lo, hi = (interval.low, interval.high) if lower_is_better else (-interval.high, -interval.low)
  if hi < margin or (margin > 0 and hi == margin):  # a "better" claim (margin 0) needs hi < 0
    return REPRODUCED
  if lo > margin:
    return NOT_REPRODUCED
  return INCONCLUSIVE


def relative_spread(values) -> float:
  """``max / min - 1`` of positive ``values`` ``[n]``: how far apart they are, relatively.

  The convergence test of a baseline: its last three evaluations lie within 5% of one
  another when this is <= 0.05.
  """
  v = np.asarray(values, np.float64)
  if v.ndim != 1 or v.size == 0 or np.any(v <= 0):
    raise ValueError(f'relative_spread needs positive values; got {v}.')
  return float(v.max() / v.min() - 1.0)
