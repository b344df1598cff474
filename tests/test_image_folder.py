"""The image-folder source: mixed PNG/JPEG files -> cached tfds dataset -> arrays."""

import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import jaxgan.data as jdata
from jaxgan.data import image_folder as imf

RED, GREEN, BLUE, GRAY = (220, 20, 30), (10, 200, 40), (30, 40, 210), 128


def _save(path, array, **kw):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(array).save(path, **kw)


def _solid(h, w, color):
  return np.broadcast_to(np.asarray(color, np.uint8), (h, w, 3)).copy()


@pytest.fixture
def folder(tmp_path):
  root = tmp_path / 'my_faces'
  _save(root / 'a_wide.png', _solid(30, 50, RED))  # landscape PNG
  _save(root / 'b_tall.JPG', _solid(70, 40, GREEN), quality=95)  # portrait JPEG, upper-case suffix
  _save(root / 'nested' / 'c.jpeg', _solid(16, 16, BLUE), quality=95)  # already square, recursive
  _save(root / 'nested' / 'd_gray.png', np.full((20, 33), GRAY, np.uint8))  # grayscale PNG
  rgba = np.zeros((24, 24, 4), np.uint8)
  rgba[..., :3], rgba[..., 3] = RED, 255
  _save(root / 'e_rgba.png', rgba)
  ramp = np.tile(np.arange(0, 240, 4, dtype=np.uint8)[None, :, None], (40, 1, 3))  # 40 x 60
  _save(root / 'f_ramp.png', ramp)
  (root / 'notes.txt').write_text('not an image')
  _save(root / '.hidden' / 'x.png', _solid(8, 8, BLUE))
  return root


def test_reads_mixed_folder_as_tfds_dataset(folder, tmp_path):
  data_dir = tmp_path / 'tfds'
  name = imf.prepare_image_folder(folder, 16, data_dir=data_dir)
  assert name.startswith('image_folder_my_faces_16_')
  arrays = jdata.load_arrays(name, 'train', data_dir=data_dir)
  images, labels = arrays['image'], arrays['label']
  assert images.shape == (6, 16, 16, 3) and images.dtype == np.uint8
  np.testing.assert_array_equal(labels, 0)  # images at the top level too: one class
  # Sorted by relative path: a_wide, b_tall, e_rgba, f_ramp, nested/c, nested/d_gray.
  np.testing.assert_array_equal(images[0], _solid(16, 16, RED))
  assert np.abs(images[1].astype(int) - GREEN).max() <= 3  # JPEG: lossy
  np.testing.assert_array_equal(images[2], _solid(16, 16, RED))
  assert np.abs(images[4].astype(int) - BLUE).max() <= 3
  np.testing.assert_array_equal(images[5], np.full((16, 16, 3), GRAY, np.uint8))
  # The ramp: shorter side 40 -> 16 (scale 0.4), width 60 -> 24, center crop columns 4..20,
  # computed here with PIL directly.
  ramp = Image.open(folder / 'f_ramp.png').convert('RGB').resize((24, 16), Image.Resampling.LANCZOS)
  np.testing.assert_array_equal(images[3], np.asarray(ramp)[:, 4:20])
  # Cached: preparing again is a no-op returning the same name; load_image_folder reads it.
  assert imf.prepare_image_folder(folder, 16, data_dir=data_dir) == name
  again = imf.load_image_folder(folder, 16, data_dir)
  np.testing.assert_array_equal(again['image'], images)


def test_class_subfolders_give_labels_and_grayscale(tmp_path):
  root = tmp_path / 'pets'
  _save(root / 'dog' / '1.png', _solid(10, 12, BLUE))
  _save(root / 'cat' / '1.png', _solid(12, 10, RED))
  _save(root / 'cat' / '2.jpg', _solid(9, 9, GREEN), quality=95)
  arrays = imf.load_image_folder(root, 8, tmp_path / 'tfds', channels=1)
  assert arrays['image'].shape == (3, 8, 8, 1)
  np.testing.assert_array_equal(arrays['label'], [0, 0, 1])  # cat = 0, dog = 1 (sorted)


def test_changed_folder_gets_new_cache_and_named_cache_is_checked(folder, tmp_path):
  data_dir = tmp_path / 'tfds'
  first = imf.prepare_image_folder(folder, 8, name='faces_8', data_dir=data_dir)
  assert first == 'faces_8'
  default_before = imf.default_name(folder, 8)
  _save(folder / 'g_new.png', _solid(8, 8, GREEN))
  os.utime(folder / 'g_new.png', ns=(1, 1))
  assert imf.default_name(folder, 8) != default_before
  with pytest.raises(ValueError, match='cached from other images'):
    imf.prepare_image_folder(folder, 8, name='faces_8', data_dir=data_dir)


