"""Evaluation of a run's generator, chosen by the dataset, with its protocol.

* 2-D mixtures (``8ring``, ``25grid``): modes covered and the fraction of
  high-quality samples (within 3 std of a mode).
* MNIST-like 28x28x1 data (``mnist5k``; 32x32 padded MNIST is center-cropped
  back): FID, KID, IS, precision/recall, density/coverage in the feature space
  of the project's MNIST LeNet-5 (trained once, cached), against the
  ``mnist5k/train`` split.
* Stacked-MNIST: modes covered of 1,000 and KL to uniform, classifying each
  channel with the same LeNet-5.
* Other datasets: FID/KID/IS with Inception-v3 when ``config.inception_weights``
  names a converted weights file (``python -m jaxgan.metrics.convert_inception``);
  otherwise no evaluation.

Every result carries ``protocol``: the extractor and its weights' hash, sample
counts and the reference split. Samples come from the EMA generator when the
run keeps one.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

from jaxgan import data as jdata
from jaxgan import metrics
from jaxgan.state import GANState

Evaluator = Callable[[GANState, int], dict]
MNIST_LIKE = ('mnist5k',)


def _crop_center(images: np.ndarray, size: int) -> np.ndarray:
  h, w = images.shape[1:3]
  top, left = (h - size) // 2, (w - size) // 2
  return images[:, top : top + size, left : left + size]


def make_sampler(
  generate: Callable[[GANState, jax.Array], np.ndarray], sample_latents, state_ref: list
):
  """``(key, n) -> samples`` from the state held in ``state_ref[0]``."""

  def sample(key, n):
    return generate(state_ref[0], sample_latents(key, n))

  return sample


def make_evaluator(config, generate, sample_latents, image_shape) -> Evaluator | None:
  """The evaluator for ``config.dataset`` (module docstring), or ``None``.

  Args:
    config: the run config.
    generate: ``(state, z) -> samples`` as numpy (EMA G when kept).
    sample_latents: the game's latent sampler.
    image_shape: shape of one training sample.
  """
  data_dir = config.get('data_dir') or None
  seed = config.seed + 10_007  # evaluation latents never coincide with training draws
  if config.dataset in ('8ring', '25grid'):
    return _toy_evaluator(jdata.mixture_spec(config.dataset), generate, sample_latents, seed)
  if config.dataset in MNIST_LIKE:
    return _mnist_evaluator(data_dir, image_shape, generate, sample_latents, seed)
  if config.dataset == 'stacked_mnist':
    return _stacked_mnist_evaluator(data_dir, generate, sample_latents, seed)
  weights = config.get('inception_weights', '')
  if weights:
    return _inception_evaluator(config.dataset, data_dir, weights, generate, sample_latents, seed)
  return None


def _toy_evaluator(spec, generate, sample_latents, seed: int) -> Evaluator:
  """Mode coverage and high-quality fraction on a 2-D Gaussian mixture."""

  def evaluate_toy(state, n):
    samples = generate(state, sample_latents(jax.random.PRNGKey(seed), n))
    q = metrics.gaussian_mixture_quality(samples, spec.centers, spec.std)
    return {
      'modes_covered': q['modes_covered'],
      'high_quality_fraction': q['high_quality_fraction'],
      'protocol': {
        'metric': 'gaussian mixture quality, 3 std',
        'n_fake': n,
        'num_modes': q['num_modes'],
      },
    }

  return evaluate_toy


def _mnist_evaluator(data_dir, image_shape, generate, sample_latents, seed: int) -> Evaluator:
  """FID/KID/PR against MNIST's training split, features of the project's classifier."""
  crop = 28 if tuple(image_shape) != (28, 28, 1) and image_shape[-1] == 1 else None
  extractor = metrics.mnist_extractor(data_dir)
  reference = metrics.mnist_reference(data_dir, 'train', extractor=extractor)  # cached .npz

  def evaluate_mnist(state, n):
    def sample(key, b):
      x = generate(state, sample_latents(key, b))
      return _crop_center(x, 28) if crop else x

    scores = metrics.evaluate_generator(
      sample, n, reference, extractor, key=seed, batch_size=min(500, n)
    )
    if crop:
      scores['protocol']['fake_preprocessing'] = 'center crop to 28x28'
    return scores

  return evaluate_mnist


def _stacked_mnist_evaluator(data_dir, generate, sample_latents, seed: int) -> Evaluator:
  """Modes covered (of 1,000) and KL to uniform, each channel classified separately."""
  classifier = metrics.mnist_extractor(data_dir)

  def evaluate_stacked(state, n):
    samples = generate(state, sample_latents(jax.random.PRNGKey(seed), n))
    modes = metrics.stacked_mnist_modes(metrics.stacked_mnist_channel_logits(samples, classifier))
    return {
      'modes_covered': modes['modes_covered'],
      'kl_to_uniform': modes['kl_to_uniform'],
      'protocol': {
        'extractor': classifier.name,
        'n_fake': n,
        'metric': 'per-channel argmax, 1000 modes',
      },
    }

  return evaluate_stacked


def _inception_evaluator(dataset, data_dir, weights, generate, sample_latents, seed) -> Evaluator:
  """FID/KID/PR against the dataset's training split, Inception-v3 features from ``weights``."""
  extractor = metrics.inception_extractor(weights)
  real = jdata.to_float(jdata.load_arrays(dataset, 'train', data_dir=data_dir)['image'])
  reference = metrics.compute_reference(extractor, real, f'{dataset}/train')

  def evaluate_inception(state, n):
    def sample(key, b):
      return generate(state, sample_latents(key, b))

    return metrics.evaluate_generator(
      sample, n, reference, extractor, key=seed, batch_size=min(250, n)
    )

  return evaluate_inception
