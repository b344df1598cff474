"""The project's MNIST classifier as an evaluation feature extractor.

The LeNet-5 of :mod:`jaxgan.models.classifier` is trained once on the offline MNIST-5k train split
(4,000 images) and cached in the data directory (the ``data_dir`` of
:func:`jaxgan.data.load_arrays`; default :func:`jaxgan.data.default_data_dir`) as
``classifiers/mnist5k_<variant>.msgpack`` (the params, ``flax.serialization``) and
``classifiers/mnist5k_<variant>.json`` (held-out accuracy on the 1,000 test images, seed, epochs,
training time, SHA-256 of the params file).

Its penultimate (fc 84) activations give MNIST FID/KID/precision-recall and its softmax an MNIST
Inception Score and the Stacked-MNIST mode labels. The extractor is named
``mnist_<variant>@<first 12 hex digits of the SHA-256>``, so every score names the exact weights.

Concurrency: training and writing happen under an exclusive ``flock`` on ``<params>.lock``; files
are written to a temporary name and renamed, params first and metadata last, so a reader that
finds the metadata always finds the params it describes.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax.serialization
import jax
import numpy as np

from jaxgan import data as data_lib
from jaxgan.metrics.classifier_training import ClassifierTrainConfig, train_classifier
from jaxgan.metrics.features import FeatureExtractor
from jaxgan.metrics.reference import (
  ReferenceStats,
  compute_reference,
  load_reference,
  save_reference,
)
from jaxgan.models.classifier import LeNet5, LeNet5Half

PyTree = Any
VARIANTS: dict[str, type[LeNet5]] = {'lenet5': LeNet5, 'lenet5_half': LeNet5Half}
DATASET = 'mnist5k'


def _check_variant(variant: str) -> type[LeNet5]:
  if variant not in VARIANTS:
    raise ValueError(f'unknown classifier variant {variant!r}; choose one of {sorted(VARIANTS)}.')
  return VARIANTS[variant]


def classifier_paths(data_dir: str | os.PathLike | None, variant: str) -> tuple[Path, Path]:
  """``(params .msgpack, metadata .json)`` paths of a cached MNIST classifier."""
  _check_variant(variant)
  root = Path(data_dir).expanduser() if data_dir else data_lib.default_data_dir()
  base = root / 'classifiers' / f'{DATASET}_{variant}'
  return base.with_suffix('.msgpack'), base.with_suffix('.json')


def _sha256(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + '.', suffix='.tmp')
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache is shared like any data file
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    raise


@contextlib.contextmanager
def _exclusive_lock(path: Path):
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path.with_suffix(path.suffix + '.lock'), 'a') as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def save_classifier(params_path: Path, meta_path: Path, params: PyTree, info: dict) -> dict:
  """Writes params and metadata atomically; returns the metadata (with ``sha256``)."""
  data = flax.serialization.msgpack_serialize(jax.tree.map(np.asarray, params))
  meta = {**info, 'sha256': _sha256(data), 'params_file': params_path.name}
  params_path.parent.mkdir(parents=True, exist_ok=True)
  _atomic_write(params_path, data)
  _atomic_write(meta_path, json.dumps(meta, indent=2, sort_keys=True).encode())
  return meta


def load_classifier(params_path: Path, meta_path: Path) -> tuple[PyTree, dict]:
  """Reads params and metadata and checks the params file's SHA-256."""
  meta = json.loads(meta_path.read_text())
  data = params_path.read_bytes()
  digest = _sha256(data)
  if digest != meta.get('sha256'):
    raise ValueError(
      f'{params_path} has SHA-256 {digest} but {meta_path} records {meta.get("sha256")}; '
      'the cache is corrupt. Delete both files and retrain '
      '(python -m experiments.train_classifier).'
    )
  return flax.serialization.msgpack_restore(data), meta


def load_mnist_splits(data_dir: str | os.PathLike | None = None) -> tuple[dict, dict]:
  """MNIST-5k train (4,000) and test (1,000) splits as float images in [-1, 1]."""
  out = []
  for split in ('train', 'test'):
    arrays = data_lib.load_arrays(DATASET, split, data_dir=data_dir)
    out.append({'image': data_lib.to_float(arrays['image']), 'label': np.asarray(arrays['label'])})
  return out[0], out[1]


def _train_and_write(
  variant, data_dir, params_path, meta_path, config, splits, log
) -> tuple[PyTree, dict]:
  # Caller holds the lock.
  config = config if config is not None else ClassifierTrainConfig()
  train, test = splits if splits is not None else load_mnist_splits(data_dir)
  params, info = train_classifier(VARIANTS[variant](), train, test, config, log=log)
  info = {**info, 'variant': variant, 'dataset': DATASET, 'jax_version': jax.__version__}
  return params, save_classifier(params_path, meta_path, params, info)


def train_and_save_classifier(
  data_dir: str | os.PathLike | None = None,
  *,
  variant: str = 'lenet5',
  config: ClassifierTrainConfig | None = None,
  splits: tuple[dict, dict] | None = None,
  log: Callable[[str], None] | None = None,
) -> tuple[PyTree, dict]:
  """Trains the MNIST classifier and writes it to the cache (overwriting).

  Args:
    data_dir: data directory (default :func:`jaxgan.data.default_data_dir`).
    variant: ``'lenet5'`` or ``'lenet5_half'``.
    config: training settings (default :class:`ClassifierTrainConfig`).
    splits: ``(train, test)`` float splits; default :func:`load_mnist_splits`.
    log: progress callback.

  Returns:
    ``(params, metadata)``.
  """
  params_path, meta_path = classifier_paths(data_dir, variant)
  with _exclusive_lock(params_path):
    return _train_and_write(variant, data_dir, params_path, meta_path, config, splits, log)


