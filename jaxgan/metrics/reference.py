"""Reference statistics: computed once from real images, saved as ``.npz``, reused.

A :class:`ReferenceStats` holds the float64 mean and covariance of the real
features (enough for FID) and, optionally, the features themselves (needed by
KID, precision/recall and density/coverage), with the protocol that produced
them: the extractor's name (which pins its weights), the number of images and
the dataset split.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from jaxgan.metrics.features import FeatureExtractor
from jaxgan.metrics.frechet import feature_statistics


@dataclasses.dataclass(frozen=True)
class ReferenceStats:
  """Statistics of a real image set under one extractor.

  Attributes:
    mu: feature mean ``[D]``, float64.
    sigma: feature covariance ``[D, D]``, float64.
    features: the ``[N, D]`` float32 features, or ``None`` (FID only).
    protocol: ``{'extractor': str, 'n_real': int, 'reference_split': str}``.
  """

  mu: np.ndarray
  sigma: np.ndarray
  features: np.ndarray | None
  protocol: dict

  @property
  def extractor(self) -> str:
    return self.protocol['extractor']


def compute_reference(
  extractor: FeatureExtractor,
  images: np.ndarray,
  split: str,
  *,
  keep_features: bool = True,
  batch_size: int | None = None,
) -> ReferenceStats:
  """Extracts features of real images and fits their statistics.

  Args:
    extractor: the feature network.
    images: real images ``[N, H, W, C]`` float in [-1, 1].
    split: names the data, e.g. ``'mnist5k/train'``; recorded in the protocol.
    keep_features: keep the features (for KID and the k-NN metrics).
    batch_size: extraction batch size (default: the extractor's).
  """
  if not split:
    raise ValueError("split must name the reference data, e.g. 'mnist5k/train'.")
  features = extractor(images, batch_size)['features']
  mu, sigma = feature_statistics(features)
  return ReferenceStats(
    mu=mu,
    sigma=sigma,
    features=features.astype(np.float32) if keep_features else None,
    protocol={'extractor': extractor.name, 'n_real': int(len(features)), 'reference_split': split},
  )


def save_reference(path: str | os.PathLike, reference: ReferenceStats) -> None:
  """Writes ``mu``, ``sigma``, optionally ``features``, and the protocol JSON to ``path`` (.npz)."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  arrays = {'mu': reference.mu, 'sigma': reference.sigma}
  if reference.features is not None:
    arrays['features'] = reference.features
  tmp = path.with_name(path.name + '.tmp')
  with open(tmp, 'wb') as f:
    np.savez(f, protocol=np.array(json.dumps(reference.protocol, sort_keys=True)), **arrays)
  os.replace(tmp, path)


def load_reference(path: str | os.PathLike) -> ReferenceStats:
  """Reads a file written by :func:`save_reference`."""
  with np.load(path, allow_pickle=False) as f:
    missing = {'mu', 'sigma', 'protocol'} - set(f.files)
    if missing:
      raise ValueError(
        f'{path} is not a jaxgan reference file (missing {sorted(missing)}); '
        'create it with jaxgan.metrics.save_reference.'
      )
    return ReferenceStats(
      mu=np.asarray(f['mu'], np.float64),
      sigma=np.asarray(f['sigma'], np.float64),
      features=f['features'] if 'features' in f.files else None,
      protocol=json.loads(str(f['protocol'])),
    )