def test_errors_are_clear(tmp_path):
  (tmp_path / 'empty').mkdir()
  with pytest.raises(ValueError, match='no images'):
    imf.prepare_image_folder(tmp_path / 'empty', 16, data_dir=tmp_path / 'tfds')
  with pytest.raises(ValueError, match='does not exist'):
    imf.list_images(tmp_path / 'missing')
  _save(tmp_path / 'ok' / 'a.png', _solid(4, 4, RED))
  with pytest.raises(ValueError, match='positive int'):
    imf.prepare_image_folder(tmp_path / 'ok', 0)
  with pytest.raises(ValueError, match='not valid'):
    imf.prepare_image_folder(tmp_path / 'ok', 4, name='Bad Name', data_dir=tmp_path / 'tfds')
  (tmp_path / 'ok' / 'broken.png').write_bytes(b'not a png')
  with pytest.raises(ValueError, match='broken.png'):
    imf.read_image_folder(tmp_path / 'ok', 4)


def _png_rgb16(path, array):
  """Writes uint16 ``[H, W, 3]`` as a 48-bit PNG (Pillow cannot write one)."""
  h, w, _ = array.shape
  raw = b''.join(b'\x00' + row.astype('>u2').tobytes() for row in array)

  def chunk(kind, data):
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))

  header = struct.pack('>IIBBBBB', w, h, 16, 2, 0, 0, 0)
  path.write_bytes(
    b'\x89PNG\r\n\x1a\n'
    + chunk(b'IHDR', header)
    + chunk(b'IDAT', zlib.compress(raw))
    + chunk(b'IEND', b'')
  )


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
  ramp = (np.arange(32 * 32, dtype=np.int64).reshape(32, 32) * 64).astype(np.uint16)  # 0..65472
  _save(tmp_path / 'gray16.png', ramp)
  assert Image.open(tmp_path / 'gray16.png').mode == 'I;16'
  want = np.rint(ramp / 257.0).astype(np.uint8)  # [0, 65535] -> [0, 255]
  for channels in (1, 3):
    got = imf.load_image(tmp_path / 'gray16.png', 32, channels)
    assert got.shape == (32, 32, channels)
    for c in range(channels):
      np.testing.assert_array_equal(got[..., c], want)
  assert (want == 255).mean() < 0.01  # before: 99.5% of the pixels saturated at 255
  # Resized at full depth: within a level of resizing the 8-bit image.
  small = imf.load_image(tmp_path / 'gray16.png', 16, 1)[..., 0]
  ref = np.asarray(Image.fromarray(want).resize((16, 16), Image.Resampling.LANCZOS))
  assert np.abs(small.astype(int) - ref).max() <= 1
  rgb = np.stack([ramp, ramp[::-1], np.full_like(ramp, 40000)], axis=-1)
  _png_rgb16(tmp_path / 'rgb48.png', rgb)
  got = imf.load_image(tmp_path / 'rgb48.png', 32, 3)
  assert np.abs(got.astype(int) - np.rint(rgb / 257.0)).max() <= 1


def test_transparency_is_composited_over_black_and_modes_mix(tmp_path):
  root = tmp_path / 'mixed'
  rgba = np.zeros((8, 8, 4), np.uint8)
  rgba[..., :3], rgba[..., 3] = (200, 100, 50), 128  # half transparent
  rgba[:4, :, 3] = 0  # top half fully transparent (its stored color is not black)
  _save(root / 'a_rgba.png', rgba)
  la = np.stack([np.full((8, 8), 200, np.uint8), np.full((8, 8), 64, np.uint8)], axis=-1)
  _save(root / 'b_la.png', la)
  pal = Image.fromarray(np.tile(np.arange(8, dtype=np.uint8) % 2, (8, 1)), mode='P')
  pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
  pal.info['transparency'] = 0  # red entries transparent
  pal.save(root / 'c_palette.png', transparency=0)
  _save(root / 'd_bilevel.png', np.eye(8, dtype=bool))
  Image.new('CMYK', (8, 8), (0, 255, 255, 0)).save(root / 'e_cmyk.jpg', quality=95)
  _save(root / 'f_gray16.png', np.full((8, 8), 65535, np.uint16))
  arrays = imf.read_image_folder(root, 8, channels=3)
  images = arrays['image']
  assert images.shape == (6, 8, 8, 3) and images.dtype == np.uint8
  np.testing.assert_array_equal(images[0, :4], 0)
  want = np.rint(np.asarray([200, 100, 50]) * 128 / 255)
  assert np.abs(images[0, 4:].astype(int) - want).max() <= 1
  assert np.abs(images[1].astype(int) - round(200 * 64 / 255)).max() <= 1
  np.testing.assert_array_equal(images[2][:, 0::2], 0)  # transparent red -> black
  np.testing.assert_array_equal(images[2][:, 1::2], np.broadcast_to([0, 255, 0], (8, 4, 3)))
  np.testing.assert_array_equal(images[3][..., 0], np.eye(8, dtype=np.uint8) * 255)
  assert np.abs(images[4].astype(int) - [255, 0, 0]).max() <= 3  # CMYK (0, 1, 1, 0) is red
  np.testing.assert_array_equal(images[5], 255)
  gray = imf.read_image_folder(root, 8, channels=1)['image']
  assert gray.shape == (6, 8, 8, 1)
  np.testing.assert_array_equal(gray[0, :4], 0)
