"""tfds datasets on disk as array_record files: written and read without TensorFlow.

Reading goes through ``tfds.data_source`` (random access over array_record
files), which needs no TensorFlow. Writing the bundled offline datasets uses a
``tfds.core.GeneratorBasedBuilder`` whose features are a raw
``tfds.features.Tensor`` (uint8 image, no PNG encoding) and a
``tfds.features.ClassLabel``; with ``file_format='array_record'`` its
``download_and_prepare`` also runs without TensorFlow (checked with
tensorflow-datasets 4.9.10). ``tfds.dataset_builders.store_as_tfds_dataset``
does not: it tests its inputs against ``tf.data.Dataset`` and so imports
TensorFlow.

Where data lives: ``data_dir`` is a tfds data directory (it holds
``<name>/<version>/``). When it is ``None`` or ``''``, jaxgan uses
``$JAXGAN_DATA_DIR`` if set, else ``~/.cache/jaxgan/tensorflow_datasets``.
For datasets prepared by tfds itself, the tfds default directory
(``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``) is searched as well.

While writing, tfds' download messages and progress bars are off (nothing is
downloaded). A dataset is built in a temporary directory inside ``data_dir`` and
moved into place with one ``os.rename``, so readers never see it half-written
and two processes preparing it at once both end with the same complete dataset
(:func:`write_arrays_dataset`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

ENV_DATA_DIR = 'JAXGAN_DATA_DIR'
READABLE_FORMATS = ('array_record', 'parquet')


class DatasetNotPreparedError(FileNotFoundError):
  """A tfds dataset is not on disk in a format that ``tfds.data_source`` reads."""


def default_data_dir() -> Path:
  """``$JAXGAN_DATA_DIR`` if set and non-empty, else ``~/.cache/jaxgan/tensorflow_datasets``."""
  env = os.environ.get(ENV_DATA_DIR)
  if env:
    return Path(env).expanduser()
  return Path.home() / '.cache' / 'jaxgan' / 'tensorflow_datasets'


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
  """The tfds data directory to use: ``data_dir`` if given (non-empty), else the default."""
  return Path(data_dir).expanduser() if data_dir else default_data_dir()


def _tfds():
  # Imported on use: tensorflow_datasets takes about a second to import.
  import tensorflow_datasets as tfds

  return tfds


@contextlib.contextmanager
def _no_progress_bars(tfds):
  """tfds' progress bars off (they name temporary files), then as they were."""
  was_on = getattr(tfds.core.utils.tqdm_utils, '_active', True)
  tfds.display_progress_bar(False)
  try:
    yield
  finally:
    tfds.display_progress_bar(was_on)


def _is_complete(version_dir: Path) -> bool:
  return (version_dir / 'dataset_info.json').is_file()


def _arrays_builder(
  name: str,
  version: str,
  splits: Mapping[str, Mapping[str, np.ndarray]],
  *,
  num_classes: int,
  description: str,
):
  """A GeneratorBasedBuilder class that writes in-memory uint8 images and int labels."""
  tfds = _tfds()
  image_shape = next(iter(splits.values()))['image'].shape[1:]

  def _info(self):
    features = tfds.features.FeaturesDict(
      {
        'image': tfds.features.Tensor(shape=image_shape, dtype=np.uint8),
        'label': tfds.features.ClassLabel(num_classes=num_classes),
      }
    )
    # disable_shuffling keeps the stored order equal to the order given here.
    return tfds.core.DatasetInfo(
      builder=self,
      description=description,
      features=features,
      supervised_keys=('image', 'label'),
      disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._generate_examples(arrays) for split, arrays in splits.items()}

  def _generate_examples(self, arrays):
    images, labels = arrays['image'], arrays['label']
    for i in range(len(images)):
      yield i, {'image': images[i], 'label': int(labels[i])}

  def _quiet(self):
    """Replaces tfds' "Downloading and preparing" / "downloaded" lines: nothing is downloaded."""

  namespace = {
    'name': name,
    'VERSION': tfds.core.Version(version),
    'RELEASE_NOTES': {version: 'jaxgan offline dataset.'},
    '_info': _info,
    '_split_generators': _split_generators,
    '_generate_examples': _generate_examples,
    '_log_download_bytes': _quiet,
    '_log_download_done': _quiet,
    '__module__': __name__,
    # No checksums file: without this, tfds looks for one next to the code and, for a
    # class in an installed package, imports the optional importlib_resources.
    'code_path': None,
  }
  return type(
    f'_{name}_builder', (tfds.core.GeneratorBasedBuilder,), namespace, skip_registration=True
  )


