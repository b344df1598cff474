"""The MNIST classifier: augmentation, training, the race-safe cache, the extractor."""

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan import data
from jaxgan.metrics import classifier_training as training
from jaxgan.metrics import mnist
from jaxgan.models.classifier import LeNet5

TINY = training.ClassifierTrainConfig(epochs=1, batch_size=50, max_rotation=0.0, max_scale=0.0)


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp('data')


@pytest.fixture(scope='module')
def splits(data_dir):
  """MNIST-5k (prepared once into a temporary data dir) as float splits."""
  return mnist.load_mnist_splits(data_dir)


def _small(splits, n_train=500, n_test=200):
  train, test = splits
  return (
    {k: v[:n_train] for k, v in train.items()},
    {k: v[:n_test] for k, v in test.items()},
  )


# ----------------------------------------------------------------------------- augmentation


def _images(b=2, h=6, w=6, c=2, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, (b, h, w, c)).astype(np.float32)


def test_affine_warp_integer_shift_is_a_translation_with_background_fill():
  x = _images()
  out = training.affine_warp(
    jnp.asarray(x), jnp.array([[1.0, -2.0], [0.0, 0.0]]), jnp.zeros(2), jnp.ones(2)
  )
  expected = np.full_like(x[0], -1.0)
  expected[1:, :-2] = x[0, :-1, 2:]  # content moves down 1 row and left 2 columns
  np.testing.assert_allclose(out[0], expected, atol=1e-6)
  np.testing.assert_allclose(out[1], x[1], atol=1e-6)


def test_affine_warp_quarter_turn_is_rot90_and_zoom_keeps_the_centre():
  x = _images(b=1, h=5, w=5, c=1)
  out = training.affine_warp(jnp.asarray(x), jnp.zeros((1, 2)), jnp.array([np.pi / 2]), jnp.ones(1))
  np.testing.assert_allclose(out[0], np.rot90(x[0], k=-1), atol=1e-5)  # clockwise
  zoom = training.affine_warp(jnp.asarray(x), jnp.zeros((1, 2)), jnp.zeros(1), jnp.array([2.0]))
  assert zoom[0, 2, 2, 0] == pytest.approx(x[0, 2, 2, 0], abs=1e-6)
  # Zoom x2 samples half-way between pixels: (1,1) reads the mean of x[1:3, 1:3]... at (1.5, 1.5).
  assert zoom[0, 1, 1, 0] == pytest.approx(x[0, 1:3, 1:3, 0].mean(), abs=1e-5)


def test_random_affine_is_identity_when_disabled_and_stays_in_range():
  x = jnp.asarray(_images(b=8))
  key = jax.random.PRNGKey(0)
  np.testing.assert_array_equal(training.random_affine(key, x, 0.0), x)  # exact identity
  out = training.random_affine(key, x, 2.0, 15.0, 0.1)
  assert out.shape == x.shape and float(out.min()) >= -1.0 and float(out.max()) <= 1.0
  assert not np.allclose(out, x)


# ----------------------------------------------------------------------------- training


def test_train_classifier_learns(splits):
  train, test = _small(splits, n_train=1000, n_test=500)
  config = dataclasses.replace(TINY, epochs=3, learning_rate=3e-3)
  params, info = training.train_classifier(LeNet5(), train, test, config)
  assert info['test_accuracy'] > 0.85, info
  assert info['n_train'] == 1000 and info['epochs'] == 3
  # Independent check of the reported accuracy.
  logits = jax.jit(LeNet5().apply)({'params': params}, jnp.asarray(test['image']))
  assert info['test_accuracy'] == pytest.approx(
    float(np.mean(np.argmax(logits, -1) == test['label']))
  )


def test_train_classifier_rejects_bad_input(splits):
  train, test = _small(splits)
  with pytest.raises(ValueError, match='to_float'):
    training.train_classifier(
      LeNet5(), {'image': (train['image'] > 0).astype(np.uint8), 'label': train['label']}
    )
  with pytest.raises(ValueError, match='max_scale'):
    training.train_classifier(LeNet5(), train, test, training.ClassifierTrainConfig(max_scale=1.5))


@pytest.mark.slow
def test_full_training_reaches_97_percent(splits):
  _, info = training.train_classifier(LeNet5(), *splits)
  assert info['test_accuracy'] >= 0.97, info


# ----------------------------------------------------------------------------- cache


