"""An offline unpaired translation task built from MNIST-5k: plain digits -> thick, inverted.

Each MNIST-5k split (``'train'``: 4,000, ``'test'``: 1,000) is cut into two disjoint,
class-balanced halves (:func:`split_halves`): for every digit, the first half of its
rows (in stored order) goes to half 1, the rest to half 2.

* Domain A (source): the plain digits of half 1.
* Domain B (target): the digits of half 2 after the fixed appearance change
  :func:`appearance_b`: 3x3 grey dilation (strokes about 2 pixels thicker), then
  inversion (``255 - x``: white background, dark strokes).

A and B show different digit images, so the task is unpaired; labels are kept for
evaluation only (content preservation). Batches (:func:`translation_batches`) follow
the steps' ``'latent'`` contract (``docs/INTERFACES.md``)::

    {'image': B [n, 28, 28, 1],                     # D's real batch
     'latent': {'source': A [n, 28, 28, 1],         # G's input
                'target': B [n, 28, 28, 1]},        # the same B batch (identity NCE)
     'source_label': [n] int32}                     # labels of the A batch (not for training)

Images are float32 in [-1, 1] (``jaxgan.data.to_float`` of the uint8 pixels).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from jaxgan.data.catalog import load_arrays
from jaxgan.data.images import to_float

DATASET = 'mnist5k'
SPLITS = ('train', 'test')


def dilate3x3(images: np.ndarray) -> np.ndarray:
  """Grey dilation with a 3x3 square: each pixel becomes the max of its 3x3 neighbourhood.

  Args:
    images: uint8 ``[N, H, W, C]`` (0 = background); outside the image counts as 0.

  Returns:
    uint8, same shape.
  """
  images = np.asarray(images)
  if images.ndim != 4 or images.dtype != np.uint8:
    raise ValueError(
      f'dilate3x3 takes uint8 images [N, H, W, C], got {images.dtype} {images.shape}; use '
      'jaxgan.data.to_uint8 for float images.'
    )
  h, w = images.shape[1:3]
  padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)))
  shifts = [padded[:, i : i + h, j : j + w] for i in range(3) for j in range(3)]
  return np.max(np.stack(shifts), axis=0)


def appearance_b(images: np.ndarray) -> np.ndarray:
  """Domain B's appearance: ``255 - dilate3x3(x)`` on uint8 ``[N, H, W, C]`` images."""
  return (255 - dilate3x3(images)).astype(np.uint8)


def split_halves(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Disjoint, class-balanced halves of a split: ``(rows of half 1, rows of half 2)``.

  For every label, the first ``ceil(n / 2)`` of its rows (in stored order) go to half 1
  and the rest to half 2; both index arrays are sorted.
  """
  labels = np.asarray(labels)
  first, second = [], []
  for c in np.unique(labels):
    rows = np.flatnonzero(labels == c)
    cut = (len(rows) + 1) // 2
    first.append(rows[:cut])
    second.append(rows[cut:])
  return np.sort(np.concatenate(first)), np.sort(np.concatenate(second))


def load_task(split: str = 'train', data_dir: str | os.PathLike | None = None) -> dict:
  """One split of the task.

  Args:
    split: ``'train'`` (2,000 A and 2,000 B images) or ``'test'`` (500 and 500).
    data_dir: data directory of MNIST-5k (default :func:`jaxgan.data.default_data_dir`).

  Returns:
    ``{'source': float [Na, 28, 28, 1] (domain A), 'source_label': int32 [Na],
    'target': float [Nb, 28, 28, 1] (domain B), 'target_label': int32 [Nb],
    'target_plain': uint8 [Nb, 28, 28, 1] (the plain digits B was made from),
    'source_index', 'target_index': rows of the MNIST-5k split}``.
  """
  if split not in SPLITS:
    raise ValueError(f'the MNIST translation task has splits {SPLITS}; got split={split!r}.')
  arrays = load_arrays(DATASET, split, data_dir=data_dir)
  images, labels = np.asarray(arrays['image']), np.asarray(arrays['label']).astype(np.int32)
  ia, ib = split_halves(labels)
  return {
    'source': to_float(images[ia]),
    'source_label': labels[ia],
    'target': to_float(appearance_b(images[ib])),
    'target_label': labels[ib],
    'target_plain': images[ib],
    'source_index': ia,
    'target_index': ib,
  }


def translation_batches(task: dict, batch_size: int, *, seed: int = 0) -> Iterator[dict]:
  """Endless unpaired batches (module docstring for the layout).

  A and B are drawn independently, each without replacement within its own epoch
  (a fresh permutation per epoch of each domain, from ``seed``).

  Args:
    task: :func:`load_task` output.
    batch_size: rows per batch (for two-stage with ``n_dis > 1``: ``n_dis * B``).
    seed: shuffling seed.

  Yields:
    ``{'image', 'latent': {'source', 'target'}, 'source_label'}`` numpy arrays.
  """
  n_a, n_b = len(task['source']), len(task['target'])
  if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
    raise ValueError(f'batch_size must be an int >= 1, got {batch_size!r}.')
  if batch_size > min(n_a, n_b):
    raise ValueError(
      f'batch_size={batch_size} exceeds a domain of the task ({n_a} A, {n_b} B images); '
      f'use at most {min(n_a, n_b)}.'
    )
  rng = np.random.default_rng(seed)

  def rows(n):
    while True:
      order = rng.permutation(n)
      for i in range(0, n - batch_size + 1, batch_size):
        yield order[i : i + batch_size]

  rows_a, rows_b = rows(n_a), rows(n_b)
  while True:
    ia, ib = next(rows_a), next(rows_b)
    target = task['target'][ib]
    yield {
      'image': target,
      'latent': {'source': task['source'][ia], 'target': target},
      'source_label': task['source_label'][ia],
    }
