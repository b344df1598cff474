"""Batched, jit-compiled feature extraction, sharded over local devices.

A feature extractor is a pure function of ``(params, images)`` returning a
dict of per-image arrays (``'features'`` and, when the network has a
classifier head, ``'logits'``). :class:`FeatureExtractor` bundles it with its
params and the name that goes into every score's protocol; :func:`extract_features`
runs it over a whole array in fixed-size batches (the last one padded, so one
compiled program serves every batch) with the batch split over the local
devices by a ``NamedSharding`` when there are several.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgan import parallel

Array = jax.Array
PyTree = Any
# (params, images [B, H, W, C] in [-1, 1]) -> {'features': [B, D], 'logits': [B, K], ...}
ApplyFn = Callable[[PyTree, Array], dict[str, Array]]


@dataclasses.dataclass(frozen=True)
class FeatureExtractor:
  """A named, parameterised feature network.

  Attributes:
    name: identifies the network and its weights, e.g.
      ``'mnist_lenet5@<sha256 prefix>'``; recorded in every protocol.
    apply: ``(params, images [B, H, W, C]) -> {'features': [B, D], ...}``;
      ``'logits'`` ``[B, K]`` is present when the network classifies.
    params: the pytree passed as ``apply``'s first argument.
    image_shape: the ``(H, W, C)`` the network takes, or ``None`` if it resizes
      any input itself.
    batch_size: default batch size for :func:`extract_features`.
  """

  name: str
  apply: ApplyFn = dataclasses.field(repr=False)
  params: PyTree = dataclasses.field(repr=False)
  image_shape: tuple[int, int, int] | None = None
  batch_size: int = 250

  def __post_init__(self):
    # Params are replicated over the local devices once, not at every call.
    mesh = parallel.make_mesh(jax.local_devices())
    object.__setattr__(self, 'params', jax.device_put(self.params, parallel.replicated(mesh)))

  def __call__(
    self, images: np.ndarray | Array, batch_size: int | None = None
  ) -> dict[str, np.ndarray]:
    """Runs :func:`extract_features` with this extractor's params."""
    if self.image_shape is not None and tuple(images.shape[1:]) != tuple(self.image_shape):
      raise ValueError(
        f'extractor {self.name!r} takes images of shape [N, {", ".join(map(str, self.image_shape))}]; '
        f'got {tuple(images.shape)}. Resize/convert the images first.'
      )
    return extract_features(self.apply, images, batch_size or self.batch_size, params=self.params)


def _check_images(images: np.ndarray | Array, batch_size: int) -> None:
  if getattr(images, 'ndim', None) != 4:
    raise ValueError(
      f'images must be [N, H, W, C]; got shape {getattr(images, "shape", None)}. '
      'Add a channel axis for grayscale images (x[..., None]).'
    )
  if not jnp.issubdtype(images.dtype, jnp.floating):
    raise ValueError(
      f'images must be float in [-1, 1]; got dtype {images.dtype}. '
      'Convert uint8 images with jaxgan.data.to_float.'
    )
  if batch_size <= 0:
    raise ValueError(f'batch_size must be positive, got {batch_size}.')
  if images.shape[0] == 0:
    raise ValueError('images is empty (N = 0); pass at least one image.')


def _pad_batch(batch: np.ndarray | Array, batch_size: int) -> np.ndarray | Array:
  """``batch`` as float32 zero-padded to ``batch_size`` rows (a jax array stays on device)."""
  pad = ((0, batch_size - batch.shape[0]), (0, 0), (0, 0), (0, 0))
  if isinstance(batch, jax.Array):
    return jnp.pad(batch.astype(jnp.float32), pad)
  return np.pad(np.asarray(batch, np.float32), pad)


def extract_features(
  apply_fn: ApplyFn,
  images: np.ndarray | Array,
  batch_size: int = 250,
  *,
  params: PyTree = None,
  devices: list | None = None,
) -> dict[str, np.ndarray]:
  """Applies a feature network to every image, batch by batch.

  Each batch is padded to ``batch_size`` (so one compiled program serves all)
  and, with several devices, sharded along its first axis over a 1-D mesh of
  ``devices`` while ``params`` are replicated. Outputs come back to the host
  as numpy arrays with the padding removed.

  Args:
    apply_fn: ``(params, images [B, H, W, C]) -> dict`` of arrays with leading
      axis ``B`` (or a single array, returned as ``{'features': ...}``).
    images: ``[N, H, W, C]`` float images in [-1, 1] (numpy or jax).
    batch_size: images per compiled call; rounded up to a multiple of the
      device count.
    params: first argument of ``apply_fn``.
    devices: devices to shard over (default: this process's local devices).

  Returns:
    Dict of ``[N, ...]`` numpy arrays.
  """
  _check_images(images, batch_size)
  n = images.shape[0]
  devices = jax.local_devices() if devices is None else list(devices)
  n_dev = len(devices)
  batch_size = math.ceil(batch_size / n_dev) * n_dev
  batch_size = min(batch_size, math.ceil(n / n_dev) * n_dev)
  mesh = parallel.make_mesh(devices)
  batch_sharding = parallel.data_sharded(mesh)
  params = jax.device_put(params, parallel.replicated(mesh))
  fn = jax.jit(apply_fn)  # jax caches the compiled program per function object

  outputs = []
  for start in range(0, n, batch_size):
    batch = images[start : start + batch_size]
    valid = batch.shape[0]
    out = fn(params, jax.device_put(_pad_batch(batch, batch_size), batch_sharding))
    if not isinstance(out, dict):
      out = {'features': out}
    outputs.append((valid, out))  # still on device: the next batch dispatches meanwhile
  keys = outputs[0][1].keys()
  return {k: np.concatenate([np.asarray(out[k])[:valid] for valid, out in outputs]) for k in keys}
