"""Mode counting for the synthetic benchmarks.

2-D Gaussian mixtures (8-ring, 25-grid), the convention of VEEGAN/PacGAN and
the unrolled-GAN line of work that the CoopInit notes follow: each sample is
assigned to its nearest mode centre; it is *high quality* when that distance
is within ``3 std``; a mode is *covered* when at least ``min_count``
high-quality samples are assigned to it (``min_count = 1`` in the published
evaluation code; raise it to ignore stray samples). Reported: modes covered
and the fraction of high-quality samples.

Stacked-MNIST (three digits as colour channels, 1,000 modes): each channel is
classified by the MNIST classifier; the mode is the digit triple
``100 d0 + 10 d1 + d2``. Reported: the number of modes that received at least
one sample, and ``KL(q || uniform) = sum_m q_m log(1000 q_m)`` of the mode
histogram ``q`` (0 log 0 = 0).
"""

from __future__ import annotations

import numpy as np

from jaxgan.metrics.features import FeatureExtractor

NUM_STACKED_MODES = 1000


def gaussian_mixture_quality(
  samples: np.ndarray,
  centers: np.ndarray,
  std: float,
  *,
  num_std: float = 3.0,
  min_count: int = 1,
) -> dict:
  """Modes covered and high-quality fraction for a 2-D (or any-D) Gaussian mixture.

  Args:
    samples: generated points ``[N, D]``.
    centers: mode centres ``[K, D]``.
    std: the isotropic standard deviation of each mixture component.
    num_std: a sample is high quality within ``num_std * std`` of its nearest
      centre.
    min_count: high-quality samples a mode needs to count as covered.

  Returns:
    ``{'modes_covered': int, 'num_modes': int, 'high_quality_fraction': float,
    'mode_counts': int array [K]}`` (high-quality samples per mode).
  """
  samples = np.asarray(samples, np.float64)
  centers = np.asarray(centers, np.float64)
  if samples.ndim != 2 or centers.ndim != 2 or samples.shape[1] != centers.shape[1]:
    raise ValueError(
      f'samples must be [N, D] and centers [K, D] with the same D; got {samples.shape} '
      f'and {centers.shape}.'
    )
  if len(samples) == 0 or len(centers) == 0:
    raise ValueError(
      f'need at least one sample and one centre; got {samples.shape}, {centers.shape}.'
    )
  if not std > 0:
    raise ValueError(f'std must be positive, got {std}.')
  if min_count < 1:
    raise ValueError(f'min_count must be >= 1, got {min_count}.')
  d2 = np.sum((samples[:, None, :] - centers[None, :, :]) ** 2, axis=-1)
  nearest = np.argmin(d2, axis=1)
  good = np.sqrt(d2[np.arange(len(samples)), nearest]) <= num_std * std
  counts = np.bincount(nearest[good], minlength=len(centers))
  return {
    'modes_covered': int(np.sum(counts >= min_count)),
    'num_modes': len(centers),
    'high_quality_fraction': float(good.mean()),
    'mode_counts': counts,
  }


def stacked_mnist_modes(channel_probs: np.ndarray) -> dict:
  """Modes covered out of 1,000 and KL of the mode histogram to uniform.

  Args:
    channel_probs: per-channel digit probabilities (or logits) ``[N, 3, 10]``;
      channel 0 is the hundreds digit.

  Returns:
    ``{'modes_covered': int, 'kl_to_uniform': float, 'mode_counts': int array
    [1000]}``.
  """
  channel_probs = np.asarray(channel_probs)
  if channel_probs.ndim != 3 or channel_probs.shape[1:] != (3, 10) or len(channel_probs) == 0:
    raise ValueError(
      f'channel_probs must be [N, 3, 10] (digit scores per colour channel); got '
      f'{channel_probs.shape}.'
    )
  digits = np.argmax(channel_probs, axis=-1)
  modes = digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2]
  counts = np.bincount(modes, minlength=NUM_STACKED_MODES)
  q = counts / counts.sum()
  nz = q > 0
  kl = float(np.sum(q[nz] * np.log(q[nz] * NUM_STACKED_MODES)))
  return {'modes_covered': int(np.sum(counts > 0)), 'kl_to_uniform': kl, 'mode_counts': counts}


def stacked_mnist_channel_logits(
  images: np.ndarray, classifier: FeatureExtractor, batch_size: int | None = None
) -> np.ndarray:
  """Classifies each colour channel of Stacked-MNIST images separately.

  Args:
    images: ``[N, 28, 28, 3]`` float images in [-1, 1].
    classifier: an MNIST extractor whose outputs include ``'logits'`` ``[B, 10]``
      for ``[B, 28, 28, 1]`` inputs (e.g. :func:`jaxgan.metrics.mnist_extractor`).
    batch_size: images per call (default: the extractor's).

  Returns:
    Logits ``[N, 3, 10]``; feed to :func:`stacked_mnist_modes`.
  """
  if getattr(images, 'ndim', None) != 4 or images.shape[-1] != 3:
    raise ValueError(
      f'Stacked-MNIST images must be [N, H, W, 3]; got {getattr(images, "shape", None)}.'
    )
  n, h, w, _ = images.shape
  per_channel = np.moveaxis(np.asarray(images), -1, 1).reshape(n * 3, h, w, 1)
  out = classifier(per_channel, batch_size)
  if 'logits' not in out:
    raise ValueError(f'extractor {classifier.name!r} returns no logits; use a classifier.')
  return out['logits'].reshape(n, 3, -1)
