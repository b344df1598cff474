"""Scores a generator or an image set, with the protocol beside each number.

* :func:`evaluate_generator` / :func:`evaluate_images`: FID, KID, IS,
  precision/recall, density/coverage against :class:`ReferenceStats`.
* :func:`evaluate_stacked_mnist`: modes covered of 1,000 and KL to uniform.
* :func:`evaluate_mixture`: 2-D mixture modes covered and high-quality fraction.

``sample_fn(key, n) -> [n, ...]`` is always called with ``n = batch_size``
(one compile for a jitted sampler) and ``key = fold_in(key, i)`` for batch
``i``; the last batch is truncated to ``n_samples``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

from jaxgan.metrics.classifier_score import inception_score
from jaxgan.metrics.features import FeatureExtractor
from jaxgan.metrics.frechet import feature_statistics, frechet_distance
from jaxgan.metrics.kid import kernel_distance
from jaxgan.metrics.knn_manifold import density_coverage, precision_recall
from jaxgan.metrics.mode_coverage import (
  gaussian_mixture_quality,
  stacked_mnist_channel_logits,
  stacked_mnist_modes,
)
from jaxgan.metrics.reference import ReferenceStats

SampleFn = Callable[[jax.Array, int], jax.Array]


def generate_features(
  sample_fn: SampleFn,
  n_samples: int,
  extractor: FeatureExtractor,
  key: jax.Array,
  batch_size: int = 500,
) -> dict[str, np.ndarray]:
  """Draws ``n_samples`` images batch by batch and returns their extractor outputs.

  ``sample_fn(key_i, batch_size)`` is always called with the same batch size
  (so a jitted sampler compiles once), with ``key_i = fold_in(key, i)``; the
  last batch is truncated.
  """
  outputs = []
  for i, start in enumerate(range(0, n_samples, batch_size)):
    images = sample_fn(jax.random.fold_in(key, i), batch_size)
    if images.ndim != 4 or images.shape[0] != batch_size:
      raise ValueError(
        f'sample_fn(key, {batch_size}) must return images [{batch_size}, H, W, C]; '
        f'got shape {images.shape}.'
      )
    outputs.append(extractor(images[: min(batch_size, n_samples - start)], batch_size))
  return {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}


def evaluate_generator(
  sample_fn: SampleFn,
  n_samples: int,
  reference: ReferenceStats,
  extractor: FeatureExtractor,
  *,
  key: jax.Array | int = 0,
  batch_size: int = 500,
  kid_subsets: int = 100,
  kid_subset_size: int = 1000,
  is_splits: int = 10,
  pr_k: int = 3,
  dc_k: int = 5,
) -> dict:
  """FID, KID, IS, precision/recall and density/coverage of a generator.

  Args:
    sample_fn: ``(key, n) -> images [n, H, W, C]`` in [-1, 1] (e.g. G with its
      EMA params applied to ``game.sample_latents(key, n)``).
    n_samples: number of generated images scored.
    reference: real statistics from the same extractor
      (:func:`jaxgan.metrics.compute_reference` / ``load_reference``). Without
      its ``features`` only FID (and IS) are computed.
    extractor: the feature network.
    key: PRNG key (or int seed) for the samples.
    batch_size: images per generator/extractor call.
    kid_subsets: KID subset count; ``kid_subset_size``: subset size (capped by
      the sample counts).
    is_splits: Inception Score splits (IS needs the extractor's logits).
    pr_k: k of precision/recall; ``dc_k``: k of density/coverage.

  Returns:
    ``{'fid': float, 'kid_mean', 'kid_std', 'is_mean', 'is_std', 'precision',
    'recall', 'density', 'coverage', 'protocol': {...}}``; entries whose inputs
    are unavailable are left out. ``protocol`` records the extractor, ``n_fake``,
    ``n_real``, ``reference_split`` and the settings of each metric.
  """
  _check_extractor(reference, extractor)
  if n_samples < 2:
    raise ValueError(f'n_samples must be >= 2 for a covariance; got {n_samples}.')
  if batch_size < 1:
    raise ValueError(f'batch_size must be positive, got {batch_size}.')
  key = jax.random.PRNGKey(key) if isinstance(key, int) else key
  fake = generate_features(sample_fn, n_samples, extractor, key, batch_size)
  return score_outputs(
    fake,
    reference,
    kid_subsets=kid_subsets,
    kid_subset_size=kid_subset_size,
    is_splits=is_splits,
    pr_k=pr_k,
    dc_k=dc_k,
  )


def evaluate_images(
  images: np.ndarray,
  reference: ReferenceStats,
  extractor: FeatureExtractor,
  *,
  batch_size: int | None = None,
  **settings,
) -> dict:
  """Scores a fixed image set ``[N, H, W, C]`` (e.g. held-out real images) like
  :func:`evaluate_generator` (same ``settings`` and result layout).
  """
  _check_extractor(reference, extractor)
  return score_outputs(extractor(images, batch_size), reference, **settings)


def _check_extractor(reference: ReferenceStats, extractor: FeatureExtractor) -> None:
  if reference.extractor != extractor.name:
    raise ValueError(
      f'reference statistics come from extractor {reference.extractor!r} but scoring uses '
      f'{extractor.name!r}; recompute the reference with this extractor.'
    )


def score_outputs(
  fake: dict[str, np.ndarray],
  reference: ReferenceStats,
  *,
  kid_subsets: int = 100,
  kid_subset_size: int = 1000,
  is_splits: int = 10,
  pr_k: int = 3,
  dc_k: int = 5,
) -> dict:
  """All metrics of extractor outputs ``{'features': [M, D], 'logits'?: [M, K]}``.

  See :func:`evaluate_generator` for the arguments and the result.
  """
  n_fake = len(fake['features'])
  mu, sigma = feature_statistics(fake['features'])
  result: dict = {'fid': frechet_distance(reference.mu, reference.sigma, mu, sigma)}
  protocol = {
    **reference.protocol,
    'n_fake': n_fake,
    'fid': {'statistics': 'float64', 'sqrt': 'eigh symmetric form'},
  }
  if reference.features is not None:
    real = reference.features
    m = min(kid_subset_size, len(real), n_fake)
    result['kid_mean'], result['kid_std'] = kernel_distance(
      real, fake['features'], num_subsets=kid_subsets, subset_size=m
    )
    protocol['kid'] = {'subsets': kid_subsets, 'subset_size': m, 'kernel': '(x.y/d + 1)^3'}
    result.update(precision_recall(real, fake['features'], k=pr_k))
    result.update(density_coverage(real, fake['features'], k=dc_k))
    protocol['precision_recall'] = {'k': pr_k}
    protocol['density_coverage'] = {'k': dc_k}
  if 'logits' in fake and n_fake >= is_splits:
    result['is_mean'], result['is_std'] = inception_score(logits=fake['logits'], splits=is_splits)
    protocol['inception_score'] = {'splits': is_splits}
  result['protocol'] = protocol
  return result


def _samples(sample_fn: SampleFn, n_samples: int, key: jax.Array, batch_size: int) -> np.ndarray:
  chunks = []
  for i, start in enumerate(range(0, n_samples, batch_size)):
    x = np.asarray(sample_fn(jax.random.fold_in(key, i), batch_size))
    chunks.append(x[: min(batch_size, n_samples - start)])
  return np.concatenate(chunks)


def evaluate_stacked_mnist(
  sample_fn: SampleFn,
  n_samples: int,
  classifier: FeatureExtractor,
  *,
  key: jax.Array | int = 0,
  batch_size: int = 500,
) -> dict:
  """Stacked-MNIST mode coverage of a generator of ``[n, 28, 28, 3]`` images.

  Returns:
    ``{'modes_covered': int (of 1000), 'kl_to_uniform': float, 'protocol':
    {'classifier': name, 'n_fake': n_samples}}``.
  """
  key = jax.random.PRNGKey(key) if isinstance(key, int) else key
  images = _samples(sample_fn, n_samples, key, batch_size)
  logits = stacked_mnist_channel_logits(images, classifier, batch_size)
  out = stacked_mnist_modes(logits)
  return {
    'modes_covered': out['modes_covered'],
    'kl_to_uniform': out['kl_to_uniform'],
    'protocol': {'classifier': classifier.name, 'n_fake': n_samples, 'num_modes': 1000},
  }


def evaluate_mixture(
  sample_fn: SampleFn,
  n_samples: int,
  centers: np.ndarray,
  std: float,
  *,
  key: jax.Array | int = 0,
  batch_size: int = 500,
  num_std: float = 3.0,
  min_count: int = 1,
) -> dict:
  """Modes covered and high-quality fraction of a 2-D mixture generator ``(key, n) -> [n, 2]``.

  Returns:
    ``{'modes_covered', 'high_quality_fraction', 'protocol': {...}}``.
  """
  key = jax.random.PRNGKey(key) if isinstance(key, int) else key
  out = gaussian_mixture_quality(
    _samples(sample_fn, n_samples, key, batch_size),
    centers,
    std,
    num_std=num_std,
    min_count=min_count,
  )
  return {
    'modes_covered': out['modes_covered'],
    'high_quality_fraction': out['high_quality_fraction'],
    'protocol': {
      'n_fake': n_samples,
      'num_modes': out['num_modes'],
      'std': float(std),
      'high_quality_within_std': num_std,
      'min_count_per_mode': min_count,
    },
  }