def _check_splits(splits: Mapping[str, Mapping[str, np.ndarray]], num_classes: int) -> None:
  shapes = set()
  for split, arrays in splits.items():
    images, labels = np.asarray(arrays['image']), np.asarray(arrays['label'])
    if images.dtype != np.uint8 or images.ndim != 4 or labels.shape != images.shape[:1]:
      raise ValueError(
        f'split {split!r}: need uint8 [N, H, W, C] images and [N] labels; got {images.dtype} '
        f'{images.shape} and {labels.shape}.'
      )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
      raise ValueError(f'split {split!r}: labels must be in [0, {num_classes}).')
    shapes.add(images.shape[1:])
  if len(shapes) != 1:
    raise ValueError(f'all splits need one image shape; got {sorted(shapes)}.')


def write_arrays_dataset(
  name: str,
  version: str,
  make_splits: Callable[[], Mapping[str, Mapping[str, np.ndarray]]],
  *,
  data_dir: str | os.PathLike | None = None,
  num_classes: int,
  description: str,
) -> Path:
  """Writes labelled uint8 images once as a tfds array_record dataset.

  Idempotent and safe under concurrent calls (see the module docstring).

  Args:
    name: the tfds dataset name (directory name), e.g. ``'mnist5k'``.
    version: ``'MAJOR.MINOR.PATCH'``.
    make_splits: a callable returning ``{split: {'image': uint8 [N, H, W, C],
      'label': int [N]}}``; only called when the dataset is not on disk yet.
    data_dir: tfds data directory (``None``: the default, see
      :func:`default_data_dir`).
    num_classes: labels are in ``[0, num_classes)``.
    description: stored in the dataset info.

  Returns:
    The dataset's version directory ``data_dir/name/version``.
  """
  root = resolve_data_dir(data_dir)
  final = root / name / version
  if _is_complete(final):
    return final
  root.mkdir(parents=True, exist_ok=True)
  log.info('preparing the local dataset %s %s in %s (nothing is downloaded)', name, version, root)
  tmp = Path(tempfile.mkdtemp(prefix=f'.{name}-{version}-incomplete-', dir=root))
  try:
    splits = make_splits()
    _check_splits(splits, num_classes)
    tfds = _tfds()
    builder_cls = _arrays_builder(
      name, version, splits, num_classes=num_classes, description=description
    )
    builder = builder_cls(data_dir=str(tmp), file_format='array_record')
    with _no_progress_bars(tfds):
      builder.download_and_prepare(
        file_format='array_record',
        download_config=tfds.download.DownloadConfig(try_download_gcs=False),
      )
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
      os.rename(tmp / name / version, final)
    except OSError:
      # Another process moved its complete copy into place first.
      if not _is_complete(final):
        raise
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return final


def tfds_search_dirs(data_dir: str | os.PathLike | None) -> list[Path]:
  """Where a tfds dataset is looked for: ``data_dir`` alone if given, else the two defaults."""
  if data_dir:
    return [resolve_data_dir(data_dir)]
  tfds = _tfds()
  dirs = [default_data_dir(), Path(tfds.core.constants.DATA_DIR).expanduser()]
  return list(dict.fromkeys(dirs))


def not_prepared_message(name: str, split: str, dirs: Sequence[Path], detail: str = '') -> str:
  """The error text for a tfds dataset that cannot be read with ``tfds.data_source``."""
  where = ', '.join(f"'{d}'" for d in dirs)
  target = f' --data_dir {dirs[0]}' if dirs else ''
  return (
    f"tfds dataset '{name}' (split '{split}') is not prepared as array_record in {where}{detail}. "
    'Prepare it once on a machine with internet access and TensorFlow '
    f'(`pip install jaxgan[prepare]`): `python -m experiments.prepare_data {name}{target}`, '
    f"which runs tfds.builder('{name}', data_dir=...).download_and_prepare(file_format='array_record'). "
    'Reading it afterwards needs no TensorFlow. If it is prepared elsewhere, pass that directory '
    'as data_dir (or set $JAXGAN_DATA_DIR).'
  )


