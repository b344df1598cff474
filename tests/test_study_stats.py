"""The statistics that decide the claims of docs/RESULTS.md (experiments.study_stats)."""

import math

import numpy as np
import pytest
from scipy import stats

from experiments import study_stats as ss


def test_welch_interval_matches_scipy_and_a_hand_computation():
  a = [12.1, 14.3, 11.8, 13.9, 12.6]
  b = [15.2, 14.1, 18.9, 16.4, 17.7, 15.0]
  iv = ss.welch_interval(a, b)
  ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
  np.testing.assert_allclose([iv.low, iv.high], [ref.low, ref.high], rtol=1e-12)
  # Welch-Satterthwaite by hand.
  va, vb = np.var(a, ddof=1) / 5, np.var(b, ddof=1) / 6
  df = (va + vb) ** 2 / (va**2 / 4 + vb**2 / 5)
  assert iv.df == pytest.approx(df, rel=1e-12)
  assert iv.difference == pytest.approx(np.mean(a) - np.mean(b), rel=1e-12)
  assert iv.low < iv.difference < iv.high
  wider = ss.welch_interval(a, b, confidence=0.99)
  assert wider.low < iv.low and wider.high > iv.high


def test_welch_interval_covers_the_true_difference_at_its_level():
  rng = np.random.default_rng(0)
  hits = 0
  trials = 2000
  for _ in range(trials):
    iv = ss.welch_interval(rng.normal(1.0, 1.0, 5), rng.normal(0.0, 3.0, 5))
    hits += iv.low <= 1.0 <= iv.high
  assert abs(hits / trials - 0.95) < 0.015


def test_welch_interval_of_constant_arms_is_a_point_and_bad_inputs_are_refused():
  iv = ss.welch_interval([2.0, 2.0], [1.0, 1.0])
  assert (iv.low, iv.high, iv.difference) == (1.0, 1.0, 1.0) and math.isinf(iv.df)
  with pytest.raises(ValueError, match='at least 2 seeds'):
    ss.welch_interval([1.0], [1.0, 2.0])
  with pytest.raises(ValueError, match='confidence'):
    ss.welch_interval([1.0, 2.0], [1.0, 2.0], confidence=1.0)


@pytest.mark.parametrize(
  ('low', 'high', 'lower_is_better', 'margin', 'expected'),
  [
    (-3.0, -1.0, True, 0.0, ss.REPRODUCED),  # surely lower FID
    (-3.0, 1.0, True, 0.0, ss.INCONCLUSIVE),
    (-3.0, 1.0, True, 1.5, ss.REPRODUCED),  # at most 1 worse: within the margin
    (0.5, 2.0, True, 0.0, ss.NOT_REPRODUCED),  # surely higher FID
    (0.5, 2.0, True, 1.0, ss.INCONCLUSIVE),  # may be within the margin
    (2.5, 3.0, True, 2.0, ss.NOT_REPRODUCED),
    (1.0, 3.0, False, 0.0, ss.REPRODUCED),  # surely more modes
    (-3.0, -1.0, False, 0.0, ss.NOT_REPRODUCED),
    (-0.5, 0.5, False, 1.0, ss.REPRODUCED),  # accuracy within 1 point
    (-2.0, 0.5, False, 1.0, ss.INCONCLUSIVE),
    (0.0, 0.0, False, 0.0, ss.INCONCLUSIVE),  # a tie is not "more modes"
    (-1.0, 0.0, True, 0.0, ss.INCONCLUSIVE),
    (0.0, 0.0, True, 0.5, ss.REPRODUCED),  # a tie is "at most"
  ],
)
def test_verdict(low, high, lower_is_better, margin, expected):
  iv = ss.Interval((low + high) / 2, low, high, 8.0, 0.95)
  assert ss.verdict(iv, lower_is_better=lower_is_better, margin=margin) == expected


def test_verdict_refuses_a_negative_margin():
  with pytest.raises(ValueError, match='margin'):
    ss.verdict(ss.Interval(0, -1, 1, 4, 0.95), lower_is_better=True, margin=-1)


def test_mean_std_and_relative_spread():
  assert ss.mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
  assert ss.mean_std([4.0]) == (4.0, 0.0)
  assert ss.relative_spread([10.0, 10.4, 10.5]) == pytest.approx(0.05)
  with pytest.raises(ValueError):
    ss.relative_spread([0.0, 1.0])


def test_mean_interval_matches_scipy():
  v = [18.0, 21.0, 15.0, 19.0, 17.0]
  iv = ss.mean_interval(v)
  ref = stats.ttest_1samp(v, 0.0).confidence_interval(0.95)
  np.testing.assert_allclose([iv.low, iv.high], [ref.low, ref.high], rtol=1e-12)
  assert iv.difference == pytest.approx(18.0) and iv.df == 4
  with pytest.raises(ValueError, match='at least 2'):
    ss.mean_interval([1.0])
