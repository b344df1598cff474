"""A folder of the user's own images (PNG/JPEG) as a cached tfds dataset.

For few-shot training (the 100-shot Obama / Grumpy-cat / Panda settings of
DiffAugment and the lottery-ticket paper): :func:`prepare_image_folder` reads
every ``.png``, ``.jpg`` and ``.jpeg`` file under a folder (recursively, hidden
files and folders skipped, sorted by relative path), turns each into an
``R x R`` image (EXIF orientation applied, converted to RGB or grayscale as
below, resized so the shorter side is ``R`` with a Lanczos filter, then
center-cropped), and writes them once as a tfds array_record dataset (split
``'train'``) of uint8 images, read back with ``jaxgan.data.load_arrays(name,
'train', data_dir=...)`` or :func:`load_image_folder`.

Modes (a folder may mix them):

* 8-bit RGB, grayscale, palette and bilevel images: Pillow's conversion to RGB
  (grayscale copied to the three channels) or to grayscale (ITU-R 601-2 luma);
* images with transparency (RGBA, LA, a palette with a transparent entry): the
  colors composited over black (color times alpha), then converted as above;
* 16-bit grayscale (``I;16`` and ``I`` modes): kept at full depth through the
  resize, then scaled from [0, 65535] to [0, 255] (``v / 257``, rounded), never
  clipped; 16-bit-per-channel RGB(A) PNGs are read by Pillow at 8 bits (the high
  byte, ``v // 256``), which is scaled the same way to within one level;
* CMYK JPEGs: Pillow's conversion to RGB.

Labels: when every image sits inside a first-level subfolder, the label is
that subfolder's index in sorted order (``folder/<class>/...``, as
``torchvision.datasets.ImageFolder``); otherwise every label is 0 (one class).

Caching: the default dataset name is ``image_folder_<folder name>_<R>_<hash>``,
where the hash covers the resolution, channels and each file's relative path,
size and modification time, so an edited folder gets a new dataset. An explicit
``name`` is checked against the stored fingerprint and refused if the folder
changed since it was cached.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np

from jaxgan.data.tfds_source import resolve_data_dir, write_arrays_dataset

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg')
VERSION = '1.1.0'  # 1.1.0: 16-bit grayscale scaled, transparency over black
SPLIT = 'train'
_FINGERPRINT = 'fingerprint='
_SIXTEEN_BIT_GRAY = ('I;16', 'I;16B', 'I;16L', 'I;16N', 'I')


def list_images(folder: str | os.PathLike) -> list[Path]:
  """Image files under ``folder`` (recursive), sorted by relative path.

  Files whose suffix (case-insensitive) is one of :data:`IMAGE_EXTENSIONS`;
  names starting with ``.`` (files or folders) are skipped.
  """
  root = Path(folder).expanduser()
  if not root.is_dir():
    raise ValueError(f'image folder {str(root)!r} does not exist or is not a directory.')
  found = []
  for path in root.rglob('*'):
    rel = path.relative_to(root)
    if any(part.startswith('.') for part in rel.parts):
      continue
    if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
      found.append(path)
  found.sort(key=lambda p: p.relative_to(root).as_posix())
  if not found:
    raise ValueError(
      f'no images ({", ".join(IMAGE_EXTENSIONS)}) found under {str(root)!r}; put PNG or JPEG '
      'files there (subfolders are searched too).'
    )
  return found


def load_image(path: str | os.PathLike, resolution: int, channels: int = 3) -> np.ndarray:
  """One image file as uint8 ``[resolution, resolution, channels]``.

  EXIF orientation is applied; the image is converted to RGB (``channels=3``)
  or grayscale (``channels=1``) as the module docstring says (16-bit
  grayscale scaled, transparency over black), resized with Lanczos so that its
  shorter side is ``resolution`` (the longer side rounded, at least
  ``resolution``) and center-cropped (an odd excess puts the extra pixel on the
  right/bottom).
  """
  from PIL import Image, ImageOps

  _check_args(resolution, channels)
  with Image.open(path) as im:
    im = _converted(ImageOps.exif_transpose(im), channels)
    w, h = im.size
    scale = resolution / min(w, h)
    nw, nh = max(resolution, round(w * scale)), max(resolution, round(h * scale))
    im = im.resize((nw, nh), Image.Resampling.LANCZOS)
    left, top = (nw - resolution) // 2, (nh - resolution) // 2
    im = im.crop((left, top, left + resolution, top + resolution))
    arr = np.asarray(im)
  if arr.dtype != np.uint8:  # 16-bit grayscale, resized as float in [0, 255]
    arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
  if arr.ndim == 2 and channels == 3:
    arr = np.repeat(arr[..., None], 3, axis=-1)
  return arr.reshape(resolution, resolution, channels)


def _converted(im, channels: int):
  """``im`` as 8-bit RGB or L, or as float ``F`` in [0, 255] for 16-bit grayscale."""
  from PIL import Image

  if im.mode in _SIXTEEN_BIT_GRAY:
    return Image.fromarray(np.asarray(im, dtype=np.float32) * np.float32(255.0 / 65535.0))
  target = 'RGB' if channels == 3 else 'L'
  if im.has_transparency_data:
    rgba = im.convert('RGBA')
    im = Image.alpha_composite(Image.new('RGBA', rgba.size, (0, 0, 0, 255)), rgba)
  return im.convert(target)


def _check_args(resolution: int, channels: int) -> None:
  if not isinstance(resolution, int) or resolution <= 0:
    raise ValueError(f'resolution must be a positive int (e.g. 256), got {resolution!r}.')
  if channels not in (1, 3):
    raise ValueError(f'channels must be 3 (RGB) or 1 (grayscale), got {channels!r}.')


def _labels(root: Path, files: list[Path]) -> tuple[np.ndarray, list[str]]:
  tops = [p.relative_to(root).parts for p in files]
  if all(len(parts) > 1 for parts in tops):
    classes = sorted({parts[0] for parts in tops})
    index = {c: i for i, c in enumerate(classes)}
    return np.asarray([index[parts[0]] for parts in tops], np.int64), classes
  return np.zeros((len(files),), np.int64), ['all']


def read_image_folder(
  folder: str | os.PathLike, resolution: int, channels: int = 3
) -> dict[str, np.ndarray]:
  """Reads and resizes every image under ``folder`` (no caching).

  Returns:
    ``{'image': uint8 [N, resolution, resolution, channels], 'label': int64 [N]}``
    in :func:`list_images` order (labels: module docstring).
  """
  _check_args(resolution, channels)
  root = Path(folder).expanduser()
  files = list_images(root)
  images = []
  for path in files:
    try:
      images.append(load_image(path, resolution, channels))
    except Exception as e:  # noqa: BLE001 - name the file that PIL could not read
      raise ValueError(f'cannot read image {str(path)!r}: {e}') from e
  labels, _ = _labels(root, files)
  return {'image': np.stack(images), 'label': labels}


def folder_fingerprint(folder: str | os.PathLike, resolution: int, channels: int = 3) -> str:
  """A 12-hex-digit hash of the settings and of each image's path, size and mtime."""
  root = Path(folder).expanduser()
  h = hashlib.sha256(f'{resolution}|{channels}|{VERSION}'.encode())
  for path in list_images(root):
    st = path.stat()
    h.update(f'|{path.relative_to(root).as_posix()}|{st.st_size}|{st.st_mtime_ns}'.encode())
  return h.hexdigest()[:12]


