"""Pixel conversions: uint8 ``[0, 255]`` <-> float32 ``[-1, 1]``, and padding."""

from __future__ import annotations

import numpy as np


def to_float(images: np.ndarray) -> np.ndarray:
  """uint8 images to the library's float32 range.

  Args:
    images: uint8 ``[..., H, W, C]`` in ``[0, 255]``.

  Returns:
    float32, same shape, ``x / 127.5 - 1`` in ``[-1, 1]``.
  """
  images = np.asarray(images)
  if images.dtype != np.uint8:
    raise ValueError(
      f'to_float expects uint8 images in [0, 255]; got dtype {images.dtype}. Images that are '
      'already float need no conversion (floats in [0, 1]: use x * 2 - 1).'
    )
  return images.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def to_uint8(images: np.ndarray) -> np.ndarray:
  """The inverse of :func:`to_float`, for saving images.

  Args:
    images: float ``[..., H, W, C]`` in ``[-1, 1]`` (values outside are clipped).

  Returns:
    uint8, same shape, ``round((x + 1) * 127.5)``.
  """
  images = np.asarray(images)
  if not np.issubdtype(images.dtype, np.floating):
    raise ValueError(f'to_uint8 expects float images in [-1, 1]; got dtype {images.dtype}.')
  scaled = np.rint((images.astype(np.float32) + 1.0) * 127.5)
  return np.clip(scaled, 0, 255).astype(np.uint8)


def pad_to(
  images: np.ndarray, size: int | tuple[int, int], *, value: float | None = None
) -> np.ndarray:
  """Pads images evenly on all sides to a target height and width (e.g. 28 -> 32).

  An odd difference puts the extra row (column) at the bottom (right).

  Args:
    images: ``[N, H, W, C]``, uint8 or float.
    size: target ``S`` (square) or ``(H', W')`` with ``H' >= H``, ``W' >= W``.
    value: the fill; default the background of the range: ``-1`` for float
      images, ``0`` for integer images.

  Returns:
    ``[N, H', W', C]``, same dtype.
  """
  images = np.asarray(images)
  if images.ndim != 4:
    raise ValueError(f'pad_to expects [N, H, W, C] images; got shape {images.shape}.')
  target = (size, size) if isinstance(size, int | np.integer) else tuple(size)
  h, w = images.shape[1:3]
  if len(target) != 2 or target[0] < h or target[1] < w:
    raise ValueError(
      f'pad_to size {size} must be at least the image size ({h}, {w}); pad_to never crops.'
    )
  if value is None:
    value = -1.0 if np.issubdtype(images.dtype, np.floating) else 0
  dh, dw = target[0] - h, target[1] - w
  pads = ((0, 0), (dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2), (0, 0))
  return np.pad(images, pads, mode='constant', constant_values=value)