def test_cache_trains_once_then_loads(tmp_path, splits, monkeypatch):
  small = _small(splits)
  module, params, meta = mnist.mnist_classifier(tmp_path, config=TINY, splits=small)
  params_path, meta_path = mnist.classifier_paths(tmp_path, 'lenet5')
  assert params_path.exists() and meta_path.exists()
  assert meta['sha256'] == hashlib.sha256(params_path.read_bytes()).hexdigest()
  assert json.loads(meta_path.read_text())['test_accuracy'] == meta['test_accuracy']
  assert meta['epochs'] == 1 and meta['variant'] == 'lenet5' and meta['dataset'] == 'mnist5k'

  def boom(*args, **kwargs):
    raise AssertionError('must not train again')

  monkeypatch.setattr(mnist, 'train_classifier', boom)
  _, params2, meta2 = mnist.mnist_classifier(tmp_path)
  assert meta2 == meta
  jax.tree.map(np.testing.assert_array_equal, params2, jax.tree.map(np.asarray, params))
  extractor = mnist.mnist_extractor(tmp_path)
  assert extractor.name == f'mnist_lenet5@{meta["sha256"][:12]}'
  out = extractor(small[1]['image'][:7], batch_size=4)
  assert out['features'].shape == (7, 84) and out['logits'].shape == (7, 10)
  feats, logits = jax.jit(lambda v, x: module.apply(v, x, method=module.features_and_logits))(
    {'params': params}, small[1]['image'][:7]
  )
  np.testing.assert_allclose(out['features'], feats, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out['logits'], logits, rtol=1e-5, atol=1e-5)


def test_cache_missing_and_corrupt(tmp_path, splits):
  with pytest.raises(FileNotFoundError, match='train_classifier'):
    mnist.mnist_extractor(tmp_path, train_if_missing=False)
  mnist.mnist_classifier(tmp_path, config=TINY, splits=_small(splits))
  params_path, _ = mnist.classifier_paths(tmp_path, 'lenet5')
  params_path.write_bytes(params_path.read_bytes()[:-1] + b'\x00')
  with pytest.raises(ValueError, match='corrupt'):
    mnist.mnist_classifier(tmp_path)
  with pytest.raises(ValueError, match='unknown classifier variant'):
    mnist.mnist_classifier(tmp_path, variant='resnet')


_RACE_SCRIPT = textwrap.dedent(
  """
    import os, sys, time
    import jax, jax.numpy as jnp, numpy as np
    from jaxgan.metrics import mnist

    def slow_fake_train(module, train, test, config, log=None):
      # Stands in for training (the race is about the cache, not the optimiser):
      # slow enough that both processes arrive while the first one works.
      log('TRAINING pid %d' % os.getpid())
      time.sleep(3)
      shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))
      params = jax.tree.map(lambda s: np.full(s.shape, os.getpid() % 97, np.float32), shapes)
      return params['params'], {'test_accuracy': 0.5, 'pid': os.getpid()}

    mnist.train_classifier = slow_fake_train
    dummy = {'image': np.zeros((2, 28, 28, 1), np.float32), 'label': np.zeros(2, np.int64)}
    ex = mnist.mnist_extractor(sys.argv[1], splits=(dummy, dummy), log=print)
    print('NAME', ex.name)
    """
)


def test_two_processes_racing_train_once(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  procs = [
    subprocess.Popen(
      [sys.executable, '-c', _RACE_SCRIPT, str(tmp_path)],
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for _ in range(2)
  ]
  outs = [p.communicate(timeout=300) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  stdout = [out for out, _ in outs]
  assert sum(out.count('TRAINING') for out in stdout) == 1, stdout  # the other waited, then loaded
  names = {line for out in stdout for line in out.splitlines() if line.startswith('NAME')}
  assert len(names) == 1, names
  params_path, meta_path = mnist.classifier_paths(tmp_path, 'lenet5')
  meta = json.loads(meta_path.read_text())
  assert names.pop() == f'NAME mnist_lenet5@{meta["sha256"][:12]}'
  params, _ = mnist.load_classifier(params_path, meta_path)
  assert np.all(params['conv1']['kernel'] == meta['pid'] % 97)  # the trainer's own file
  assert not [p for p in params_path.parent.iterdir() if p.suffix == '.tmp']


def test_load_mnist_splits_converts_the_data_package_splits(splits, data_dir):
  train, test = splits
  assert train['image'].shape == (4000, 28, 28, 1) and test['image'].shape == (1000, 28, 28, 1)
  for split, arrays in (('train', train), ('test', test)):
    raw = data.load_arrays('mnist5k', split, data_dir=data_dir)
    np.testing.assert_array_equal(arrays['label'], raw['label'])
    np.testing.assert_allclose(
      arrays['image'], raw['image'].astype(np.float32) / 127.5 - 1, atol=1e-6
    )