def mnist_classifier(
  data_dir: str | os.PathLike | None = None,
  *,
  variant: str = 'lenet5',
  train_if_missing: bool = True,
  config: ClassifierTrainConfig | None = None,
  splits: tuple[dict, dict] | None = None,
  log: Callable[[str], None] | None = None,
) -> tuple[LeNet5, PyTree, dict]:
  """Loads the cached MNIST classifier, training it once if it is missing.

  Args:
    data_dir: data directory (default :func:`jaxgan.data.default_data_dir`).
    variant: ``'lenet5'`` or ``'lenet5_half'``.
    train_if_missing: train (about a minute on CPU) when no cache exists;
      otherwise raise ``FileNotFoundError``.
    config: training settings, used only when training (default
      :class:`ClassifierTrainConfig`).
    splits: ``(train, test)`` float splits used only when training; default
      :func:`load_mnist_splits`.
    log: progress callback while training.

  Returns:
    ``(module, params, metadata)``.
  """
  module = _check_variant(variant)()
  params_path, meta_path = classifier_paths(data_dir, variant)
  if not meta_path.exists():
    if not train_if_missing:
      raise FileNotFoundError(
        f'no cached MNIST classifier at {params_path}; train it with '
        f'`python -m experiments.train_classifier --variant {variant}` or pass '
        'train_if_missing=True.'
      )
    with _exclusive_lock(params_path):
      if not meta_path.exists():  # another process may have finished meanwhile
        _train_and_write(variant, data_dir, params_path, meta_path, config, splits, log)
  params, meta = load_classifier(params_path, meta_path)
  return module, params, meta


def _lenet_outputs(module: LeNet5, params: PyTree, images: jax.Array) -> dict[str, jax.Array]:
  features, logits = module.apply({'params': params}, images, method=module.features_and_logits)
  return {'features': features, 'logits': logits}


# One apply function object per variant, so jit compiles each once per shape.
_APPLY = {name: functools.partial(_lenet_outputs, cls()) for name, cls in VARIANTS.items()}


def mnist_extractor(
  data_dir: str | os.PathLike | None = None,
  train_if_missing: bool = True,
  *,
  variant: str = 'lenet5',
  batch_size: int = 500,
  **kwargs,
) -> FeatureExtractor:
  """The MNIST classifier as a :class:`FeatureExtractor`.

  Outputs ``'features'`` (penultimate ReLU activations, ``[B, 84]`` for
  LeNet-5) and ``'logits'`` ``[B, 10]`` for images ``[B, 28, 28, 1]`` in [-1, 1].

  Args:
    data_dir: data directory (default :func:`jaxgan.data.default_data_dir`).
    train_if_missing: see :func:`mnist_classifier`.
    variant: ``'lenet5'`` or ``'lenet5_half'``.
    batch_size: default extraction batch size.
    **kwargs: ``config``, ``splits``, ``log`` for :func:`mnist_classifier`.
  """
  _, params, meta = mnist_classifier(
    data_dir, variant=variant, train_if_missing=train_if_missing, **kwargs
  )
  return FeatureExtractor(
    name=f'mnist_{variant}@{meta["sha256"][:12]}',
    apply=_APPLY[variant],
    params=params,
    image_shape=(28, 28, 1),
    batch_size=batch_size,
  )


def mnist_reference(
  data_dir: str | os.PathLike | None = None,
  split: str = 'train',
  *,
  extractor: FeatureExtractor | None = None,
  keep_features: bool = True,
) -> ReferenceStats:
  """Reference statistics of an MNIST-5k split under the MNIST classifier, cached.

  Computed once per (split, extractor) and stored next to the classifier as
  ``references/mnist5k_<split>__<extractor name>.npz``; the file name carries
  the classifier's SHA-256 prefix, so a retrained classifier gets new files.

  Args:
    data_dir: data directory (default :func:`jaxgan.data.default_data_dir`).
    split: ``'train'`` (4,000 images, the usual reference) or ``'test'``.
    extractor: default :func:`mnist_extractor` ``(data_dir)``.
    keep_features: store the features too (KID and the k-NN metrics need them).
  """
  if split not in ('train', 'test'):
    raise ValueError(f"MNIST-5k has splits 'train' and 'test'; got split={split!r}.")
  extractor = extractor if extractor is not None else mnist_extractor(data_dir)
  root = Path(data_dir).expanduser() if data_dir else data_lib.default_data_dir()
  name = extractor.name.replace('@', '_')
  path = root / 'references' / f'{DATASET}_{split}__{name}.npz'
  if path.exists():
    reference = load_reference(path)
    if keep_features and reference.features is None:
      path.unlink()  # cached without features; recompute below
    else:
      return reference
  arrays = data_lib.load_arrays(DATASET, split, data_dir=data_dir)
  reference = compute_reference(
    extractor, data_lib.to_float(arrays['image']), f'{DATASET}/{split}', keep_features=keep_features
  )
  save_reference(path, reference)
  return reference
