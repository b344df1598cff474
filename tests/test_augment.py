"""Tests of jaxgan.augment (DiffAugment)."""

from __future__ import annotations

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxgan import augment
from jaxgan.game import Game

KEY = jax.random.PRNGKey(0)

# Everything runs jitted, and each configuration compiles once for the file
# (compiling is what costs time here, not running).
translate = jax.jit(augment.translate)
cutout = jax.jit(augment.cutout, static_argnums=3)


@functools.cache
def _compiled(policy, options):
  kw = {k: dict(v) if isinstance(v, tuple) else v for k, v in options}
  return jax.jit(augment.make_diff_augment(policy, **kw))


def run(x, key=KEY, policy=augment.DEFAULT_POLICY, **kw):
  """``diff_augment`` jitted (the options are validated by the factory first)."""
  options = tuple(
    sorted((k, tuple(sorted(v.items())) if isinstance(v, dict) else v) for k, v in kw.items())
  )
  return _compiled(policy, options)(jnp.asarray(x), key)


def images(b=64, h=8, w=8, c=3, seed=1):
  """Uniform [-1, 1) float32 images (numpy: no compile)."""
  return np.random.default_rng(seed).uniform(-1.0, 1.0, (b, h, w, c)).astype(np.float32)


X = images()  # the shared batch [64, 8, 8, 3]


# ----------------------------------------------------------------------------
# Independent numpy versions of the reference's index arithmetic (NCHW there;
# written here per image [H, W, C]).
# ----------------------------------------------------------------------------


def ref_translate(img, t_h, t_w):
  """Pad by one zero pixel, then gather with clamped indices (reference style).

  The reference reads ``x_pad[clamp(i + t + 1, 0, H + 1)]``; our convention
  moves the content by ``+t``, i.e. reads at ``i - t``.
  """
  h, w, _ = img.shape
  pad = np.pad(img, ((1, 1), (1, 1), (0, 0)))
  rows = np.clip(np.arange(h) - t_h + 1, 0, h + 1)
  cols = np.clip(np.arange(w) - t_w + 1, 0, w + 1)
  return pad[rows][:, cols]


