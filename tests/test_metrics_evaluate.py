"""evaluate_generator / evaluate_images / reference files / benchmark helpers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan.metrics import evaluate, frechet, kid, reference
from jaxgan.metrics.classifier_score import inception_score
from jaxgan.metrics.features import FeatureExtractor
from jaxgan.metrics.knn_manifold import density_coverage, precision_recall


def _apply(params, images):
  # Features: per-channel means and variances; logits: a fixed linear map of them.
  feats = jnp.concatenate([images.mean(axis=(1, 2)), images.var(axis=(1, 2))], axis=-1)
  return {'features': feats, 'logits': feats @ params}


EXTRACTOR = FeatureExtractor(
  'toy@0123',
  _apply,
  jnp.asarray(np.random.default_rng(0).standard_normal((4, 5)), jnp.float32),
  image_shape=(6, 6, 2),
  batch_size=8,
)


def _real(n=64, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, (n, 6, 6, 2)).astype(np.float32)


def _sampler(calls):
  def sample(key, n):
    calls.append(n)
    return jax.random.uniform(key, (n, 6, 6, 2), minval=-0.5, maxval=1.0)

  return sample


@pytest.fixture(scope='module')
def ref():
  return reference.compute_reference(EXTRACTOR, _real(), 'toy/train')


def test_reference_statistics_and_file_round_trip(tmp_path, ref):
  feats = np.asarray(_apply(EXTRACTOR.params, jnp.asarray(_real()))['features'])
  np.testing.assert_allclose(ref.mu, feats.astype(np.float64).mean(0), rtol=1e-6)
  np.testing.assert_allclose(
    ref.sigma, np.cov(feats.astype(np.float64), rowvar=False), rtol=1e-5, atol=1e-9
  )
  assert ref.protocol == {'extractor': 'toy@0123', 'n_real': 64, 'reference_split': 'toy/train'}
  path = tmp_path / 'ref.npz'
  reference.save_reference(path, ref)
  loaded = reference.load_reference(path)
  np.testing.assert_array_equal(loaded.mu, ref.mu)
  np.testing.assert_array_equal(loaded.sigma, ref.sigma)
  np.testing.assert_array_equal(loaded.features, ref.features)
  assert loaded.protocol == ref.protocol and loaded.sigma.dtype == np.float64
  stats_only = reference.compute_reference(EXTRACTOR, _real(), 'toy/train', keep_features=False)
  reference.save_reference(tmp_path / 'stats.npz', stats_only)
  assert reference.load_reference(tmp_path / 'stats.npz').features is None
  np.savez(tmp_path / 'other.npz', mu=np.zeros(2))
  with pytest.raises(ValueError, match='not a jaxgan reference'):
    reference.load_reference(tmp_path / 'other.npz')


def test_evaluate_generator_numbers_and_protocol(ref):
  calls = []
  key = jax.random.PRNGKey(3)
  out = evaluate.evaluate_generator(
    _sampler(calls), 50, ref, EXTRACTOR, key=key, batch_size=16, kid_subsets=5, kid_subset_size=20
  )
  assert calls == [16, 16, 16, 16]  # fixed batch size; the last batch is truncated to 2
  # Independent recomputation from the same samples.
  fake = np.concatenate(
    [
      np.asarray(
        jax.random.uniform(jax.random.fold_in(key, i), (16, 6, 6, 2), minval=-0.5, maxval=1.0)
      )
      for i in range(4)
    ]
  )[:50]
  f = np.asarray(_apply(EXTRACTOR.params, jnp.asarray(fake))['features'])
  logits = np.asarray(_apply(EXTRACTOR.params, jnp.asarray(fake))['logits'])
  mu, sigma = f.astype(np.float64).mean(0), np.cov(f.astype(np.float64), rowvar=False)
  assert out['fid'] == pytest.approx(
    frechet.frechet_distance(ref.mu, ref.sigma, mu, sigma), rel=1e-4
  )
  kid_mean, kid_std = kid.kernel_distance(ref.features, f, num_subsets=5, subset_size=20)
  assert out['kid_mean'] == pytest.approx(kid_mean, rel=1e-4, abs=1e-7)
  assert out['kid_std'] == pytest.approx(kid_std, rel=1e-4, abs=1e-7)
  is_mean, is_std = inception_score(logits=logits, splits=10)
  assert out['is_mean'] == pytest.approx(is_mean, rel=1e-4)
  for name, value in {
    **precision_recall(ref.features, f),
    **density_coverage(ref.features, f),
  }.items():
    assert out[name] == pytest.approx(value), name
  assert out['protocol'] == {
    'extractor': 'toy@0123',
    'n_real': 64,
    'reference_split': 'toy/train',
    'n_fake': 50,
    'fid': {'statistics': 'float64', 'sqrt': 'eigh symmetric form'},
    'kid': {'subsets': 5, 'subset_size': 20, 'kernel': '(x.y/d + 1)^3'},
    'precision_recall': {'k': 3},
    'density_coverage': {'k': 5},
    'inception_score': {'splits': 10},
  }


def test_evaluate_images_of_the_reference_itself(ref):
  out = evaluate.evaluate_images(_real(), ref, EXTRACTOR, kid_subsets=3, kid_subset_size=64)
  assert abs(out['fid']) < 1e-8
  assert out['precision'] == 1.0 and out['recall'] == 1.0 and out['coverage'] == 1.0
  assert out['kid_mean'] == pytest.approx(
    kid.polynomial_mmd2_unbiased(ref.features, ref.features), abs=1e-9
  )


def test_fid_only_without_reference_features(ref):
  stats_only = reference.ReferenceStats(ref.mu, ref.sigma, None, ref.protocol)
  out = evaluate.evaluate_generator(_sampler([]), 20, stats_only, EXTRACTOR, batch_size=10)
  assert set(out) == {'fid', 'is_mean', 'is_std', 'protocol'}
  assert 'kid' not in out['protocol']


def test_evaluate_rejects_mismatched_extractor_and_bad_sampler(ref):
  other = FeatureExtractor('toy@ffff', _apply, EXTRACTOR.params)
  with pytest.raises(ValueError, match='recompute the reference'):
    evaluate.evaluate_generator(_sampler([]), 10, ref, other)
  with pytest.raises(ValueError, match='must return images'):
    evaluate.evaluate_generator(
      lambda key, n: jnp.zeros((n + 1, 6, 6, 2)), 10, ref, EXTRACTOR, batch_size=4
    )


def test_evaluate_stacked_mnist_and_mixture():
  # Stand-in classifier: digit = round(4.5 * mean + 4.5) of each channel.
  def apply(params, images):
    digit = jnp.round(images.mean(axis=(1, 2, 3)) * 4.5 + 4.5).astype(jnp.int32)
    return {'features': images.mean(axis=(1, 2)), 'logits': jax.nn.one_hot(digit, 10)}

  classifier = FeatureExtractor('digits@1', apply, params={})
  triples = np.array([[1, 2, 3], [4, 5, 6]])

  def stacked(key, n):
    pick = jax.random.randint(key, (n,), 0, 2)
    values = (jnp.asarray(triples)[pick] - 4.5) / 4.5
    return jnp.broadcast_to(values[:, None, None, :], (n, 28, 28, 3))

  out = evaluate.evaluate_stacked_mnist(stacked, 40, classifier, batch_size=16)
  assert out['modes_covered'] == 2
  assert out['kl_to_uniform'] == pytest.approx(np.log(1000 / 2), abs=0.1)
  assert out['protocol'] == {'classifier': 'digits@1', 'n_fake': 40, 'num_modes': 1000}

  centers = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
  mixture = lambda key, n: jnp.asarray(centers[1]) + 0.01 * jax.random.normal(key, (n, 2))
  out = evaluate.evaluate_mixture(mixture, 30, centers, std=0.05, batch_size=8)
  assert out['modes_covered'] == 1 and out['high_quality_fraction'] == 1.0
  assert out['protocol']['n_fake'] == 30 and out['protocol']['num_modes'] == 3
