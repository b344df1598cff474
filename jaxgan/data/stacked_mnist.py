"""Stacked-MNIST: three MNIST digits as the R, G, B channels (1,000 modes).

Each example draws three images independently and uniformly (with
replacement) from an MNIST split with a fixed seed and stacks them as
channels; its label is the mode ``100 d0 + 10 d1 + d2`` of the three digits
(channel 0 is the hundreds). Built in memory from MNIST-5k (4,000 train
images give ``400^3`` distinct triples per mode), so nothing extra is stored.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

NUM_MODES = 1000
DEFAULT_COUNT = 50_000
DEFAULT_SEED = 0


def stack_digits(
  digits: Mapping[str, np.ndarray], count: int = DEFAULT_COUNT, *, seed: int = DEFAULT_SEED
) -> dict[str, np.ndarray]:
  """Builds Stacked-MNIST from single-channel digits.

  Args:
    digits: ``{'image': uint8 [N, H, W, 1], 'label': int [N]}`` with labels 0..9.
    count: number of stacked examples.
    seed: which triples are drawn.

  Returns:
    ``{'image': uint8 [count, H, W, 3], 'label': int64 [count]}``; label
    ``100 d0 + 10 d1 + d2`` in ``[0, 1000)``.
  """
  images, labels = np.asarray(digits['image']), np.asarray(digits['label'])
  if images.ndim != 4 or images.shape[-1] != 1 or len(images) != len(labels):
    raise ValueError(
      f'stack_digits needs [N, H, W, 1] images with N labels; got {images.shape} and {labels.shape}.'
    )
  if labels.min() < 0 or labels.max() > 9:
    raise ValueError(
      f'stack_digits needs digit labels 0..9; got range [{labels.min()}, {labels.max()}].'
    )
  if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 1:
    raise ValueError(f'count must be a positive integer; got {count!r}.')
  idx = np.random.default_rng(seed).integers(0, len(images), size=(int(count), 3))
  stacked = np.concatenate([images[idx[:, c]] for c in range(3)], axis=-1)
  modes = labels[idx].astype(np.int64) @ np.array([100, 10, 1], np.int64)
  return {'image': stacked, 'label': modes}
