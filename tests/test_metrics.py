"""Feature-space metrics against closed forms and independent float64 references."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from jaxgan.metrics import classifier_score, frechet, kid, knn_manifold, mode_coverage
from jaxgan.metrics.features import FeatureExtractor


def _random_spd(rng, d, scale=1.0):
  a = rng.standard_normal((d, d))
  return scale * (a @ a.T / d + 0.1 * np.eye(d))


# ----------------------------------------------------------------------------- Fréchet distance


def test_feature_statistics_match_numpy():
  rng = np.random.default_rng(0)
  x = rng.standard_normal((50, 7)).astype(np.float32) * 3 + 1
  mu, sigma = frechet.feature_statistics(x)
  assert mu.dtype == np.float64 and sigma.dtype == np.float64
  np.testing.assert_allclose(mu, x.astype(np.float64).mean(0), rtol=1e-12)
  np.testing.assert_allclose(sigma, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-11)


def test_fd_of_identical_gaussians_is_zero():
  rng = np.random.default_rng(1)
  mu, sigma = rng.standard_normal(16), _random_spd(rng, 16)
  fd = frechet.frechet_distance(mu, sigma, mu, sigma)
  assert abs(fd) < 1e-9 * np.trace(sigma)


def test_fd_closed_form_diagonal():
  # Diagonal covariances commute: FD = |m1 - m2|^2 + sum (s1 - s2)^2 with s the std devs.
  mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, -1.0, 2.5])
  s1, s2 = np.array([1.0, 2.0, 0.5]), np.array([3.0, 1.0, 0.5])
  fd = frechet.frechet_distance(mu1, np.diag(s1**2), mu2, np.diag(s2**2))
  expected = 1.0 + 4.0 + 0.25 + (4.0 + 1.0 + 0.0)
  assert fd == pytest.approx(expected, rel=1e-12)


def test_fd_closed_form_scaled_covariance():
  # sigma2 = a^2 sigma1 (full, non-diagonal): tr sqrt(sigma1 sigma2) = a tr sigma1.
  rng = np.random.default_rng(2)
  sigma1, a = _random_spd(rng, 12), 1.7
  mu1, mu2 = rng.standard_normal(12), rng.standard_normal(12)
  fd = frechet.frechet_distance(mu1, sigma1, mu2, a**2 * sigma1)
  expected = np.sum((mu1 - mu2) ** 2) + (1 - a) ** 2 * np.trace(sigma1)
  assert fd == pytest.approx(expected, rel=1e-10)


def test_fd_matches_scipy_sqrtm_on_random_features():
  rng = np.random.default_rng(3)
  x = rng.standard_normal((400, 24)) @ rng.standard_normal((24, 24))
  y = rng.standard_normal((300, 24)) @ rng.standard_normal((24, 24)) + 0.5
  mu1, s1 = x.mean(0), np.cov(x, rowvar=False)
  mu2, s2 = y.mean(0), np.cov(y, rowvar=False)
  covmean = scipy.linalg.sqrtm(s1 @ s2).real
  expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
  fd = frechet.frechet_distance_from_features(x, y)
  assert fd == pytest.approx(expected, rel=1e-9)


def test_fd_with_singular_covariances_matches_eigvals_reference():
  # Fewer samples than dimensions: both covariances are rank-deficient.
  rng = np.random.default_rng(4)
  x, y = rng.standard_normal((10, 32)), rng.standard_normal((12, 32)) + 0.1
  s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
  eig = np.linalg.eigvals(s1 @ s2)
  tr_sqrt = np.sum(np.sqrt(np.clip(eig.real, 0, None)))
  assert frechet.trace_sqrt_product(s1, s2) == pytest.approx(tr_sqrt, rel=1e-7)
  fd = frechet.frechet_distance_from_features(x, y)
  expected = np.sum((x.mean(0) - y.mean(0)) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
  assert fd == pytest.approx(expected, rel=1e-7)


def test_fd_rejects_bad_input():
  with pytest.raises(ValueError, match='feature dimensions differ'):
    frechet.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
  with pytest.raises(ValueError, match=r'sigma1 \[D, D\]'):
    frechet.frechet_distance(np.zeros(3), np.eye(2), np.zeros(3), np.eye(3))
  with pytest.raises(ValueError, match='NaN'):
    frechet.frechet_distance(np.full(2, np.nan), np.eye(2), np.zeros(2), np.eye(2))
  with pytest.raises(ValueError, match='at least 2 samples'):
    frechet.feature_statistics(np.zeros((1, 3)))


# ----------------------------------------------------------------------------- KID


def _mmd2_unbiased_loops(x, y):
  x, y = x.astype(np.float64), y.astype(np.float64)
  m, d = x.shape
  k = lambda a, b: (a @ b / d + 1.0) ** 3
  kxx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2))
  kyy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2))
  kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
  return kxx / (m * (m - 1)) + kyy / (m * (m - 1)) - 2 * kxy / m**2


def test_mmd2_matches_explicit_double_sums():
  rng = np.random.default_rng(5)
  x = rng.standard_normal((15, 6)).astype(np.float32)
  y = (rng.standard_normal((15, 6)) + 0.3).astype(np.float32)
  assert kid.polynomial_mmd2_unbiased(x, y) == pytest.approx(_mmd2_unbiased_loops(x, y), rel=1e-5)


def test_kid_single_full_subset_equals_mmd2():
  rng = np.random.default_rng(6)
  x = rng.standard_normal((20, 5)).astype(np.float32)
  y = rng.standard_normal((20, 5)).astype(np.float32) * 1.5
  mean, std = kid.kernel_distance(x, y, num_subsets=1, subset_size=20)
  assert mean == pytest.approx(_mmd2_unbiased_loops(x, y), rel=1e-5)
  assert std == 0.0


def test_kid_is_unbiased_for_same_distribution():
  # Fresh independent draws each repetition: E[MMD²_u] = 0. The biased
  # V-statistic (diagonal terms included) on the same draws is clearly positive,
  # so this test separates the two estimators.
  rng = np.random.default_rng(7)
  m, d, reps = 40, 8, 300
  unbiased, biased = [], []
  for _ in range(reps):
    x = rng.standard_normal((m, d)).astype(np.float32)
    y = rng.standard_normal((m, d)).astype(np.float32)
    unbiased.append(kid.polynomial_mmd2_unbiased(x, y))
    kxx = (x.astype(np.float64) @ x.T / d + 1) ** 3
    kyy = (y.astype(np.float64) @ y.T / d + 1) ** 3
    kxy = (x.astype(np.float64) @ y.T / d + 1) ** 3
    biased.append(kxx.mean() + kyy.mean() - 2 * kxy.mean())
  se = np.std(unbiased) / np.sqrt(reps)
  assert abs(np.mean(unbiased)) < 4 * se
  assert np.mean(biased) > 10 * se


def test_kid_detects_shift_and_caps_subset_size():
  rng = np.random.default_rng(8)
  x = rng.standard_normal((60, 4)).astype(np.float32)
  y = rng.standard_normal((50, 4)).astype(np.float32) + 1.0
  mean, std = kid.kernel_distance(x, y, num_subsets=10, subset_size=1000)
  assert mean > 10 * max(std, 1e-6) or mean > 0.5
  same, _ = kid.kernel_distance(x, x[::-1].copy(), num_subsets=10, subset_size=1000)
  assert abs(same) < 0.1 * mean


def test_kid_rejects_bad_input():
  with pytest.raises(ValueError, match='same D'):
    kid.kernel_distance(np.zeros((5, 3)), np.zeros((5, 4)))
  with pytest.raises(ValueError, match='at least 2'):
    kid.kernel_distance(np.zeros((1, 3)), np.zeros((5, 3)))


# ----------------------------------------------------------------------------- Inception Score


def test_is_uniform_predictions_is_one():
  mean, std = classifier_score.inception_score(np.full((100, 10), 0.1), splits=5)
  assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_is_confident_balanced_predictions_equals_num_classes():
  probs = np.eye(7)[np.tile(np.arange(7), 20)]  # each split of 14 sees every class twice
  mean, std = classifier_score.inception_score(probs, splits=10)
  assert mean == pytest.approx(7.0, rel=1e-12) and std == pytest.approx(0.0, abs=1e-9)


def test_is_matches_entropy_form_and_logits_path():
  # exp(E KL(p(y|x) || p(y))) = exp(H(p(y)) - E H(p(y|x))), per split.
  rng = np.random.default_rng(9)
  logits = rng.standard_normal((103, 6)) * 2
  probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  splits = 4
  part = 103 // splits
  entropy = lambda p: -np.sum(p * np.log(p), axis=-1)
  scores = [
    np.exp(
      entropy(probs[i * part : (i + 1) * part].mean(0))
      - entropy(probs[i * part : (i + 1) * part]).mean()
    )
    for i in range(splits)
  ]
  mean, std = classifier_score.inception_score(probs, splits=splits)
  assert mean == pytest.approx(np.mean(scores), rel=1e-10)
  assert std == pytest.approx(np.std(scores), rel=1e-8)
  mean_l, std_l = classifier_score.inception_score(logits=logits, splits=splits)
  assert mean_l == pytest.approx(mean, rel=1e-10) and std_l == pytest.approx(std, rel=1e-8)


def test_is_rejects_bad_input():
  with pytest.raises(ValueError, match='exactly one'):
    classifier_score.inception_score()
  with pytest.raises(ValueError, match='sum to 1'):
    classifier_score.inception_score(np.ones((4, 3)))
  with pytest.raises(ValueError, match='splits'):
    classifier_score.inception_score(np.full((3, 2), 0.5), splits=5)


# ----------------------------------------------------------------------------- precision / recall


def _line(xs):
  xs = np.asarray(xs, np.float64)
  return np.stack([xs, np.zeros_like(xs)], axis=1)


def test_precision_recall_constructed():
  # Real 0..9 on a line, k=3 radii: 3 at the ends, 2 inside. Fake 0.2, 1.2,
  # 2.2, 3.2 (k=3 radii 3, 2, 2, 3) cover [-2.8, 6.2]: reals 0..6 -> recall 0.7;
  # every fake lies in a real ball -> precision 1.
  real, fake = _line(range(10)), _line([0.2, 1.2, 2.2, 3.2])
  out = knn_manifold.precision_recall(real, fake, k=3)
  assert out == {'precision': pytest.approx(1.0), 'recall': pytest.approx(0.7)}
  # Two far fakes leave the real manifold: precision 2/4.
  out = knn_manifold.precision_recall(real, _line([0.2, 4.5, 30, 31]), k=3)
  assert out['precision'] == pytest.approx(0.5)


def test_density_coverage_constructed():
  # Real 0..9, k=2 radii: 2 at the ends, 1 inside. Fakes 0.5 and 0.6 each lie in
  # the balls of reals 0 and 1; 5.3 in those of 5 and 6; 20 in none.
  # density = (2 + 2 + 2 + 0) / (2 * 4) = 0.75; covered balls {0, 1, 5, 6} -> 0.4.
  out = knn_manifold.density_coverage(_line(range(10)), _line([0.5, 0.6, 5.3, 20.0]), k=2)
  assert out == {'density': pytest.approx(0.75), 'coverage': pytest.approx(0.4)}


def _brute_force(real, fake, k):
  def radii(x):
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    return np.sort(d, axis=1)[:, k]

  d_rf = np.linalg.norm(real[:, None] - fake[None], axis=-1)  # [N, M]
  r_real, r_fake = radii(real), radii(fake)
  inside = d_rf <= r_real[:, None]
  return {
    'precision': np.mean(inside.any(axis=0)),
    'recall': np.mean((d_rf <= r_fake[None, :]).any(axis=1)),
    'density': inside.sum() / (k * len(fake)),
    'coverage': np.mean(inside.any(axis=1)),
  }


@pytest.mark.parametrize('k', [1, 3, 5])
def test_knn_metrics_match_brute_force(k):
  rng = np.random.default_rng(10 + k)
  real = rng.standard_normal((70, 5))
  fake = rng.standard_normal((45, 5)) * 1.3 + 0.4
  expected = _brute_force(real, fake, k)
  # Small blocks exercise the blocked path, including a ragged last block.
  pr = knn_manifold.precision_recall(real, fake, k=k, block_size=16)
  dc = knn_manifold.density_coverage(real, fake, k=k, block_size=16)
  for name, value in {**pr, **dc}.items():
    assert value == pytest.approx(expected[name], abs=1e-12), name


def test_identical_sets_have_full_precision_recall_and_coverage():
  x = np.random.default_rng(11).standard_normal((30, 3))
  pr = knn_manifold.precision_recall(x, x)
  dc = knn_manifold.density_coverage(x, x)
  assert pr == {'precision': 1.0, 'recall': 1.0}
  assert dc['coverage'] == 1.0


def test_knn_metrics_reject_bad_input():
  with pytest.raises(ValueError, match='more than k samples'):
    knn_manifold.precision_recall(np.zeros((3, 2)), np.zeros((10, 2)), k=3)
  with pytest.raises(ValueError, match='same D'):
    knn_manifold.density_coverage(np.zeros((10, 2)), np.zeros((10, 3)))


# ----------------------------------------------------------------------------- mode coverage


def test_gaussian_mixture_quality_counts_modes_and_quality():
  angles = np.arange(8) * np.pi / 4
  centers = 2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
  std = 0.02
  rng = np.random.default_rng(12)
  near0 = centers[0] + rng.uniform(-1, 1, (10, 2)) * std  # within sqrt(2) std
  near3 = centers[3] + rng.uniform(-1, 1, (5, 2)) * std
  edge5 = centers[5] + np.array([[3.5 * std, 0.0]])  # nearest is mode 5 but beyond 3 std
  centre = np.zeros((4, 2))  # 100 std from every mode
  samples = np.concatenate([near0, near3, edge5, centre])
  out = mode_coverage.gaussian_mixture_quality(samples, centers, std)
  assert out['modes_covered'] == 2 and out['num_modes'] == 8
  assert out['high_quality_fraction'] == pytest.approx(15 / 20)
  np.testing.assert_array_equal(out['mode_counts'], [10, 0, 0, 5, 0, 0, 0, 0])
  strict = mode_coverage.gaussian_mixture_quality(samples, centers, std, min_count=6)
  assert strict['modes_covered'] == 1
  wide = mode_coverage.gaussian_mixture_quality(samples, centers, std, num_std=4.0)
  assert wide['modes_covered'] == 3


def test_gaussian_mixture_quality_rejects_bad_input():
  with pytest.raises(ValueError, match='std must be positive'):
    mode_coverage.gaussian_mixture_quality(np.zeros((2, 2)), np.zeros((1, 2)), 0.0)
  with pytest.raises(ValueError, match='same D'):
    mode_coverage.gaussian_mixture_quality(np.zeros((2, 2)), np.zeros((1, 3)), 1.0)


def _one_hot_triples(triples):
  triples = np.asarray(triples)
  return np.eye(10)[triples]  # [N, 3, 10]


def test_stacked_mnist_modes_known_answers():
  all_modes = list(itertools.product(range(10), repeat=3))
  out = mode_coverage.stacked_mnist_modes(_one_hot_triples(all_modes))
  assert out['modes_covered'] == 1000 and out['kl_to_uniform'] == pytest.approx(0.0, abs=1e-12)
  out = mode_coverage.stacked_mnist_modes(_one_hot_triples([(3, 1, 4)] * 7))
  assert out['modes_covered'] == 1 and out['kl_to_uniform'] == pytest.approx(np.log(1000))
  assert out['mode_counts'][314] == 7
  out = mode_coverage.stacked_mnist_modes(_one_hot_triples([(0, 0, 1)] * 3 + [(9, 9, 9)]))
  expected = 0.75 * np.log(0.75 * 1000) + 0.25 * np.log(0.25 * 1000)
  assert out['modes_covered'] == 2 and out['kl_to_uniform'] == pytest.approx(expected)
  with pytest.raises(ValueError, match=r'\[N, 3, 10\]'):
    mode_coverage.stacked_mnist_modes(np.zeros((4, 10)))


def test_stacked_mnist_channel_logits_keeps_channel_order():
  # A stand-in classifier whose logits peak at round(mean pixel * 4.5 + 4.5).
  def apply(params, images):
    digit = jnp.round(images.mean(axis=(1, 2, 3)) * 4.5 + 4.5).astype(jnp.int32)
    return {'features': images.mean(axis=(1, 2)), 'logits': jax.nn.one_hot(digit, 10) * 5.0}

  extractor = FeatureExtractor('fake', apply, params={}, image_shape=(8, 8, 1), batch_size=4)
  triples = np.array([[1, 2, 3], [9, 0, 5], [4, 4, 8]])
  images = np.broadcast_to(((triples - 4.5) / 4.5)[:, None, None, :], (3, 8, 8, 3)).astype(
    np.float32
  )
  logits = mode_coverage.stacked_mnist_channel_logits(images, extractor)
  assert logits.shape == (3, 3, 10)
  np.testing.assert_array_equal(logits.argmax(-1), triples)
  out = mode_coverage.stacked_mnist_modes(logits)
  assert sorted(np.flatnonzero(out['mode_counts'])) == [123, 448, 905]
