"""Prepares datasets once so that jaxgan reads them with ``tfds.data_source``.

  python -m experiments.prepare_data mnist5k digits8x8          # offline, no download
  python -m experiments.prepare_data cifar10 --data_dir DIR      # tfds: internet + TensorFlow

jaxgan's offline datasets (mnist5k, digits8x8, stacked_mnist) are written from
files bundled in installed packages, without TensorFlow. A tfds dataset is
downloaded and prepared with
``tfds.builder(name, data_dir=DIR).download_and_prepare(file_format='array_record')``;
encoding its images needs TensorFlow (``pip install jaxgan[prepare]``), reading
it afterwards does not. Without ``--data_dir`` the directory is
``$JAXGAN_DATA_DIR`` or ``~/.cache/jaxgan/tensorflow_datasets``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from jaxgan import data


def prepare_tfds(name: str, data_dir: str | None) -> Path:
  """Downloads and prepares a tfds dataset as array_record (needs TensorFlow)."""
  try:
    return data.prepare(name, data_dir)
  except data.DatasetNotPreparedError:
    pass
  if importlib.util.find_spec('tensorflow') is None:
    raise SystemExit(
      f"preparing the tfds dataset '{name}' encodes its images with TensorFlow, which is not "
      'installed; run `pip install jaxgan[prepare]` (tensorflow-cpu) and retry.'
    )
  import tensorflow_datasets as tfds

  target = data.default_data_dir() if not data_dir else Path(data_dir).expanduser()
  builder = tfds.builder(name, data_dir=str(target), file_format='array_record')
  builder.download_and_prepare(file_format='array_record')
  return data.prepare(name, str(target))


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument('names', nargs='+', help='dataset names, e.g. mnist5k digits8x8 cifar10')
  parser.add_argument('--data_dir', default=None, help='tfds data directory')
  args = parser.parse_args(argv)
  for name in args.names:
    if name in data.OFFLINE_DATASETS:
      path = data.prepare(name, args.data_dir)
    else:
      path = prepare_tfds(name, args.data_dir)
    print(f'{name}: ready in {path}', file=sys.stdout)


if __name__ == '__main__':
  main()
