"""Batched feature extraction: padding, compiled once, sharded over two devices."""

import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan.metrics.features import FeatureExtractor, extract_features

TRACES = []


def _apply(params, images):
  TRACES.append(images.shape)
  pooled = images.mean(axis=(1, 2))  # [B, C]
  return {'features': pooled @ params['w'], 'logits': jnp.sum(images, axis=(1, 2, 3))[:, None]}


def _params():
  return {'w': jnp.arange(6.0, dtype=jnp.float32).reshape(3, 2)}


def _images(n):
  return np.random.default_rng(0).uniform(-1, 1, (n, 5, 5, 3)).astype(np.float32)


def test_matches_direct_apply_with_padding_and_compiles_once():
  TRACES.clear()
  images = _images(10)
  out = extract_features(_apply, images, batch_size=4, params=_params())
  expected = _apply(_params(), jnp.asarray(images))
  assert set(out) == {'features', 'logits'}
  assert out['features'].shape == (10, 2) and isinstance(out['features'], np.ndarray)
  np.testing.assert_allclose(out['features'], expected['features'], rtol=1e-6)
  np.testing.assert_allclose(out['logits'], expected['logits'], rtol=1e-6)
  # Three batches (4, 4, 2 padded to 4) and the direct call: one trace of
  # the padded batch shape, one of the direct call's.
  assert TRACES.count((4, 5, 5, 3)) == 1
  # A second pass reuses the compiled program.
  extract_features(_apply, _images(7), batch_size=4, params=_params())
  assert TRACES.count((4, 5, 5, 3)) == 1


def test_accepts_device_arrays_and_single_array_output():
  images = jnp.asarray(_images(6))
  out = extract_features(lambda p, x: x.reshape(x.shape[0], -1) * p, images, 4, params=2.0)
  np.testing.assert_allclose(out['features'], 2.0 * np.asarray(images).reshape(6, -1))


def test_extractor_checks_shape_and_runs():
  ex = FeatureExtractor('toy', _apply, _params(), image_shape=(5, 5, 3), batch_size=3)
  np.testing.assert_allclose(
    ex(_images(4))['features'], _apply(_params(), _images(4))['features'], rtol=1e-6
  )
  with pytest.raises(ValueError, match=r'\[N, 5, 5, 3\]'):
    ex(np.zeros((2, 6, 6, 3), np.float32))


def test_rejects_bad_images():
  with pytest.raises(ValueError, match='to_float'):
    extract_features(_apply, np.zeros((2, 5, 5, 3), np.uint8), params=_params())
  with pytest.raises(ValueError, match=r'\[N, H, W, C\]'):
    extract_features(_apply, np.zeros((5, 5, 3), np.float32), params=_params())
  with pytest.raises(ValueError, match='batch_size'):
    extract_features(_apply, _images(2), batch_size=0, params=_params())


_TWO_DEVICE_SCRIPT = textwrap.dedent(
  """
    import jax, jax.numpy as jnp, numpy as np
    from jaxgan.metrics.features import extract_features
    assert len(jax.local_devices()) == 2, jax.local_devices()
    seen = []

    def apply(params, images):
      jax.debug.inspect_array_sharding(images, callback=lambda s: seen.append(s))
      return {'features': images.reshape(images.shape[0], -1) @ params}

    params = jnp.ones((12, 2), jnp.float32)
    images = np.random.default_rng(0).uniform(-1, 1, (11, 2, 2, 3)).astype(np.float32)
    out = extract_features(apply, images, batch_size=3, params=params)  # rounded up to 4
    np.testing.assert_allclose(out['features'], images.reshape(11, -1) @ np.ones((12, 2)), rtol=1e-5)
    assert len(seen) == 1, seen
    assert len(seen[0].device_set) == 2, seen[0]
    assert seen[0].shard_shape((4, 2, 2, 3)) == (2, 2, 2, 3), seen[0]
    print('OK', seen[0])
    """
)


def test_shards_batches_over_two_cpu_devices():
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2', JAX_PLATFORMS='cpu')
  proc = subprocess.run(
    [sys.executable, '-c', _TWO_DEVICE_SCRIPT], env=env, capture_output=True, text=True, timeout=300
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'OK' in proc.stdout