def ref_cutout(img, c_h, c_w, s_h, s_w):
  """Scatter zeros at clamped indices of an s_h x s_w grid (reference style)."""
  h, w, _ = img.shape
  mask = np.ones((h, w), img.dtype)
  gx = np.clip(np.arange(s_h) + c_h - s_h // 2, 0, h - 1)
  gy = np.clip(np.arange(s_w) + c_w - s_w // 2, 0, w - 1)
  mask[np.ix_(gx, gy)] = 0
  return img * mask[:, :, None]


# ----------------------------------------------------------------------------
# Deterministic building blocks
# ----------------------------------------------------------------------------


def test_translate_hand_made():
  x = jnp.arange(1.0, 10.0).reshape(1, 3, 3, 1)
  shifts = [(1, 0), (0, -2), (-1, 1), (3, 0)]
  out = translate(
    jnp.tile(x, (4, 1, 1, 1)), jnp.array([s[0] for s in shifts]), jnp.array([s[1] for s in shifts])
  )[..., 0]
  np.testing.assert_array_equal(out[0], [[0, 0, 0], [1, 2, 3], [4, 5, 6]])
  np.testing.assert_array_equal(out[1], [[3, 0, 0], [6, 0, 0], [9, 0, 0]])
  np.testing.assert_array_equal(out[2], [[0, 4, 5], [0, 7, 8], [0, 0, 0]])
  np.testing.assert_array_equal(out[3], np.zeros((3, 3)))


def test_translate_matches_reference_indexing():
  x = images(b=6, h=5, w=7, c=2)
  t_h = np.array([-6, -2, 0, 1, 3, 5])
  t_w = np.array([0, 7, -1, 2, -3, 1])
  out = np.asarray(translate(x, t_h, t_w))
  for b in range(6):
    np.testing.assert_array_equal(out[b], ref_translate(x[b], t_h[b], t_w[b]))


def test_cutout_hand_made():
  x = jnp.ones((2, 4, 5, 1))
  out = cutout(x, jnp.array([2, 0]), jnp.array([2, 4]), (2, 3))[..., 0]
  # sample 0: rows [1, 3), cols [1, 4); sample 1: rows [-1, 1) -> {0}, cols [3, 6) -> {3, 4}.
  np.testing.assert_array_equal(
    out[0], [[1, 1, 1, 1, 1], [1, 0, 0, 0, 1], [1, 0, 0, 0, 1], [1, 1, 1, 1, 1]]
  )
  np.testing.assert_array_equal(
    out[1], [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1]]
  )


def test_cutout_matches_reference_indexing():
  h, w = 8, 6
  for s_h, s_w in [(4, 3), (1, 1), (8, 6)]:
    # Every centre the random op can draw: {0, ..., size - s % 2} on each axis.
    c_h, c_w = np.meshgrid(np.arange(h + 1 - s_h % 2), np.arange(w + 1 - s_w % 2), indexing='ij')
    c_h, c_w = c_h.ravel(), c_w.ravel()
    x = images(b=len(c_h), h=h, w=w, c=2)
    out = np.asarray(cutout(x, c_h, c_w, (s_h, s_w)))
    for b in range(len(c_h)):
      np.testing.assert_array_equal(out[b], ref_cutout(x[b], c_h[b], c_w[b], s_h, s_w))


def test_color_building_blocks_match_formulas():
  x = images(b=3).astype(np.float64)
  f = np.array([0.0, 0.7, 1.8])
  with jax.enable_x64(True):
    bright = augment.adjust_brightness(jnp.asarray(x), jnp.asarray(f))
    sat = augment.adjust_saturation(jnp.asarray(x), jnp.asarray(f))
    con = augment.adjust_contrast(jnp.asarray(x), jnp.asarray(f))
  m_pix = x.mean(axis=3, keepdims=True)
  m_img = x.mean(axis=(1, 2, 3), keepdims=True)
  fb = f[:, None, None, None]
  np.testing.assert_allclose(bright, x + fb, atol=1e-14)
  np.testing.assert_allclose(sat, (x - m_pix) * fb + m_pix, atol=1e-14)
  np.testing.assert_allclose(con, (x - m_img) * fb + m_img, atol=1e-14)


def test_scaled_size_rounds_half_up():
  assert augment.scaled_size(32, 0.125) == 4
  assert augment.scaled_size(32, 0.5) == 16
  assert augment.scaled_size(28, 0.125) == 4  # 3.5 -> 4
  assert augment.scaled_size(20, 0.125) == 3  # 2.5 -> 3
  assert augment.scaled_size(8, 0.0) == 0


# ----------------------------------------------------------------------------
# Random ops: the reference's distributions, per sample
# ----------------------------------------------------------------------------


def test_random_translation_is_a_shift_within_range():
  x = images(b=64, h=16, w=16, c=1)
  y = np.asarray(run(x, KEY, 'translation'))
  shifts = []
  for b in range(64):
    hits = [  # int(16 / 8 + 0.5) = 2: shifts in {-2, ..., 2}
      (th, tw)
      for th in range(-2, 3)
      for tw in range(-2, 3)
      if np.array_equal(ref_translate(x[b], th, tw), y[b])
    ]
    assert len(hits) == 1, (b, hits)
    shifts.append(hits[0])
  shifts = np.array(shifts)
  assert set(shifts[:, 0]) == set(range(-2, 3))  # every shift occurs, per sample
  assert set(shifts[:, 1]) == set(range(-2, 3))
  assert not np.array_equal(shifts[:, 0], shifts[:, 1])  # the two axes are independent


def test_random_cutout_is_a_square_at_a_valid_centre():
  h = w = 8
  s = augment.scaled_size(h, 0.5)  # 4
  y = np.asarray(run(np.ones((64, h, w, 1), np.float32), KEY, 'cutout'))[..., 0]
  centres = []
  for b in range(64):
    found = [
      (ch, cw)
      for ch in range(h + 1 - s % 2)
      for cw in range(w + 1 - s % 2)
      if np.array_equal(ref_cutout(np.ones((h, w, 1)), ch, cw, s, s)[..., 0], y[b])
    ]
    assert len(found) == 1, (b, found)
    centres.append(found[0])
  rows = [c[0] for c in centres]
  assert min(rows) <= 1 and max(rows) >= 7  # centres spread over {0, ..., 8}
  assert len(set(centres)) > 30


def recover_factor(x, y, axes):
  """The per-sample f with y - m = f (x - m), m the mean over ``axes``."""
  m = x.mean(axis=axes, keepdims=True)
  dx, dy = (x - m).reshape(len(x), -1), (y - m).reshape(len(x), -1)
  f = (dx * dy).sum(1) / (dx * dx).sum(1)
  np.testing.assert_allclose(dy, f[:, None] * dx, atol=1e-5)
  return f


def test_color_distributions():
  x = images(b=256, h=4, w=4)
  offset = np.asarray(run(x, KEY, 'brightness')) - x  # reference: U[0, 1) - 1/2
  np.testing.assert_allclose(offset, offset[:, :1, :1, :1] * np.ones_like(offset), atol=1e-6)
  off = offset[:, 0, 0, 0]
  assert off.min() >= -0.5 - 1e-6 and off.max() <= 0.5 + 1e-6
  assert off.min() < -0.45 and off.max() > 0.45

  y = np.asarray(run(x, KEY, 'saturation'))  # reference: 2 U[0, 1)
  np.testing.assert_allclose(y.mean(axis=3), x.mean(axis=3), atol=1e-6)  # channel mean kept
  f = recover_factor(x, y, axes=3)
  assert f.min() >= -1e-4 and f.max() <= 2 + 1e-4
  assert f.min() < 0.1 and f.max() > 1.9

  y = np.asarray(run(x, KEY, 'contrast'))  # reference: U[0, 1) + 1/2
  np.testing.assert_allclose(y.mean(axis=(1, 2, 3)), x.mean(axis=(1, 2, 3)), atol=1e-6)
  f = recover_factor(x, y, axes=(1, 2, 3))
  assert f.min() >= 0.5 - 1e-4 and f.max() <= 1.5 + 1e-4
  assert f.min() < 0.55 and f.max() > 1.45


def test_strength_scales_the_color_factors():
  x = images(b=256, h=4, w=4)
  y = np.asarray(run(x, KEY, 'saturation', strength=0.25))
  f = recover_factor(x, y, axes=3)  # 1 + 0.25 (2u - 1) in [0.75, 1.25)
  assert f.min() >= 0.75 - 1e-4 and f.max() <= 1.25 + 1e-4
  assert f.min() < 0.77 and f.max() > 1.23


def test_color_composes_the_three_ops():
  # contrast(saturation(brightness(x))) = cf * sf * x + cf * (1 - sf) * mean_c(x) + const
  # per image, with sf in [0, 2) and cf in [1/2, 3/2); recover both by least squares.
  y = np.asarray(run(X, KEY, 'color'))
  for b in range(8):
    xb = X[b].reshape(-1, 3)
    feats = np.stack([xb.ravel(), np.repeat(xb.mean(1), 3), np.ones(xb.size)], 1)
    coef, *_ = np.linalg.lstsq(feats, y[b].ravel(), rcond=None)
    np.testing.assert_allclose(feats @ coef, y[b].ravel(), atol=1e-5)
    a, c = coef[0], coef[1]
    assert -1e-5 <= a / (a + c) <= 2 + 1e-5  # a = cf * sf, a + c = cf
    assert 0.5 - 1e-5 <= a + c <= 1.5 + 1e-5


# ----------------------------------------------------------------------------
# The properties: shape, range, identity at zero strength, gradients
# ----------------------------------------------------------------------------


def test_keeps_shape_and_dtype():
  y = run(X, KEY)
  assert y.shape == X.shape and y.dtype == jnp.float32
  odd = images(b=2, h=9, w=7, c=1).astype(jnp.bfloat16)
  y = run(odd, KEY)
  assert y.shape == odd.shape and y.dtype == jnp.bfloat16


def test_translation_and_cutout_keep_the_range():
  y = np.asarray(run(X, KEY, 'translation,cutout'))
  assert y.min() >= -1.0 and y.max() <= 1.0
  for b in range(16):  # every output value is an input value of that image or a zero
    assert np.isin(y[b], np.append(X[b].ravel(), 0.0)).all()


def test_color_leaves_range_unless_clipped():
  y = run(X, KEY, 'color')
  assert float(jnp.max(jnp.abs(y))) > 1.0  # reference behaviour: no clipping
  yc = run(X, KEY, 'color', clip=True)
  assert float(jnp.max(jnp.abs(yc))) <= 1.0
  np.testing.assert_array_equal(yc, jnp.clip(y, -1.0, 1.0))


@pytest.mark.parametrize('policy', sorted(augment.POLICY_OPS) + [augment.DEFAULT_POLICY])
def test_identity_at_zero_strength(policy):
  x = X[:4]
  np.testing.assert_array_equal(run(x, KEY, policy, strength=0.0), x)
  np.testing.assert_array_equal(run(x, KEY, policy, probability=0.0), x)


def test_identity_for_empty_policy_and_zero_ratios():
  x = X[:4]
  np.testing.assert_array_equal(run(x, KEY, ''), x)
  y = run(x, KEY, 'translation,cutout', translation_ratio=0.0, cutout_ratio=0.0)
  np.testing.assert_array_equal(y, x)


def test_per_entry_strength():
  y = np.asarray(run(X, KEY, strength={'color': 0.0, 'translation': 0.0}))
  # Only cutout (strength 1 by default) is left: pixels are kept or zeroed.
  kept = (y == X).all(-1)
  zeroed = (y == 0).all(-1)
  assert (kept | zeroed).all()
  assert zeroed.sum(axis=(1, 2)).min() > 0


def test_gradients_flow_through_every_op():
  with jax.enable_x64(True):
    x = jnp.asarray(images(b=3, h=6, w=6), jnp.float64)
    f = jax.jit(lambda v: augment.diff_augment(v, jax.random.PRNGKey(5)))
    check_grads(f, (x,), order=1, modes=['rev'], atol=1e-6, rtol=1e-6)


def test_translation_gradient_is_the_inverse_shift():
  x = images(b=4, h=6, w=5, c=2)
  w = images(b=4, h=6, w=5, c=2, seed=9)
  t_h, t_w = jnp.array([1, -2, 0, 4]), jnp.array([0, 3, -1, 1])
  g = jax.jit(jax.grad(lambda v: jnp.sum(w * augment.translate(v, t_h, t_w))))(x)
  np.testing.assert_array_equal(g, translate(w, -t_h, -t_w))


class TinyG(nn.Module):
  @nn.compact
  def __call__(self, z, train: bool = True):
    return jnp.tanh(nn.Dense(8 * 8 * 3)(z)).reshape(z.shape[0], 8, 8, 3)


def test_gradients_reach_g_params():
  g = TinyG()
  z = jnp.asarray(np.random.default_rng(0).normal(size=(4, 5)), jnp.float32)
  params = g.init(KEY, z)['params']
  w = images(b=4, seed=3)

  def loss(p, key, policy):
    aug = augment.make_diff_augment(policy)  # the full policy: test_gradients_flow_through_every_op
    return jnp.sum(w * aug(g.apply({'params': p}, z), key))

  grad = jax.jit(jax.grad(loss), static_argnums=2)
  # Without color, the pixels that cutout zeroes (or translation drops) get no
  # gradient and the others do (color's contrast would mix all pixels).
  kernel = grad(params, jax.random.PRNGKey(2), 'translation,cutout')['Dense_0']['kernel']
  col_norm = jnp.sum(jnp.abs(kernel), axis=0)
  assert 0 < int(jnp.sum(col_norm == 0)) < col_norm.size // 2


# ----------------------------------------------------------------------------
# Randomness, jit, the factory, errors
# ----------------------------------------------------------------------------


def test_randomness_per_sample_and_per_key():
  a = run(X, KEY)
  np.testing.assert_array_equal(a, run(X, KEY))
  assert not np.array_equal(a, run(X, jax.random.PRNGKey(1)))
  same = np.broadcast_to(X[:1], X.shape)
  offsets = np.asarray(run(same, KEY, 'color'))[:, 0, 0, 0] - same[:, 0, 0, 0]
  assert len(np.unique(np.round(offsets, 5))) == 64  # every sample draws its own


def test_probability_applies_each_entry_per_sample():
  x = images(b=256, h=4, w=4)
  y = run(x, KEY, 'brightness', probability=0.3)
  changed = np.asarray(jnp.any(y != x, axis=(1, 2, 3)))
  assert 0.2 < changed.mean() < 0.4
  d = np.asarray(y - x).reshape(256, -1)
  np.testing.assert_allclose(d, d[:, :1] * np.ones_like(d), atol=1e-6)  # whole-image offsets


def test_factory_jits_once_and_fits_the_game_hook():
  aug = augment.make_diff_augment('color,cutout', cutout_ratio=0.25, strength={'color': 0.5})
  jitted = jax.jit(chex.assert_max_traces(aug, n=1))
  first = jitted(X, KEY)
  assert not np.array_equal(jitted(X, jax.random.PRNGKey(4)), first)  # new key, no retrace
  Game(g_apply=None, d_apply=None, loss=None, sample_latents=None, d_input_transform=aug)


def test_diff_augment_equals_factory():
  fn = jax.jit(lambda x, k: augment.diff_augment(x, k, 'translation,cutout'))
  np.testing.assert_array_equal(fn(X, KEY), run(X, KEY, 'translation,cutout'))


def test_bad_inputs_raise_clear_errors():
  with pytest.raises(ValueError, match=r"unknown DiffAugment op.*'colour'.*valid ops"):
    augment.make_diff_augment('colour,translation')
  with pytest.raises(ValueError, match='cutout_ratio'):
    augment.make_diff_augment(cutout_ratio=1.5)
  with pytest.raises(ValueError, match="strength given for \\['cutout'\\]"):
    augment.make_diff_augment('color', strength={'cutout': 0.0})
  with pytest.raises(ValueError, match='probability'):
    augment.make_diff_augment(probability=2.0)
  with pytest.raises(ValueError, match='strength'):
    augment.make_diff_augment(strength=-1.0)
  with pytest.raises(TypeError, match='policy must be a string'):
    augment.make_diff_augment(['color'])
  with pytest.raises(ValueError, match='unknown DiffAugment op'):
    augment.diff_augment(X, KEY, 'color,flip')
  aug = augment.make_diff_augment()
  with pytest.raises(ValueError, match=r'\[B, H, W, C\]'):
    aug(jnp.zeros((8, 8, 3)), KEY)
  with pytest.raises(ValueError, match='float'):
    aug(jnp.zeros((2, 8, 8, 3), jnp.uint8), KEY)
