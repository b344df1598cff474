"""Evaluation: feature-based metrics, feature extractors and mode coverage.

Metrics take feature matrices (``[N, D]``) so one code path serves every
extractor: :func:`frechet_distance` (FID, float64 statistics),
:func:`kernel_distance` (KID), :func:`inception_score`,
:func:`precision_recall`, :func:`density_coverage`. Extractors are
:class:`FeatureExtractor` records: :func:`mnist_extractor` (the project's
LeNet-5, trained once and cached) and :func:`inception_extractor` (the FID
Inception-v3 from converted pytorch-fid weights). :func:`evaluate_generator`
scores a sampler and returns every number with its protocol.
"""

from jaxgan.metrics.classifier_score import inception_score
from jaxgan.metrics.classifier_training import ClassifierTrainConfig, train_classifier
from jaxgan.metrics.convert_inception import (
  PYTORCH_FID_WEIGHTS_SHA256,
  inception_extractor,
  load_inception_variables,
  torch_to_flax,
)
from jaxgan.metrics.evaluate import (
  evaluate_generator,
  evaluate_images,
  evaluate_mixture,
  evaluate_stacked_mnist,
  generate_features,
  score_outputs,
)
from jaxgan.metrics.features import FeatureExtractor, extract_features
from jaxgan.metrics.frechet import (
  feature_statistics,
  frechet_distance,
  frechet_distance_from_features,
  trace_sqrt_product,
)
from jaxgan.metrics.inception_v3 import InceptionV3
from jaxgan.metrics.kid import kernel_distance, polynomial_mmd2_unbiased
from jaxgan.metrics.knn_manifold import density_coverage, precision_recall
from jaxgan.metrics.mnist import (
  mnist_classifier,
  mnist_extractor,
  mnist_reference,
  train_and_save_classifier,
)
from jaxgan.metrics.mode_coverage import (
  gaussian_mixture_quality,
  stacked_mnist_channel_logits,
  stacked_mnist_modes,
)
from jaxgan.metrics.reference import (
  ReferenceStats,
  compute_reference,
  load_reference,
  save_reference,
)

__all__ = [
  'PYTORCH_FID_WEIGHTS_SHA256',
  'ClassifierTrainConfig',
  'FeatureExtractor',
  'InceptionV3',
  'ReferenceStats',
  'compute_reference',
  'density_coverage',
  'evaluate_generator',
  'evaluate_images',
  'evaluate_mixture',
  'evaluate_stacked_mnist',
  'extract_features',
  'feature_statistics',
  'frechet_distance',
  'frechet_distance_from_features',
  'gaussian_mixture_quality',
  'generate_features',
  'inception_extractor',
  'inception_score',
  'kernel_distance',
  'load_inception_variables',
  'load_reference',
  'mnist_classifier',
  'mnist_extractor',
  'mnist_reference',
  'polynomial_mmd2_unbiased',
  'precision_recall',
  'save_reference',
  'score_outputs',
  'stacked_mnist_channel_logits',
  'stacked_mnist_modes',
  'torch_to_flax',
  'train_and_save_classifier',
  'train_classifier',
  'trace_sqrt_product',
]
