"""Tests of the InfoMax-GAN contrastive term (jaxgan.infomax) and the InfoMax heads."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from tiny_models import init_d

from jaxgan import infomax, models
from jaxgan.game import make_apply
from jaxgan.models import selfsup


def numpy_same_position(local, glob):
  """Direct loops: for each image i and position p, a B-way softmax over images j."""
  b, length, _ = local.shape
  total = 0.0
  for i in range(b):
    for p in range(length):
      scores = np.array([glob[i] @ local[j, p] for j in range(b)])
      total += -(scores[i] - np.log(np.sum(np.exp(scores))))
  return total / (b * length)


def numpy_all_positions(local, glob):
  """Mimicry's form: the positive plus every (j, q) score, with j == i set to -10."""
  b, length, _ = local.shape
  total = 0.0
  for i in range(b):
    negatives = [
      -10.0 if j == i else glob[i] @ local[j, q] for j in range(b) for q in range(length)
    ]
    for p in range(length):
      cands = np.array([glob[i] @ local[i, p], *negatives])
      total += -(cands[0] - np.log(np.sum(np.exp(cands))))
  return total / (b * length)


@pytest.mark.parametrize(
  'negatives, reference',
  [('same_position', numpy_same_position), ('all_positions', numpy_all_positions)],
)
def test_infonce_matches_numpy_in_float64(negatives, reference):
  rng = np.random.default_rng(0)
  local, glob = rng.standard_normal((4, 2, 3, 5)), rng.standard_normal((4, 5))
  want = reference(local.reshape(4, 6, 5), glob)
  with jax.enable_x64(True):
    got = infomax.infonce_loss(jnp.asarray(local), jnp.asarray(glob), negatives)
    assert got.dtype == jnp.float64
    np.testing.assert_allclose(float(got), want, rtol=1e-12)
    flat = infomax.infonce_loss(jnp.asarray(local.reshape(4, 6, 5)), jnp.asarray(glob), negatives)
    np.testing.assert_allclose(float(flat), want, rtol=1e-12)


def test_uninformative_local_features_give_log_b():
  glob = jnp.asarray(np.random.default_rng(1).standard_normal((6, 4)), jnp.float32)
  local = jnp.broadcast_to(jnp.asarray([0.3, -1.0, 2.0, 0.5]), (6, 3, 3, 4))
  np.testing.assert_allclose(float(infomax.infonce_loss(local, glob)), math.log(6), rtol=1e-5)


def _tiny_d():
  _, d = models.get_models('dcgan28', width=4, aux_head='infomax', infomax_dim=8, d_norm='spectral')
  variables = init_d(d, (28, 28, 1))
  return d, variables


def _images(seed, n):
  return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, (n, 28, 28, 1)), jnp.float32)


def test_d_regularizer_is_weighted_infonce_and_reaches_the_heads():
  d, variables = _tiny_d()
  feats = selfsup.infomax_apply(d)
  real = _images(2, 4)
  local, glob = feats(variables, real)
  assert local.shape == (4, 14, 14, 8) and glob.shape == (4, 8)
  reg = infomax.make_d_regularizer(feats, weight=0.2)
  want = 0.2 * infomax.infonce_loss(local, glob)
  np.testing.assert_allclose(float(reg(variables, real, real, None)), float(want), rtol=1e-6)
  grads = jax.jit(jax.grad(lambda p: reg({**variables, 'params': p}, real, real, None)))(
    variables['params']
  )
  norm = {k: float(optax.tree.norm(g)) for k, g in grads.items()}
  heads = [f'{s}_nrkhs_{p}' for s in ('local', 'global') for p in ('a', 'b', 'sc')]
  for name in (*heads, 'conv1', 'conv2'):
    assert norm[name] > 0, name
  assert norm['head'] == 0.0  # the GAN head is not part of the InfoMax loss


class TinyG(nn.Module):
  @nn.compact
  def __call__(self, z, train: bool):
    return jnp.tanh(nn.Dense(28 * 28)(z)).reshape(z.shape[0], 28, 28, 1)


def test_g_regularizer_reaches_g():
  d, d_vars = _tiny_d()
  g = TinyG()
  z = jnp.asarray(np.random.default_rng(3).standard_normal((4, 3)), jnp.float32)
  g_vars = {'params': {'Dense_0': {'kernel': 0.1 * jnp.ones((3, 784)), 'bias': jnp.zeros(784)}}}
  feats = selfsup.infomax_apply(d)
  reg = infomax.make_g_regularizer(make_apply(g), feats, weight=0.2, negatives='all_positions')
  fake = g.apply(g_vars, z, train=True)
  want = 0.2 * infomax.infonce_loss(*feats(d_vars, fake), negatives='all_positions')
  np.testing.assert_allclose(float(reg(g_vars, d_vars, z, None)), float(want), rtol=1e-6)
  grads = jax.jit(jax.grad(lambda p: reg({'params': p}, d_vars, z, None)))(g_vars['params'])
  assert float(optax.tree.norm(grads)) > 0


def test_errors():
  with pytest.raises(ValueError, match='infomax weight must be a finite number >= 0'):
    infomax.make_d_regularizer(lambda v, x: x, weight=-0.2)
  with pytest.raises(ValueError, match="negatives must be one of \\['same_position'"):
    infomax.make_g_regularizer(lambda *a, **k: None, lambda v, x: x, negatives='all')
  with pytest.raises(ValueError, match='batch size >= 2'):
    infomax.infonce_loss(jnp.zeros((1, 2, 2, 3)), jnp.zeros((1, 3)))
  with pytest.raises(ValueError, match='must share the batch and feature sizes'):
    infomax.infonce_loss(jnp.zeros((2, 2, 2, 3)), jnp.zeros((2, 4)))
  _, rot_only = models.get_models('dcgan28', width=4, aux_head='rotation')
  with pytest.raises(ValueError, match="has no infomax head; build it with aux_head='infomax'"):
    selfsup.infomax_apply(rot_only)
