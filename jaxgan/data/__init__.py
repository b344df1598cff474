"""Data for jaxgan: tfds random-access sources, offline datasets, toy mixtures, batching.

* :func:`load_arrays` ``(name, split)`` -> ``{'image': uint8 [N, H, W, C],
  'label': int64 [N]}`` for ``'mnist5k'``, ``'digits8x8'``,
  ``'stacked_mnist'`` (prepared offline on first use, no download) and any
  tfds dataset prepared as array_record (read with ``tfds.data_source``, no
  TensorFlow). :func:`prepare` prepares (offline) or checks (tfds) a dataset.
* :func:`gaussian_mixture` ``('8ring' | '25grid', n, key)`` -> float32 ``[n, 2]``;
  :func:`mixture_spec` gives the centres and std.
* :func:`subset` for limited-data runs; :func:`to_float`, :func:`to_uint8`,
  :func:`pad_to` for pixels.
* :class:`Batches`: deterministic, resumable, per-process minibatches.

Importing this package is cheap: tensorflow_datasets and scikit-learn are
imported only when a dataset is read or prepared.
"""

from jaxgan.data.batching import Batches
from jaxgan.data.catalog import OFFLINE_DATASETS, load_arrays, prepare
from jaxgan.data.images import pad_to, to_float, to_uint8
from jaxgan.data.stacked_mnist import stack_digits
from jaxgan.data.subset import holdout_split, subset, subset_indices
from jaxgan.data.tfds_source import DatasetNotPreparedError, default_data_dir, open_source
from jaxgan.data.toy2d import MIXTURES, MixtureSpec, gaussian_mixture, mixture_spec

__all__ = [
  'Batches',
  'DatasetNotPreparedError',
  'MIXTURES',
  'MixtureSpec',
  'OFFLINE_DATASETS',
  'default_data_dir',
  'gaussian_mixture',
  'holdout_split',
  'load_arrays',
  'mixture_spec',
  'open_source',
  'pad_to',
  'prepare',
  'stack_digits',
  'subset',
  'subset_indices',
  'to_float',
  'to_uint8',
]
