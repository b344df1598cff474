"""digits8x8: scikit-learn's 1,797 handwritten 8x8 digits, as a local tfds dataset.

Source: ``sklearn.datasets.load_digits`` (bundled with scikit-learn; pixel
values 0..16). Stored as uint8 ``[8, 8, 1]`` scaled to 0..255
(``round(v * 255 / 16)``), labels 0..9.

Splits (fixed, class-balanced): ``'test'`` holds 36 images per digit (360)
chosen at random with seed 0; ``'train'`` the other 1,437. Rows are stored in
a fixed random order (seed 0). Use ``split='train+test'`` for all 1,797.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from jaxgan.data.subset import holdout_split
from jaxgan.data.tfds_source import write_arrays_dataset

NAME = 'digits8x8'
VERSION = '1.0.0'
NUM_CLASSES = 10
TEST_COUNT = 360
SPLIT_SEED = 0
DESCRIPTION = (
  "scikit-learn's 8x8 digits (load_digits), pixels scaled from 0..16 to 0..255. "
  'test: 36 per digit chosen with seed 0; train: the other 1,437.'
)


def read_sklearn() -> dict[str, np.ndarray]:
  """All 1,797 digits in scikit-learn's order: ``{'image': uint8 [N, 8, 8, 1], 'label': int64 [N]}``."""
  # Imported on use: sklearn.datasets takes seconds to import.
  from sklearn.datasets import load_digits

  bunch = load_digits()
  images = np.rint(np.asarray(bunch.images, np.float64) * (255.0 / 16.0)).astype(np.uint8)
  return {'image': images[..., None], 'label': np.asarray(bunch.target, np.int64)}


def make_splits() -> dict[str, dict[str, np.ndarray]]:
  """``{'train': 1,437, 'test': 360}`` arrays, as stored."""
  return holdout_split(read_sklearn(), test_count=TEST_COUNT, seed=SPLIT_SEED)


def prepare(data_dir: str | os.PathLike | None = None) -> Path:
  """Writes digits8x8 as a tfds array_record dataset once; returns its directory."""
  return write_arrays_dataset(
    NAME, VERSION, make_splits, data_dir=data_dir, num_classes=NUM_CLASSES, description=DESCRIPTION
  )