def find_prepared(name: str, data_dir: str | os.PathLike | None):
  """The first search directory where tfds dataset ``name`` is prepared.

  Returns:
    ``(builder, directory)``, or ``(None, None)`` when no directory holds it.

  Raises:
    ValueError: ``name`` is neither a registered tfds dataset nor found on disk.
  """
  tfds = _tfds()
  unknown = 0
  dirs = tfds_search_dirs(data_dir)
  for d in dirs:
    try:
      builder = tfds.builder(name, data_dir=str(d))
    except tfds.core.registered.DatasetNotFoundError:
      unknown += 1
      continue
    if builder.is_prepared():
      return builder, d
  if unknown == len(dirs):
    raise ValueError(
      f'unknown dataset {name!r}: it is not a jaxgan offline dataset and not a tfds dataset '
      f'(neither registered in tensorflow-datasets nor prepared in {[str(d) for d in dirs]}). '
      "Use 'mnist5k', 'digits8x8', 'stacked_mnist', a tfds name such as 'mnist' or 'cifar10', "
      "or jaxgan.data.gaussian_mixture for '8ring'/'25grid'."
    )
  return None, None


def check_readable_format(builder, directory: Path, *, name: str, split: str) -> None:
  """Raises DatasetNotPreparedError unless the prepared files are array_record or parquet."""
  fmt = builder.info.file_format.value if builder.info.file_format else 'tfrecord'
  if fmt not in READABLE_FORMATS:
    detail = f' (it is prepared there as {fmt}, which needs TensorFlow to read)'
    raise DatasetNotPreparedError(not_prepared_message(name, split, [directory], detail))


def open_source(
  name: str, split: str, *, data_dir: str | os.PathLike | None = None
) -> Sequence[Any]:
  """A random-access tfds source over a prepared dataset (no TensorFlow).

  Args:
    name: a tfds dataset name (``'mnist'``, ``'cifar10'``, ``'mnist5k'`` once
      prepared, ...), with an optional ``/config`` or ``:version``.
    split: a tfds split string (``'train'``, ``'test[:10%]'``, ``'train+test'``).
    data_dir: tfds data directory; ``None`` searches the defaults.

  Returns:
    ``tfds.data_source(name, split=split, data_dir=..., download=False)``:
    ``len(source)`` examples, ``source[i]`` a dict of numpy values.

  Raises:
    DatasetNotPreparedError: the dataset is not on disk as array_record
      (or parquet); the message says how to prepare it.
    ValueError: the name is unknown.
  """
  tfds = _tfds()
  builder, directory = find_prepared(name, data_dir)
  if builder is not None:
    check_readable_format(builder, directory, name=name, split=split)
    return tfds.data_source(name, split=split, data_dir=str(directory), download=False)
  dirs = tfds_search_dirs(data_dir)
  # Not on disk by tfds' own check. tfds may still provide a source (e.g. under
  # tfds.testing.mock_data); anything else is reported as "not prepared".
  try:
    return tfds.data_source(name, split=split, data_dir=str(dirs[0]), download=False)
  except Exception as e:  # noqa: BLE001 - every failure here means "not readable".
    raise DatasetNotPreparedError(not_prepared_message(name, split, dirs)) from e


def read_all(
  source: Sequence[Any], *, name: str = 'dataset', chunk: int = 4096
) -> dict[str, np.ndarray]:
  """Reads every example of a random-access source into ``{'image', 'label'}`` arrays.

  Args:
    source: ``len(source)`` examples, each a dict with an ``'image'`` (``[H, W,
      C]`` or ``[H, W]``) and optionally a ``'label'``.
    name: used in error messages.
    chunk: examples per batched read.

  Returns:
    ``{'image': uint8 [N, H, W, C], 'label': int64 [N]}``; the label is -1
    where the dataset has none.
  """
  n = len(source)
  if n == 0:
    raise ValueError(f'{name}: the split is empty.')
  examples = []
  for start in range(0, n, chunk):
    keys = list(range(start, min(start + chunk, n)))
    try:
      examples.extend(source.__getitems__(keys))  # batched array_record reads
    except (AttributeError, TypeError):
      # Sources without a working batched read (e.g. under tfds.testing.mock_data).
      examples.extend(source[i] for i in keys)
  first = examples[0]
  if 'image' not in first:
    raise ValueError(f"{name}: examples have no 'image' feature (features: {sorted(first)}).")
  shapes = {np.shape(ex['image']) for ex in examples}
  if len(shapes) != 1:
    raise ValueError(
      f'{name}: images have different shapes ({sorted(shapes)[:4]}...); jaxgan stacks images into '
      'one array, so use a tfds config with a fixed image size.'
    )
  images = np.stack([np.asarray(ex['image']) for ex in examples])
  if images.dtype != np.uint8:
    raise ValueError(f'{name}: images must be uint8; got {images.dtype}.')
  if images.ndim == 3:
    images = images[..., None]
  if 'label' in first:
    labels = np.asarray([ex['label'] for ex in examples], np.int64)
  else:
    labels = np.full((n,), -1, np.int64)
  return {'image': images, 'label': labels}
