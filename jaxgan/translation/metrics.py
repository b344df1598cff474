"""Scores of the MNIST translation task (:mod:`jaxgan.data.mnist_translation`).

* **FID to B** (:func:`fid`): Fréchet distance between the translated test-A images and the real
  test-B images in the penultimate features of the project's MNIST classifier
  (:func:`jaxgan.metrics.mnist.mnist_extractor`, the features of every MNIST FID of the library),
  or of any :class:`~jaxgan.metrics.features.FeatureExtractor`, e.g. :func:`domain_b_classifier`.
* **Content accuracy** (:func:`content_accuracy`): the fraction of translated test-A images that a
  domain-B classifier labels as their source digit. That classifier (:func:`domain_b_classifier`)
  is the project's LeNet-5 trained with the project's training function
  (:func:`jaxgan.metrics.mnist.mnist_classifier`) on the *dilated* MNIST-5k train images (all
  4,000; the task's labels serve evaluation only) and applied to ``-x``. Since ``to_float(255 -
  y) = -to_float(y)``, the negation undoes the inversion exactly, so ``x -> lenet(-x)`` classifies
  domain B (thick, inverted digits) with no approximate inverse of the dilation. Its accuracy on
  real test-B images is the ceiling of the score.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxgan import data as data_lib
from jaxgan.data import mnist_translation
from jaxgan.metrics import mnist as mnist_metrics
from jaxgan.metrics.features import FeatureExtractor
from jaxgan.metrics.frechet import frechet_distance_from_features
from jaxgan.models.classifier import LeNet5

CACHE_SUBDIR = 'mnist_translation'


def _negated_lenet(params, images):
  module = LeNet5()
  features, logits = module.apply({'params': params}, -images, method=module.features_and_logits)
  return {'features': features, 'logits': logits}


def dilated_splits(data_dir: str | os.PathLike | None = None) -> tuple[dict, dict]:
  """MNIST-5k train and test with 3x3-dilated strokes (not inverted), float in [-1, 1]."""
  out = []
  for split in ('train', 'test'):
    arrays = data_lib.load_arrays(mnist_translation.DATASET, split, data_dir=data_dir)
    image = data_lib.to_float(mnist_translation.dilate3x3(np.asarray(arrays['image'])))
    out.append({'image': image, 'label': np.asarray(arrays['label'])})
  return out[0], out[1]


def domain_b_classifier(
  data_dir: str | os.PathLike | None = None,
  *,
  train_if_missing: bool = True,
  log: Callable[[str], None] | None = None,
) -> FeatureExtractor:
  """The domain-B classifier ``x -> LeNet5_dilated(-x)`` as a feature extractor (cached).

  Cached like the MNIST classifier, in ``<data_dir>/mnist_translation/classifiers/
  mnist5k_lenet5.{msgpack,json}`` (its metadata describes the dilated training set only through
  its held-out accuracy), and named ``mnist_dilated_lenet5@<sha256 prefix>``.

  Args:
    data_dir: data directory of MNIST-5k (default :func:`jaxgan.data.default_data_dir`);
      the classifier is cached under ``<data_dir>/mnist_translation``.
    train_if_missing: train it (about a minute on CPU) when no cache exists.
    log: progress callback while training.

  Returns:
    Extractor with ``'features'`` ``[B, 84]`` and ``'logits'`` ``[B, 10]``.
  """
  root = Path(data_dir).expanduser() if data_dir else data_lib.default_data_dir()
  splits = dilated_splits(data_dir) if train_if_missing else None
  _, params, meta = mnist_metrics.mnist_classifier(
    root / CACHE_SUBDIR,
    variant='lenet5',
    train_if_missing=train_if_missing,
    splits=splits,
    log=log,
  )
  return FeatureExtractor(
    name=f'mnist_dilated_lenet5@{meta["sha256"][:12]}',
    apply=_negated_lenet,
    params=params,
    image_shape=(28, 28, 1),
    batch_size=500,
  )


def translate(g_module, g_params, images: np.ndarray, batch_size: int = 250) -> np.ndarray:
  """``G(images)`` in fixed-size batches (the last one padded).

  Args:
    g_module: the translation G (``__call__(x, train)``).
    g_params: its params.
    images: ``[N, H, W, C]`` float in [-1, 1].
    batch_size: images per call.

  Returns:
    ``[N, H, W, C_out]`` float32 numpy array.
  """
  apply = jax.jit(lambda p, x: g_module.apply({'params': p}, x, train=False))
  n = len(images)
  out = []
  for i in range(0, n, batch_size):
    chunk = np.asarray(images[i : i + batch_size], np.float32)
    pad = batch_size - len(chunk)
    if pad:
      chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
    out.append(np.asarray(apply(g_params, jnp.asarray(chunk)))[: batch_size - pad])
  return np.concatenate(out)


def fid(extractor: FeatureExtractor, images: np.ndarray, reference: np.ndarray) -> float:
  """FID between two image sets ``[N, 28, 28, 1]`` in ``extractor``'s features."""
  return frechet_distance_from_features(
    extractor(images)['features'], extractor(reference)['features']
  )


def content_accuracy(extractor: FeatureExtractor, images: np.ndarray, labels: np.ndarray) -> float:
  """Fraction of ``images`` that ``extractor``'s classifier labels as ``labels`` ``[N]``."""
  labels = np.asarray(labels)
  if len(images) != len(labels):
    raise ValueError(f'content_accuracy: {len(images)} images but {len(labels)} labels.')
  predicted = np.argmax(extractor(images)['logits'], axis=-1)
  return float(np.mean(predicted == labels))