def default_name(folder: str | os.PathLike, resolution: int, channels: int = 3) -> str:
  """``image_folder_<folder name>_<R>[_gray]_<fingerprint>``, a valid tfds name."""
  root = Path(folder).expanduser().resolve()
  stem = re.sub(r'[^a-z0-9]+', '_', root.name.lower()).strip('_') or 'images'
  gray = '_gray' if channels == 1 else ''
  return f'image_folder_{stem}_{resolution}{gray}_{folder_fingerprint(root, resolution, channels)}'


def _check_name(name: str) -> None:
  if not re.fullmatch(r'[a-z][a-z0-9_]*', name or ''):
    raise ValueError(
      f'dataset name {name!r} is not valid: use lowercase letters, digits and underscores, '
      "starting with a letter (e.g. 'obama_100')."
    )


def prepare_image_folder(
  folder: str | os.PathLike,
  resolution: int,
  *,
  name: str | None = None,
  data_dir: str | os.PathLike | None = None,
  channels: int = 3,
) -> str:
  """Caches an image folder as a tfds array_record dataset (split ``'train'``).

  Idempotent: a dataset already on disk is reused.

  Args:
    folder: directory searched recursively for PNG/JPEG files.
    resolution: output height and width ``R``.
    name: tfds dataset name (``None``: :func:`default_name`).
    data_dir: tfds data directory (``None``: ``$JAXGAN_DATA_DIR`` or
      ``~/.cache/jaxgan/tensorflow_datasets``).
    channels: 3 (RGB) or 1 (grayscale).

  Returns:
    The dataset name, for ``jaxgan.data.load_arrays(name, 'train',
    data_dir=data_dir)``.

  Raises:
    ValueError: no images, an unreadable image, a bad name, or an explicit
      ``name`` already cached from different contents.
  """
  _check_args(resolution, channels)
  root = Path(folder).expanduser()
  fingerprint = folder_fingerprint(root, resolution, channels)
  if name is None:
    name = default_name(root, resolution, channels)
  _check_name(name)
  _, classes = _labels(root, list_images(root))
  description = (
    f'Images from {str(root.resolve())!r}, resized to {resolution}x{resolution} and '
    f'center-cropped; classes {classes}. {_FINGERPRINT}{fingerprint}'
  )
  version_dir = write_arrays_dataset(
    name,
    VERSION,
    lambda: {SPLIT: read_image_folder(root, resolution, channels)},
    data_dir=data_dir,
    num_classes=len(classes),
    description=description,
  )
  stored = json.loads((version_dir / 'dataset_info.json').read_text()).get('description', '')
  if f'{_FINGERPRINT}{fingerprint}' not in stored:
    raise ValueError(
      f'dataset {name!r} in {str(resolve_data_dir(data_dir))!r} was cached from other images or '
      f'settings than {str(root)!r} at {resolution}x{resolution} now; delete '
      f'{str(version_dir.parent)!r} or pass another name (name=None picks one per content).'
    )
  return name


def load_image_folder(
  folder: str | os.PathLike,
  resolution: int,
  data_dir: str | os.PathLike | None = None,
  *,
  name: str | None = None,
  channels: int = 3,
) -> dict[str, np.ndarray]:
  """Prepares (once) and loads an image folder.

  Returns:
    ``{'image': uint8 [N, R, R, channels], 'label': int64 [N]}`` read back from
    the cached dataset.
  """
  from jaxgan.data.catalog import load_arrays

  dataset = prepare_image_folder(
    folder, resolution, name=name, data_dir=data_dir, channels=channels
  )
  return load_arrays(dataset, SPLIT, data_dir=data_dir)
