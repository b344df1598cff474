"""The project's MNIST classifier as an evaluation feature extractor.

The LeNet-5 of :mod:`jaxgan.models.classifier` is trained once on the offline
MNIST-5k train split (4,000 images) and cached in the data directory (the
``data_dir`` of :func:`jaxgan.data.load_arrays`; default
:func:`jaxgan.data.default_data_dir`) as

* ``classifiers/mnist5k_<variant>.msgpack``: the params
  (``flax.serialization.msgpack_serialize``),
* ``classifiers/mnist5k_<variant>.json``: metadata (held-out accuracy on the
  1,000 test images, seed, epochs, training time, SHA-256 of the params file).

Its penultimate (fc 84) activations give MNIST FID/KID/precision-recall and
its softmax gives an MNIST Inception Score and the Stacked-MNIST mode labels.
The extractor is named ``mnist_<variant>@<first 12 hex digits of the SHA-256>``
so every score names the exact weights.

Concurrency: training and writing happen under an exclusive ``flock`` on
``<params>.lock``; files are written to a temporary name and renamed, params
first and metadata last, so a reader that finds the metadata always finds the
params it describes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgan import data as data_lib
from jaxgan.metrics.features import FeatureExtractor
from jaxgan.models.classifier import LeNet5, LeNet5Half

PyTree = Any
VARIANTS: dict[str, type[LeNet5]] = {'lenet5': LeNet5, 'lenet5_half': LeNet5Half}
DATASET = 'mnist5k'


@dataclasses.dataclass(frozen=True)
class ClassifierTrainConfig:
  """How the MNIST classifier is trained.

  Attributes:
    epochs: passes over the training images.
    batch_size: images per Adam step.
    learning_rate: peak Adam learning rate (cosine decay to 0 over training).
    max_shift: augmentation: random translation by up to this many pixels in
      each direction.
    max_rotation: augmentation: random rotation by up to this many degrees.
    max_scale: augmentation: random zoom in ``[1 - max_scale, 1 + max_scale]``.
      All three at 0 disable augmentation.
    seed: seeds initialisation, shuffling and augmentation.
  """

  epochs: int = 30
  batch_size: int = 64
  learning_rate: float = 2e-3
  max_shift: float = 2.0
  max_rotation: float = 12.0
  max_scale: float = 0.1
  seed: int = 0


def _check_variant(variant: str) -> type[LeNet5]:
  if variant not in VARIANTS:
    raise ValueError(f'unknown classifier variant {variant!r}; choose one of {sorted(VARIANTS)}.')
  return VARIANTS[variant]


def _check_split(name: str, split: dict) -> None:
  image, label = split.get('image'), split.get('label')
  if image is None or label is None:
    raise ValueError(f'{name} must be a dict with "image" and "label"; got keys {sorted(split)}.')
  if image.ndim != 4 or image.shape[1:3] not in ((28, 28), (32, 32)) or len(image) != len(label):
    raise ValueError(
        f'{name}["image"] must be [N, 28, 28, C] (or 32x32) with one label each; got '
        f'{image.shape} images and {np.shape(label)} labels.'
    )
  if not np.issubdtype(image.dtype, np.floating):
    raise ValueError(
        f'{name}["image"] must be float in [-1, 1]; got {image.dtype}. Use jaxgan.data.to_float.'
    )


def affine_warp(images: jax.Array, shift: jax.Array, angle: jax.Array, scale: jax.Array) -> jax.Array:
  """Rotates, zooms (about the image centre) and translates each image.

  Args:
    images: ``[B, H, W, C]`` in [-1, 1].
    shift: ``[B, 2]`` translation in pixels (rows, columns).
    angle: ``[B]`` rotation in radians (clockwise as displayed, rows downward).
    scale: ``[B]`` zoom factors (> 1 enlarges).

  Returns:
    ``[B, H, W, C]``, bilinear; pixels mapped from outside the input are -1.
  """
  _, h, w, _ = images.shape
  rows, cols = jnp.meshgrid(
      jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing='ij'
  )
  cy, cx = (h - 1) / 2, (w - 1) / 2

  def warp(img, shift, angle, scale):
    # Inverse map: output pixel -> input coordinate.
    y, x = rows - cy - shift[0], cols - cx - shift[1]
    cos, sin = jnp.cos(angle) / scale, jnp.sin(angle) / scale
    src_y = cos * y - sin * x + cy
    src_x = sin * y + cos * x + cx
    per_channel = lambda ch: jax.scipy.ndimage.map_coordinates(
        ch, [src_y, src_x], order=1, mode='constant', cval=-1.0
    )
    return jax.vmap(per_channel, in_axes=-1, out_axes=-1)(img)

  return jax.vmap(warp)(images, shift, angle, scale)


def random_affine(
    key: jax.Array,
    images: jax.Array,
    max_shift: float,
    max_rotation: float = 0.0,
    max_scale: float = 0.0,
) -> jax.Array:
  """:func:`affine_warp` with per-image parameters drawn uniformly.

  Args:
    key: PRNG key.
    images: ``[B, H, W, C]`` in [-1, 1].
    max_shift: translation in ``[-max_shift, max_shift]`` pixels per axis.
    max_rotation: rotation in ``[-max_rotation, max_rotation]`` degrees.
    max_scale: zoom factor in ``[1 - max_scale, 1 + max_scale]``.

  The ranges may be traced values; all zero gives back ``images`` exactly
  (the warp then samples every pixel at its own position).
  """
  b = images.shape[0]
  k_shift, k_rot, k_scale = jax.random.split(key, 3)
  shift = jax.random.uniform(k_shift, (b, 2), minval=-max_shift, maxval=max_shift)
  angle = jnp.deg2rad(jax.random.uniform(k_rot, (b,), minval=-max_rotation, maxval=max_rotation))
  scale = jax.random.uniform(k_scale, (b,), minval=1 - max_scale, maxval=1 + max_scale)
  return affine_warp(images, shift, angle, scale)


@functools.partial(jax.jit, static_argnums=0)
def _logits(module: nn.Module, params: PyTree, images: jax.Array) -> jax.Array:
  return module.apply({'params': params}, images)


def classifier_accuracy(
    module: nn.Module, params: PyTree, images: np.ndarray, labels: np.ndarray, batch_size: int = 500
) -> float:
  """Top-1 accuracy of ``module`` on float images ``[N, H, W, C]`` with labels ``[N]``."""
  preds = np.concatenate([
      np.asarray(jnp.argmax(_logits(module, params, images[i : i + batch_size]), axis=-1))
      for i in range(0, len(images), batch_size)
  ])
  return float(np.mean(preds == np.asarray(labels)))


# Adam's moments; the learning rate multiplies the update in the step, so the
# compiled step does not depend on the schedule (one compile per module and
# batch shape, shared by every training run in a process).
_ADAM = optax.scale_by_adam()


@functools.partial(jax.jit, static_argnums=0)
def _init(module, key, x):
  return module.init(key, x)


@functools.partial(jax.jit, static_argnums=0)
def _train_step(module, params, opt_state, images, labels, idx, key, lr, augment):
  # The whole training set stays on device; one dispatch per step (on XLA:CPU
  # a lax.scan over steps measured ~3x slower than separate dispatches).
  x = random_affine(key, images[idx], augment[0], augment[1], augment[2])

  def loss_fn(p):
    logits = module.apply({'params': p}, x, train=True)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels[idx]).mean()

  loss, grads = jax.value_and_grad(loss_fn)(params)
  updates, opt_state = _ADAM.update(grads, opt_state, params)
  params = jax.tree.map(lambda p, u: p - lr * u, params, updates)
  return params, opt_state, loss


def train_classifier(
    module: nn.Module,
    train: dict[str, np.ndarray],
    test: dict[str, np.ndarray] | None = None,
    config: ClassifierTrainConfig = ClassifierTrainConfig(),
    log: Callable[[str], None] | None = None,
) -> tuple[PyTree, dict]:
  """Trains a classifier with Adam, cross-entropy and random affine augmentation.

  Args:
    module: a Flax classifier ``(x [B, H, W, C], train) -> logits [B, K]``.
    train: ``{'image': float [N, H, W, C] in [-1, 1], 'label': int [N]}``.
    test: the same for held-out images, or ``None``.
    config: optimisation settings.
    log: called with one line per epoch (e.g. ``print``), or ``None``.

  Returns:
    ``(params, info)``; ``info`` has ``train_accuracy``, ``test_accuracy``
    (``None`` without ``test``), ``train_seconds`` and the config fields.
  """
  _check_split('train', train)
  if test is not None:
    _check_split('test', test)
  if config.epochs < 1 or config.batch_size < 1:
    raise ValueError(f'invalid training config {config}: need epochs >= 1 and batch_size >= 1.')
  if min(config.max_shift, config.max_rotation, config.max_scale) < 0 or config.max_scale >= 1:
    raise ValueError(
        f'invalid augmentation in {config}: max_shift, max_rotation >= 0 and 0 <= max_scale < 1.'
    )
  images = np.asarray(train['image'], np.float32)
  labels = np.asarray(train['label'], np.int32)
  n = len(images)
  batch_size = min(config.batch_size, n)
  steps_per_epoch = n // batch_size
  key = jax.random.PRNGKey(config.seed)
  init_key, key = jax.random.split(key)
  x0 = jnp.zeros((1, *images.shape[1:]), jnp.float32)
  params = _init(module, init_key, x0)['params']
  schedule = optax.cosine_decay_schedule(config.learning_rate, config.epochs * steps_per_epoch)
  opt_state = _ADAM.init(params)
  augment = jnp.array([config.max_shift, config.max_rotation, config.max_scale], jnp.float32)
  images_dev, labels_dev = jnp.asarray(images), jnp.asarray(labels)
  rng = np.random.default_rng(config.seed)
  start = time.perf_counter()
  for epoch in range(config.epochs):
    order = rng.permutation(n)
    losses = []
    for i in range(steps_per_epoch):
      key, sub = jax.random.split(key)
      idx = order[i * batch_size : (i + 1) * batch_size]
      lr = schedule(epoch * steps_per_epoch + i)
      params, opt_state, loss = _train_step(
          module, params, opt_state, images_dev, labels_dev, idx, sub, lr, augment
      )
      losses.append(loss)
    if log is not None:
      msg = f'epoch {epoch + 1}/{config.epochs} loss {float(np.mean(losses)):.4f}'
      if test is not None and (epoch + 1) % 5 == 0:
        acc = classifier_accuracy(module, params, test['image'], test['label'])
        msg += f' test_acc {acc:.4f}'
      log(msg)
  jax.block_until_ready(params)
  seconds = time.perf_counter() - start
  info = {
      **dataclasses.asdict(config),
      'train_accuracy': classifier_accuracy(module, params, images, labels),
      'test_accuracy': (
          None if test is None else classifier_accuracy(module, params, test['image'], test['label'])
      ),
      'train_seconds': seconds,
      'n_train': n,
      'n_test': None if test is None else len(test['image']),
  }
  return params, info


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
  train, test = splits if splits is not None else load_mnist_splits(data_dir)
  params, info = train_classifier(VARIANTS[variant](), train, test, config, log=log)
  info = {**info, 'variant': variant, 'dataset': DATASET, 'jax_version': jax.__version__}
  return params, save_classifier(params_path, meta_path, params, info)


def train_and_save_classifier(
    data_dir: str | os.PathLike | None = None,
    *,
    variant: str = 'lenet5',
    config: ClassifierTrainConfig = ClassifierTrainConfig(),
    splits: tuple[dict, dict] | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[PyTree, dict]:
  """Trains the MNIST classifier and writes it to the cache (overwriting).

  Args:
    data_dir: data directory (default :func:`jaxgan.data.default_data_dir`).
    variant: ``'lenet5'`` or ``'lenet5_half'``.
    config: training settings.
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
    config: ClassifierTrainConfig = ClassifierTrainConfig(),
    splits: tuple[dict, dict] | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[LeNet5, PyTree, dict]:
  """Loads the cached MNIST classifier, training it once if it is missing.

  Args:
    data_dir: data directory (default :func:`jaxgan.data.default_data_dir`).
    variant: ``'lenet5'`` or ``'lenet5_half'``.
    train_if_missing: train (about a minute on CPU) when no cache exists;
      otherwise raise ``FileNotFoundError``.
    config: training settings, used only when training.
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
