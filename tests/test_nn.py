"""Tests of jaxgan.nn: fast transposed and strided convs, projection, norms, spectral norm, weight import."""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan import nn as jnn
from jaxgan.game import make_apply
from jaxgan.nn import torch_weights

# --------------------------------------------------------------------------
# Independent references in numpy (PyTorch semantics, PyTorch layouts)
# --------------------------------------------------------------------------


def np_conv_transpose2d(x_nchw, w, stride, padding, bias=None):
  """PyTorch ConvTranspose2d by scattering: w [in, out, kh, kw]."""
  b, cin, h, wd = x_nchw.shape
  _, cout, kh, kw = w.shape
  full = np.zeros((b, cout, (h - 1) * stride + kh, (wd - 1) * stride + kw))
  for i in range(h):
    for j in range(wd):
      contrib = np.einsum('bc,cokl->bokl', x_nchw[:, :, i, j], w)
      full[:, :, i * stride : i * stride + kh, j * stride : j * stride + kw] += contrib
  out = full[:, :, padding : full.shape[2] - padding, padding : full.shape[3] - padding]
  if bias is not None:
    out = out + bias[None, :, None, None]
  return out


def np_conv2d(x_nchw, w, stride, padding, bias=None):
  """PyTorch Conv2d (cross-correlation): w [out, in, kh, kw]."""
  xp = np.pad(x_nchw, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
  _, _, kh, kw = w.shape
  oh = (xp.shape[2] - kh) // stride + 1
  ow = (xp.shape[3] - kw) // stride + 1
  out = np.zeros((x_nchw.shape[0], w.shape[0], oh, ow))
  for i in range(oh):
    for j in range(ow):
      patch = xp[:, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
      out[:, :, i, j] = np.einsum('bckl,ockl->bo', patch, w)
  if bias is not None:
    out = out + bias[None, :, None, None]
  return out


def _normal(seed, shape):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def nhwc(a):
  return np.transpose(a, (0, 2, 3, 1))


def nchw(a):
  return np.transpose(np.asarray(a), (0, 3, 1, 2))


# --------------------------------------------------------------------------
# conv_transpose_4x4s2
# --------------------------------------------------------------------------

# (batch, H, W, in, out): odd sizes, 1x1, and shapes that take each internal
# route (phase forward from 8x8 with >= 32 outputs; both kernel-gradient forms).
SHAPES = [
  (2, 3, 5, 4, 6),
  (1, 1, 1, 3, 2),
  (2, 7, 7, 5, 3),
  (2, 8, 9, 8, 40),
  (1, 9, 8, 100, 3),
  (2, 8, 8, 64, 32),
]


@pytest.mark.parametrize('shape', SHAPES)
def test_fast_conv_transpose_matches_lax_values_and_gradients(shape):
  b, h, w, cin, cout = shape
  rng = np.random.default_rng(sum(shape))
  with jax.enable_x64(True):
    x = jnp.asarray(rng.normal(size=(b, h, w, cin)))
    k = jnp.asarray(rng.normal(size=(4, 4, cin, cout)))
    g = jnp.asarray(rng.normal(size=(b, 2 * h, 2 * w, cout)))

    @jax.jit
    def value_and_vjp(x, k, g):
      fast, vjp = jax.vjp(jnn.conv_transpose_4x4s2, x, k)
      ref, vjp_ref = jax.vjp(jnn.conv_transpose_4x4s2_reference, x, k)
      return (fast, vjp(g)), (ref, vjp_ref(g))

    ours, ref = value_and_vjp(x, k, g)
    assert ours[0].shape == (b, 2 * h, 2 * w, cout)
    chex.assert_trees_all_close(ours, ref, rtol=1e-12, atol=1e-12)


def test_fast_conv_transpose_is_pytorch_geometry():
  """Against a scatter implementation of ConvTranspose2d(k=4, s=2, p=1)."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 3, 5, 4))  # NCHW, odd sizes
  w = rng.normal(size=(3, 6, 4, 4))  # [in, out, kh, kw]
  bias = rng.normal(size=6)
  want = np_conv_transpose2d(x, w, 2, 1, bias)
  params = torch_weights.conv_transpose(w, bias)
  with jax.enable_x64(True):
    y = jnn.ConvTranspose4x4s2(6).apply({'params': params}, jnp.asarray(nhwc(x)))
    np.testing.assert_allclose(nchw(y), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
  'fast, reference, x_shape, k_shape',
  [
    (jnn.conv_transpose_4x4s2, jnn.conv_transpose_4x4s2_reference, (2, 4, 4, 3), (4, 4, 3, 5)),
    (jnn.conv_4x4s2, jnn.conv_4x4s2_reference, (2, 16, 16, 32), (4, 4, 32, 6)),  # phase dx
  ],
  ids=['transposed', 'strided'],
)
def test_second_order_reverse_mode_matches_reference(fast, reference, x_shape, k_shape):
  """A gradient penalty (grad of the input gradient, in x and k) is unchanged."""
  rng = np.random.default_rng(3)
  with jax.enable_x64(True):
    x = jnp.asarray(rng.normal(size=x_shape))
    k = jnp.asarray(rng.normal(size=k_shape))

    def penalty(fn):
      def inner(x, k):
        dx = jax.grad(lambda x: jnp.sum(jnp.sin(fn(x, k))))(x)
        return jnp.sum(dx**2)

      return jax.grad(inner, argnums=(0, 1))(x, k)

    both = jax.jit(lambda: (penalty(fast), penalty(reference)))
    chex.assert_trees_all_close(*both(), rtol=1e-10, atol=1e-10)


def test_module_is_interchangeable_with_flax_conv_transpose():
  x = _normal(0, (2, 5, 6, 7))
  stock = nn.ConvTranspose(9, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)))
  variables = jax.jit(stock.init)(jax.random.PRNGKey(1), x)
  variables = jax.tree.map(lambda a: a + 0.1, variables)  # non-zero bias
  ours = jnn.ConvTranspose4x4s2(9)
  chex.assert_trees_all_equal_shapes(jax.eval_shape(ours.init, jax.random.PRNGKey(1), x), variables)

  @jax.jit
  def outputs(v, x):
    fast = jnn.ConvTranspose4x4s2(9, method='fast').apply(v, x)
    slow = jnn.ConvTranspose4x4s2(9, method='stock').apply(v, x)
    return fast, slow, stock.apply(v, x)

  fast, slow, want = outputs(variables, x)
  chex.assert_trees_all_close(fast, want, rtol=1e-5, atol=1e-5)
  chex.assert_trees_all_close(slow, want, rtol=1e-5, atol=1e-5)


def test_module_rejects_bad_arguments():
  x = jnp.zeros((1, 4, 4, 2))
  with pytest.raises(ValueError, match="'fast' or 'stock'"):
    jnn.ConvTranspose4x4s2(3, method='slow').init(jax.random.PRNGKey(0), x)
  with pytest.raises(ValueError, match=r'\[B, H, W, C\]'):
    jnn.ConvTranspose4x4s2(3).init(jax.random.PRNGKey(0), jnp.zeros((4, 4, 2)))


def test_fast_conv_transpose_under_jit_and_bfloat16():
  x = _normal(0, (2, 8, 8, 4))
  k = _normal(1, (4, 4, 4, 32)) * 0.1

  def grads(fn):
    return jax.jit(jax.grad(lambda x, k: jnp.sum(fn(x, k) ** 2), argnums=(0, 1)))

  g_ref = grads(jnn.conv_transpose_4x4s2_reference)(x, k)
  chex.assert_trees_all_close(grads(jnn.conv_transpose_4x4s2)(x, k), g_ref, rtol=1e-4, atol=1e-4)
  g16 = grads(jnn.conv_transpose_4x4s2)(x.astype(jnp.bfloat16), k.astype(jnp.bfloat16))
  assert g16[0].dtype == g16[1].dtype == jnp.bfloat16
  chex.assert_trees_all_close(
    jax.tree.map(lambda a: a.astype(jnp.float32), g16), g_ref, rtol=0.1, atol=0.1
  )


# --------------------------------------------------------------------------
# conv_4x4s2 and the conv_general_dilated drop-in
# --------------------------------------------------------------------------

# (batch, H, W, in, out): the adjoint transposed conv takes its stock route
# (small maps) and its phase route (>= 8x8 cotangent, >= 32 channels of x).
DOWN_SHAPES = [(2, 4, 6, 3, 5), (2, 16, 16, 32, 8), (1, 2, 2, 1, 1)]


@pytest.mark.parametrize('shape', DOWN_SHAPES)
def test_fast_strided_conv_matches_pytorch_values_and_lax_gradients(shape):
  b, h, w, cin, cout = shape
  rng = np.random.default_rng(sum(shape))
  x_nchw = rng.normal(size=(b, cin, h, w))
  w_torch = rng.normal(size=(cout, cin, 4, 4))
  with jax.enable_x64(True):
    x = jnp.asarray(nhwc(x_nchw))
    k = jnp.asarray(w_torch.transpose(2, 3, 1, 0))  # [kh, kw, in, out]
    y = jnn.conv_4x4s2(x, k)
    np.testing.assert_allclose(nchw(y), np_conv2d(x_nchw, w_torch, 2, 1), rtol=1e-12, atol=1e-12)
    g = jnp.asarray(rng.normal(size=y.shape))
    ours = jax.vjp(jnn.conv_4x4s2, x, k)[1](g)
    ref = jax.vjp(jnn.conv_4x4s2_reference, x, k)[1](g)
    chex.assert_trees_all_close(ours, ref, rtol=1e-12, atol=1e-12)


def test_conv_general_dilated_routes_only_the_dcgan_downsampling_geometry():
  x = _normal(0, (2, 8, 8, 3))

  def routed(features, kernel, strides, padding, x=x):
    layer = nn.Conv(
      features,
      kernel,
      strides=strides,
      padding=padding,
      conv_general_dilated=jnn.conv_general_dilated,
    )
    stock = nn.Conv(features, kernel, strides=strides, padding=padding)
    params = stock.init(jax.random.PRNGKey(0), x)
    chex.assert_trees_all_equal_shapes(params, layer.init(jax.random.PRNGKey(0), x))
    np.testing.assert_allclose(layer.apply(params, x), stock.apply(params, x), rtol=1e-5, atol=1e-5)
    return 'custom_vjp' in str(jax.make_jaxpr(lambda p: layer.apply(p, x))(params))

  assert routed(5, (4, 4), (2, 2), ((1, 1), (1, 1)))
  assert not routed(5, (3, 3), (1, 1), ((1, 1), (1, 1)))
  assert not routed(5, (4, 4), (2, 2), 'SAME')
  assert not routed(5, (4, 4), (1, 1), ((1, 1), (1, 1)))
  assert not routed(5, (4, 4), (2, 2), ((1, 1), (1, 1)), x=_normal(1, (2, 7, 7, 3)))  # odd size


def test_dcgan_discriminator_fast_and_stock_downsampling_agree():
  from jaxgan import models

  x = _normal(2, (3, 28, 28, 1))
  _, fast = models.get_models('dcgan28', d_width=8, d_norm='layer')
  _, stock = models.get_models('dcgan28', d_width=8, d_norm='layer', d_downsample='stock')
  params = fast.init(jax.random.PRNGKey(0), x, train=True)

  def grads(d):
    grad = jax.grad(lambda p, x: jnp.sum(d.apply(p, x, train=True)), argnums=(0, 1))
    return jax.jit(grad)(params, x)

  chex.assert_trees_all_close(grads(fast), grads(stock), rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match="'fast' or 'stock'"):
    models.get_models('dcgan28', d_downsample='slow')[1].init(jax.random.PRNGKey(0), x, train=True)


# --------------------------------------------------------------------------
# Project4x4
# --------------------------------------------------------------------------


def test_project_matches_flax_valid_conv_transpose_and_pytorch():
  rng = np.random.default_rng(1)
  z = rng.normal(size=(3, 5))
  w = rng.normal(size=(5, 7, 4, 4))  # PyTorch ConvTranspose2d(5, 7, 4, 1, 0) weight
  bias = rng.normal(size=7)
  params = torch_weights.conv_transpose(w, bias)
  want = np_conv_transpose2d(z[:, :, None, None], w, 1, 0, bias)
  with jax.enable_x64(True):
    y = jnn.Project4x4(7).apply({'params': params}, jnp.asarray(z))
    np.testing.assert_allclose(nchw(y), want, rtol=1e-12, atol=1e-12)
    stock = nn.ConvTranspose(7, (4, 4), padding='VALID')
    y_stock = stock.apply({'params': params}, jnp.asarray(z)[:, None, None, :])
    np.testing.assert_allclose(y, y_stock, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------
# Normalizations
# --------------------------------------------------------------------------


class _Norm(nn.Module):
  kind: str

  @nn.compact
  def __call__(self, x, train: bool):
    return jnn.activation_norm(self.kind, x.shape[-1], train, name='norm')(x)


def _run_norm(kind, x):
  m = _Norm(kind)
  return jax.jit(lambda x: m.apply(m.init(jax.random.PRNGKey(1), x, train=False), x, train=True))(x)


def test_layer_norm_normalizes_each_sample_over_hwc():
  x = _normal(0, (3, 4, 5, 6)) * 3 + jnp.arange(3.0)[:, None, None, None]
  y = _run_norm('layer', x)
  np.testing.assert_allclose(jnp.mean(y, axis=(1, 2, 3)), 0.0, atol=1e-5)
  np.testing.assert_allclose(jnp.var(y, axis=(1, 2, 3)), 1.0, atol=1e-3)


def test_group_norm_uses_32_groups_or_the_largest_divisor():
  assert jnn.norms._groups(256, 32) == 32
  assert jnn.norms._groups(48, 32) == 24
  assert jnn.norms._groups(5, 32) == 5
  x = _normal(0, (2, 3, 3, 64))
  y = _run_norm('group', x)
  groups = y.reshape(2, 3, 3, 32, 2)
  np.testing.assert_allclose(jnp.mean(groups, axis=(1, 2, 4)), 0.0, atol=1e-5)


def test_batch_norm_uses_pytorch_momentum_and_eps():
  x = _normal(0, (16, 2, 2, 3)) + 2.0
  m = _Norm('batch')

  @jax.jit
  def run(x):
    v = m.init(jax.random.PRNGKey(1), x, train=False)
    return m.apply(v, x, train=True, mutable=['batch_stats'])

  y, new = run(x)
  mean = jnp.mean(x, axis=(0, 1, 2))
  var = jnp.var(x, axis=(0, 1, 2))
  np.testing.assert_allclose(new['batch_stats']['norm']['mean'], 0.1 * mean, rtol=1e-5)
  np.testing.assert_allclose(new['batch_stats']['norm']['var'], 0.9 + 0.1 * var, rtol=1e-5)
  np.testing.assert_allclose(y, (x - mean) / jnp.sqrt(var + 1e-5), rtol=1e-4, atol=1e-4)


def test_unknown_norm_is_rejected_with_the_choices():
  with pytest.raises(ValueError, match='spectral'):
    jnn.check_norm('instance', 'D')


# --------------------------------------------------------------------------
# Spectral normalization
# --------------------------------------------------------------------------


class _SNConv(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool):
    conv = nn.Conv(6, (3, 3), use_bias=False, name='conv')
    return jnn.spectral_norm(conv, True, train)(x)


def test_spectral_norm_top_singular_value_converges_to_one():
  x = _normal(0, (2, 5, 5, 4))
  m = _SNConv()
  variables = m.init(jax.random.PRNGKey(1), x, train=False)
  assert set(variables) == {'params', jnn.SPECTRAL_COLLECTION}
  kernel = variables['params']['conv']['kernel'] * 3.0  # true sigma far from 1
  variables = {**variables, 'params': {'conv': {'kernel': kernel}}}
  true_sigma = np.linalg.svd(np.asarray(kernel).reshape(-1, 6), compute_uv=False)[0]
  apply = make_apply(m)
  probe = _normal(2, (1, 3, 3, 4))
  raw = jax.lax.conv_general_dilated(
    probe, kernel, (1, 1), 'VALID', dimension_numbers=('NHWC', 'HWIO', 'NHWC')
  )

  @jax.jit
  def used_sigma(v):
    # Eval-mode output = raw / sigma_est; the centre pixel of a 3x3 probe is the VALID output.
    got = m.apply(v, probe, train=False)[:, 1:2, 1:2]
    return jnp.vdot(raw, raw) / jnp.vdot(raw, got)

  @jax.jit
  def iterate(v, n):
    def body(_, v):
      return {'params': v['params'], **apply(v, x, train=True)[1]}

    return jax.lax.fori_loop(0, n, body, v)

  mat = np.asarray(kernel).reshape(-1, 6)
  v = iterate(variables, 1)
  sig1 = np.linalg.svd(mat / float(used_sigma(v)), compute_uv=False)[0]
  v = iterate(v, 60)
  state = {'spectral': v['spectral']}
  sig = np.linalg.svd(mat / float(used_sigma(v)), compute_uv=False)[0]
  assert abs(sig - 1.0) < 1e-4, sig
  assert abs(sig1 - 1.0) > 1e-3, sig1  # one iteration from a random u is not yet there
  stored = float(state['spectral']['conv_sn']['conv/kernel/sigma'])
  np.testing.assert_allclose(stored, true_sigma, rtol=1e-4)


def test_spectral_norm_updates_state_only_in_train_mode():
  x = _normal(0, (2, 5, 5, 4))
  m = _SNConv()
  variables = m.init(jax.random.PRNGKey(1), x, train=False)
  apply = make_apply(m)
  _, new_eval = apply(variables, x, train=False)
  assert new_eval == {}
  _, new_train = apply(variables, x, train=True)
  u0 = variables['spectral']['conv_sn']['conv/kernel/u']
  u1 = new_train['spectral']['conv_sn']['conv/kernel/u']
  assert u0.shape == u1.shape == (1, 6)
  assert float(jnp.max(jnp.abs(u0 - u1))) > 0


def test_spectral_norm_disabled_returns_the_layer():
  layer = nn.Dense(3, name='d')
  assert jnn.spectral_norm(layer, False, True) is layer


# --------------------------------------------------------------------------
# PyTorch weight conversion
# --------------------------------------------------------------------------


def test_conv_and_linear_conversion():
  rng = np.random.default_rng(4)
  x = rng.normal(size=(2, 3, 7, 6))
  w = rng.normal(size=(5, 3, 4, 4))
  b = rng.normal(size=5)
  want = np_conv2d(x, w, 2, 1, b)
  with jax.enable_x64(True):
    conv = nn.Conv(5, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)))
    got = conv.apply({'params': torch_weights.conv(w, b)}, jnp.asarray(nhwc(x)))
    np.testing.assert_allclose(nchw(got), want, rtol=1e-12, atol=1e-12)
    wl, bl, z = rng.normal(size=(4, 6)), rng.normal(size=4), rng.normal(size=(3, 6))
    got = nn.Dense(4).apply({'params': torch_weights.linear(wl, bl)}, jnp.asarray(z))
    np.testing.assert_allclose(got, z @ wl.T + bl, rtol=1e-12)


def test_linear_feature_map_conversions():
  rng = np.random.default_rng(5)
  c, h, w = 3, 2, 4
  with jax.enable_x64(True):
    # Linear(6 -> C*H*W) then view(B, C, H, W).
    wt, bt, z = rng.normal(size=(c * h * w, 6)), rng.normal(size=c * h * w), rng.normal(size=(2, 6))
    want = (z @ wt.T + bt).reshape(2, c, h, w)
    p = torch_weights.linear_to_feature_map(wt, bt, c, h, w)
    got = nn.Dense(c * h * w).apply({'params': p}, jnp.asarray(z)).reshape(2, h, w, c)
    np.testing.assert_allclose(nchw(got), want, rtol=1e-12)
    # x.view(B, -1) of an NCHW map, then Linear(C*H*W -> 2).
    wt, bt, fmap = (
      rng.normal(size=(2, c * h * w)),
      rng.normal(size=2),
      rng.normal(size=(2, c, h, w)),
    )
    want = fmap.reshape(2, -1) @ wt.T + bt
    p = torch_weights.linear_from_feature_map(wt, bt, c, h, w)
    got = nn.Dense(2).apply({'params': p}, jnp.asarray(nhwc(fmap)).reshape(2, -1))
    np.testing.assert_allclose(got, want, rtol=1e-12)
  with pytest.raises(ValueError, match='channels\\*height\\*width'):
    torch_weights.linear_to_feature_map(wt, None, 5, 5, 5)


def test_norm_conversions():
  rng = np.random.default_rng(6)
  x = rng.normal(size=(4, 2, 2, 64))
  wt, bt, mean, var = (
    rng.normal(size=64),
    rng.normal(size=64),
    rng.normal(size=64),
    rng.uniform(1, 2, size=64),
  )
  params, stats = torch_weights.batch_norm(wt, bt, mean, var)
  with jax.enable_x64(True):
    bn = jnn.batch_norm(train=False)
    got = bn.apply({'params': params, 'batch_stats': stats}, jnp.asarray(x))
    np.testing.assert_allclose(got, (x - mean) / np.sqrt(var + 1e-5) * wt + bt, rtol=1e-10)
    gn = jnn.activation_norm('group', 64, False)
    got = gn.apply({'params': torch_weights.group_norm(wt, bt)}, jnp.asarray(x))
    xg = x.reshape(4, 2, 2, 32, 2)
    mu = xg.mean(axis=(1, 2, 4), keepdims=True)
    sd = np.sqrt(xg.var(axis=(1, 2, 4), keepdims=True) + 1e-5)
    np.testing.assert_allclose(got, ((xg - mu) / sd).reshape(x.shape) * wt + bt, rtol=1e-9)
  with pytest.raises(ValueError, match='one shape'):
    torch_weights.batch_norm(wt, bt, mean[:3], var)


class _SNDense(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool):
    return jnn.spectral_norm(nn.Dense(3, name='fc'), True, train)(x)


def test_spectral_state_conversion_reproduces_pytorch_train_forward():
  """PyTorch's train-mode SN: v = n(W^T u), u' = n(W v), W / (u'^T W v)."""
  rng = np.random.default_rng(7)
  w, b, u = rng.normal(size=(3, 5)), rng.normal(size=3), rng.normal(size=3)
  u = u / np.linalg.norm(u)
  x = rng.normal(size=(2, 5))

  def normalize(a):
    return a / np.linalg.norm(a)

  v = normalize(w.T @ u)
  u_new = normalize(w @ v)
  want = x @ (w / (u_new @ w @ v)).T + b
  params = torch_weights.linear(w, b)
  sn = torch_weights.spectral_state(params['kernel'], u)
  with jax.enable_x64(True):
    variables = {
      'params': {'fc': params},
      'spectral': {'fc_sn': {'fc/kernel/u': sn['u'], 'fc/kernel/sigma': sn['sigma']}},
    }
    got, new = _SNDense().apply(variables, jnp.asarray(x), train=True, mutable=['spectral'])
    np.testing.assert_allclose(got, want, rtol=1e-10)
    np.testing.assert_allclose(new['spectral']['fc_sn']['fc/kernel/u'][0], u_new, rtol=1e-10)
  np.testing.assert_allclose(sn['sigma'], u @ w @ normalize(w.T @ u), rtol=1e-12)


def test_torch_conv_transpose_matches_when_torch_is_installed():
  torch = pytest.importorskip('torch')
  rng = np.random.default_rng(8)
  x = rng.normal(size=(2, 6, 5, 7)).astype(np.float64)
  layer = torch.nn.ConvTranspose2d(6, 4, 4, 2, 1).double()
  with torch.no_grad():
    want = layer(torch.tensor(x)).numpy()
  params = torch_weights.conv_transpose(layer.weight.detach().numpy(), layer.bias.detach().numpy())
  with jax.enable_x64(True):
    got = jnn.ConvTranspose4x4s2(4).apply({'params': params}, jnp.asarray(nhwc(x)))
    np.testing.assert_allclose(nchw(got), want, rtol=1e-10, atol=1e-10)
