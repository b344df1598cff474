"""Supervised training of a small image classifier (the MNIST evaluation LeNet).

:func:`train_classifier` runs Adam with a cosine-decayed learning rate on
cross-entropy, with random affine augmentation (:func:`random_affine`: shift,
rotation, zoom, background -1). The compiled step depends only on the module
and the batch shape: the learning rate and augmentation ranges are traced
arguments, so repeated trainings in one process compile once.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

PyTree = Any


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


def affine_warp(
  images: jax.Array, shift: jax.Array, angle: jax.Array, scale: jax.Array
) -> jax.Array:
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
  preds = np.concatenate(
    [
      np.asarray(jnp.argmax(_logits(module, params, images[i : i + batch_size]), axis=-1))
      for i in range(0, len(images), batch_size)
    ]
  )
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
  _check_training(train, test, config)
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
  return params, _training_info(module, params, images, labels, test, config, seconds)


def _check_training(train: dict, test: dict | None, config: ClassifierTrainConfig) -> None:
  _check_split('train', train)
  if test is not None:
    _check_split('test', test)
  if config.epochs < 1 or config.batch_size < 1:
    raise ValueError(f'invalid training config {config}: need epochs >= 1 and batch_size >= 1.')
  if min(config.max_shift, config.max_rotation, config.max_scale) < 0 or config.max_scale >= 1:
    raise ValueError(
      f'invalid augmentation in {config}: max_shift, max_rotation >= 0 and 0 <= max_scale < 1.'
    )


def _training_info(module, params, images, labels, test, config, seconds: float) -> dict:
  """The ``info`` dict of :func:`train_classifier`: config, accuracies, time, sizes."""
  return {
    **dataclasses.asdict(config),
    'train_accuracy': classifier_accuracy(module, params, images, labels),
    'test_accuracy': (
      None if test is None else classifier_accuracy(module, params, test['image'], test['label'])
    ),
    'train_seconds': seconds,
    'n_train': len(images),
    'n_test': None if test is None else len(test['image']),
  }
