"""Tests of jaxgan.models: shapes, parameter counts, BN modes, AdvAug hooks, registry."""

from __future__ import annotations

import functools
import math

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxgan import models
from jaxgan.game import make_apply

NZ = 8
# Small versions of every registered pair: (name, kwargs, sample shape).
SMALL = {
  'dcgan28': ({'width': 4}, (28, 28, 1)),
  'dcgan32': ({'width': 4}, (32, 32, 3)),
  'dcgan64': ({'width': 4}, (64, 64, 3)),
  'sngan32': ({'ngf': 8, 'ndf': 8}, (32, 32, 3)),
  'mlp': ({'hidden': (16, 16)}, (2,)),
}


@functools.cache
def _init_cached(module, shape):
  """Variables with the structure ``module.init`` gives, filled from numpy.

  Compiling a jax.random draw costs about two CPU seconds with this JAX on CPU,
  and flax's init compiles one per parameter; these tests need reasonable
  values, not flax's init (``test_real_init`` runs one real init).
  """
  shapes = jax.eval_shape(
    lambda x: module.init(jax.random.PRNGKey(0), x, train=False),
    jax.ShapeDtypeStruct(shape, jnp.float32),
  )
  rng = np.random.default_rng(len(shape) + shape[-1])

  def fill(path, leaf):
    collection, name = path[0].key, path[-1].key
    if collection == 'params' and name == 'scale':
      value = 1.0 + 0.1 * rng.normal(size=leaf.shape)
    elif collection == 'params':
      fan_in = math.prod(leaf.shape[:-1]) if leaf.ndim > 1 else 10
      value = rng.normal(size=leaf.shape) / math.sqrt(fan_in)
    elif name == 'var' or name.endswith('/sigma'):
      value = np.ones(leaf.shape)
    elif name.endswith('/u'):
      value = rng.normal(size=leaf.shape)
    else:  # running means, perturbations
      value = np.zeros(leaf.shape)
    return jnp.asarray(value, leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def _init(module, x):
  """Variables of ``module`` for inputs shaped like ``x`` (cached)."""
  return _init_cached(module, tuple(x.shape))


def _normal(seed, shape, scale=1.0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape) * scale, jnp.float32)


def _split(variables):
  """Drops the perturbation collection, as jaxgan.state.init_player does."""
  return {k: v for k, v in variables.items() if k != 'perturbations'}


def test_real_init():
  """flax's own init (the other tests fill variables from numpy)."""
  g = models.DCGANGenerator(image_size=28, width=2, channels=1)
  variables = g.init(jax.random.PRNGKey(0), jnp.zeros((2, NZ)), train=False)
  assert set(variables) == {'params', 'batch_stats', 'perturbations'}
  kernel = variables['params']['up1']['kernel']
  assert kernel.shape == (4, 4, 8, 4)
  assert 0.005 < float(jnp.std(kernel)) < 0.05  # N(0, 0.02)
  assert float(jnp.max(jnp.abs(variables['params']['up1']['bias']))) == 0.0


@pytest.mark.parametrize('name', sorted(SMALL))
def test_shapes_ranges_and_jit(name):
  kwargs, shape = SMALL[name]
  g, d = models.get_models(name, image_shape=shape, latent_dim=NZ, **kwargs)
  z = _normal(1, (3, NZ))
  gv = _split(_init(g, z))
  dv = _split(_init(d, jnp.zeros((3, *shape))))

  @jax.jit
  def run(z):
    x, _ = make_apply(g)(gv, z, train=True)
    logits, _ = make_apply(d)(dv, x, train=True)
    logits_eval, _ = make_apply(d)(dv, x, train=False)
    return x, logits, logits_eval

  x, logits, logits_eval = run(z)
  assert x.shape == (3, *shape) and x.dtype == jnp.float32
  assert logits.shape == logits_eval.shape == (3,) and logits.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(logits)))
  if name != 'mlp':
    assert float(jnp.max(jnp.abs(x))) <= 1.0
    assert float(jnp.std(x)) > 0


def _dcgan_counts(size, nz, d, c):
  """Hand-derived parameter counts of the DCGAN pairs (weights + biases + norms)."""

  def up(cin, cout):
    return 16 * cin * cout + cout

  def conv(k, cin, cout):
    return k * k * cin * cout + cout

  def bn(ch):
    return 2 * ch

  if size == 64:
    g = up(nz, 8 * d) + bn(8 * d)  # Project4x4 has a [4,4,nz,8d] kernel, per-channel bias
    g += up(8 * d, 4 * d) + bn(4 * d) + up(4 * d, 2 * d) + bn(2 * d) + up(2 * d, d) + bn(d)
    g += up(d, c)
    dd = conv(4, c, d) + conv(4, d, 2 * d) + bn(2 * d) + conv(4, 2 * d, 4 * d) + bn(4 * d)
    dd += conv(4, 4 * d, 8 * d) + bn(8 * d) + conv(4, 8 * d, 1)
  elif size == 32:
    g = nz * 16 * 8 * d + 16 * 8 * d + bn(8 * d)
    g += up(8 * d, 4 * d) + bn(4 * d) + up(4 * d, 2 * d) + bn(2 * d) + up(2 * d, d) + bn(d)
    g += conv(3, d, c)
    dd = conv(3, c, d) + conv(4, d, d) + bn(d) + conv(3, d, 2 * d) + bn(2 * d)
    dd += conv(4, 2 * d, 2 * d) + bn(2 * d) + conv(3, 2 * d, 4 * d) + bn(4 * d)
    dd += conv(4, 4 * d, 4 * d) + bn(4 * d) + conv(3, 4 * d, 8 * d) + bn(8 * d)
    dd += 16 * 8 * d + 1
  else:
    g = nz * 49 * 4 * d + 49 * 4 * d + bn(4 * d) + up(4 * d, 2 * d) + bn(2 * d) + up(2 * d, c)
    dd = conv(4, c, 2 * d) + conv(4, 2 * d, 4 * d) + bn(4 * d) + 49 * 4 * d + 1
  return g, dd


def _count(module, x):
  shapes = jax.eval_shape(lambda x: module.init(jax.random.PRNGKey(0), x, train=False), x)
  return models.count_params(shapes['params']), shapes['params']


@pytest.mark.parametrize(
  'name,nz,shape,default_width',
  [
    ('dcgan64', 100, (64, 64, 3), 128),
    ('dcgan32', 128, (32, 32, 3), 64),
    ('dcgan28', 100, (28, 28, 1), 64),
  ],
)
def test_dcgan_param_counts(name, nz, shape, default_width):
  g, d = models.get_models(name, image_shape=shape)
  g_count, _ = _count(g, jax.ShapeDtypeStruct((2, nz), jnp.float32))
  d_count, _ = _count(d, jax.ShapeDtypeStruct((2, *shape), jnp.float32))
  assert (g_count, d_count) == _dcgan_counts(shape[0], nz, default_width, shape[2])
  if name == 'dcgan64':
    # OSGAN's networks/dcgan.py (d=128, zdim=100, 3 channels, BN D).
    assert (g_count, d_count) == (12_660_355, 11_038_081)


def test_sngan32_param_counts():
  """Mimicry's SNGAN-32: about 4.3M (G) and 1.0M (D) parameters.

  The conv/dense weights alone, 4,266,752 and 1,052,544, are the maskable totals N
  quoted in the DDST notes; G adds 6,403 biases and 3,584 BN scales/biases, D 1,281
  biases (including l5's; the lottery code's l5 has no bias).
  """
  g, d = models.get_models('sngan32')
  g_count, g_params = _count(g, jax.ShapeDtypeStruct((2, 128), jnp.float32))
  d_count, d_params = _count(d, jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32))
  assert (g_count, d_count) == (4_276_739, 1_053_825)

  def kernels(params):
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return sum(math.prod(leaf.shape) for path, leaf in flat if path[-1].key == 'kernel')

  assert (kernels(g_params), kernels(d_params)) == (4_266_752, 1_052_544)


def test_mlp_param_counts():
  g, d = models.get_models('mlp')
  g_count, _ = _count(g, jax.ShapeDtypeStruct((2, 4), jnp.float32))
  d_count, _ = _count(d, jax.ShapeDtypeStruct((2, 2), jnp.float32))
  assert g_count == (4 * 128 + 128) + 2 * (128 * 128 + 128) + (128 * 2 + 2)
  assert d_count == (2 * 128 + 128) + 2 * (128 * 128 + 128) + (128 + 1)


def test_fast_and_stock_upsampling_agree_in_values_and_gradients():
  fast = models.DCGANGenerator(image_size=32, width=4)
  stock = models.DCGANGenerator(image_size=32, width=4, upsample='stock')
  variables32 = _split(_init(fast, jnp.zeros((4, NZ))))
  with jax.enable_x64(True):
    variables = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables32)
    z = jnp.asarray(np.random.default_rng(0).normal(size=(4, NZ)))

    def loss(module):
      def f(params):
        x, _ = make_apply(module)({**variables, 'params': params}, z, train=True)
        return jnp.sum(jnp.sin(3 * x)), x

      return jax.jit(jax.value_and_grad(f, has_aux=True))(variables['params'])

    ours, ref = loss(fast), loss(stock)
    assert ours[0][1].dtype == jnp.float64
    chex.assert_trees_all_close(ours, ref, rtol=1e-9, atol=1e-11)


def test_generator_batchnorm_train_and_eval_modes():
  g = models.DCGANGenerator(image_size=28, width=4, channels=1)
  z = _normal(0, (6, NZ))
  variables = _split(_init(g, z))
  apply = jax.jit(make_apply(g), static_argnames='train')
  x_train, new = apply(variables, z, train=True)
  x_alone, _ = apply(variables, z[:2], train=True)
  assert float(jnp.max(jnp.abs(x_train[:2] - x_alone))) > 1e-4  # batch statistics
  stats = new['batch_stats']['project_bn']
  assert float(jnp.max(jnp.abs(stats['mean']))) > 0  # running averages moved from 0
  x_eval, none = apply(variables, z, train=False)
  x_eval_alone, _ = apply(variables, z[:2], train=False)
  assert none == {}
  np.testing.assert_allclose(x_eval[:2], x_eval_alone, rtol=1e-5, atol=1e-6)


D_CASES = [
  ('dcgan28', {'width': 4, 'norm': 'batch'}, (28, 28, 1)),
  ('dcgan28', {'width': 4, 'norm': 'group'}, (28, 28, 1)),
  ('dcgan28', {'width': 4, 'norm': 'spectral'}, (28, 28, 1)),
  ('sngan32', {'ndf': 8}, (32, 32, 3)),
  ('mlp', {'hidden': (8,), 'norm': 'layer'}, (2,)),
]


@pytest.mark.parametrize('name,kwargs,shape', D_CASES)
def test_batch_coupled_flag_matches_behaviour(name, kwargs, shape):
  _, d = models.get_models(name, **{f'd_{k}': v for k, v in kwargs.items()})
  x = _normal(0, (5, *shape))
  variables = _split(_init(d, x))

  @jax.jit
  def first_logit(x_all):
    in_batch, _ = make_apply(d)(variables, x_all, train=True)
    alone, _ = make_apply(d)(variables, x_all[:1], train=True)
    return in_batch[0], alone[0]

  in_batch, alone = first_logit(x)
  coupled = abs(float(in_batch - alone)) > 1e-5 * (1 + abs(float(alone)))
  assert coupled == models.d_is_batch_coupled(d) == (kwargs.get('norm') == 'batch')


def test_d_is_batch_coupled_for_other_modules():
  class WithBN(nn.Module):
    @nn.compact
    def __call__(self, x, train):
      return nn.BatchNorm(use_running_average=not train)(nn.Dense(2)(x))[:, 0]

  class Plain(nn.Module):
    @nn.compact
    def __call__(self, x, train):
      return nn.Dense(1)(x)[:, 0]

  x = jnp.zeros((2, 3))
  assert models.d_is_batch_coupled(WithBN(), x) is True
  assert models.d_is_batch_coupled(Plain(), x) is False
  with pytest.raises(ValueError, match='example_input'):
    models.d_is_batch_coupled(Plain())


# --------------------------------------------------------------------------
# AdvAug feature hooks
# --------------------------------------------------------------------------

# name -> (G projection param path, feature shape after it, D head param path,
#          D feature shape entering the head)
HOOKS = {
  'dcgan28': (('project', 'bias'), (7, 7, 16), ('head', 'kernel'), (7 * 7 * 16,)),
  'dcgan32': (('project', 'bias'), (4, 4, 32), ('head', 'kernel'), (4 * 4 * 32,)),
  'dcgan64': (('project', 'bias'), (4, 4, 32), ('head', 'kernel'), (4, 4, 32)),
  'sngan32': (('l1', 'bias'), (4, 4, 8), ('l5', 'kernel'), (8,)),
  'mlp': (('dense0', 'bias'), (16,), ('out', 'kernel'), (16,)),
}


def _get(tree, path):
  for key in path:
    tree = tree[key]
  return tree


def _set(tree, path, value):
  if len(path) == 1:
    return {**tree, path[0]: value}
  return {**tree, path[0]: _set(tree[path[0]], path[1:], value)}


@pytest.mark.parametrize('name', sorted(HOOKS))
def test_generator_feature_hook(name):
  kwargs, shape = SMALL[name]
  bias_path, feat_shape, _, _ = HOOKS[name]
  g, _ = models.get_models(name, image_shape=shape, **kwargs)
  z = _normal(0, (3, NZ))
  full = _init(g, z)
  assert full['perturbations']['features'].shape == (3, *feat_shape)  # (a) init works
  variables = _split(full)
  delta = _normal(1, feat_shape)  # same for every sample
  bias = _get(variables['params'], bias_path)
  if bias.size != delta.size:  # Project4x4 has a per-channel bias: per-channel delta
    delta = delta[0, 0]
  shifted = {
    **variables,
    'params': _set(variables['params'], bias_path, bias + delta.reshape(bias.shape)),
  }
  zeros = jax.tree.map(jnp.zeros_like, full['perturbations'])

  @jax.jit
  def outputs():
    apply = make_apply(g)
    clean, _ = apply(variables, z, train=False)
    with_zero, _ = apply({**variables, 'perturbations': zeros}, z, train=False)
    perturbed = {
      **variables,
      'perturbations': {'features': jnp.broadcast_to(delta, (3, *feat_shape))},
    }
    with_delta, _ = apply(perturbed, z, train=False)  # eval: BN would remove a constant shift
    want, _ = apply(shifted, z, train=False)
    _, new = apply(perturbed, z, train=True)
    return clean, with_zero, with_delta, want, new

  clean, with_zero, with_delta, want, new = outputs()
  np.testing.assert_array_equal(clean, with_zero)  # (b) no-op without perturbations
  np.testing.assert_allclose(with_delta, want, rtol=1e-5, atol=1e-5)  # (c) adds delta
  assert float(jnp.max(jnp.abs(with_delta - clean))) > 1e-4
  assert 'perturbations' not in new


@pytest.mark.parametrize(
  'name,norm', [(name, 'none') for name in sorted(HOOKS)] + [('sngan32', 'spectral')]
)
def test_discriminator_feature_hook(name, norm):
  kwargs, shape = SMALL[name]
  _, _, head_path, feat_shape = HOOKS[name]
  if name == 'sngan32':
    kwargs = {**kwargs, 'd_norm': norm}
  else:
    kwargs = {**kwargs, 'norm': norm}
  _, d = models.get_models(name, image_shape=shape, **kwargs)
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (3, *shape)), jnp.float32)
  full = _init(d, x)
  assert full['perturbations']['features'].shape == (3, *feat_shape)
  variables = _split(full)
  delta = _normal(1, (3, *feat_shape))

  @jax.jit
  def outputs():
    apply = make_apply(d)
    clean, _ = apply(variables, x, train=False)
    one, _ = apply({**variables, 'perturbations': {'features': delta}}, x, train=False)
    two, _ = apply({**variables, 'perturbations': {'features': 2 * delta}}, x, train=False)
    return clean, one, two

  clean, one, two = outputs()
  assert float(jnp.max(jnp.abs(one - clean))) > 1e-4
  np.testing.assert_allclose(two - clean, 2 * (one - clean), rtol=1e-4, atol=1e-5)  # linear head
  if norm == 'none':
    kernel = _get(variables['params'], head_path)
    want = jnp.sum(delta.reshape(3, -1) * kernel.reshape(1, -1), axis=1)
    np.testing.assert_allclose(one - clean, want, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------


def test_get_models_routes_arguments():
  g, d = models.get_models('dcgan32', width=16, d_norm='group', g_upsample='stock', channels=1)
  assert (g.width, d.width, d.norm, g.upsample, g.channels) == (16, 16, 'group', 'stock', 1)
  g, d = models.get_models('dcgan28', image_shape=(28, 28, 1), dtype=jnp.bfloat16)
  assert g.channels == 1 and g.dtype == d.dtype == jnp.bfloat16
  g, _ = models.get_models('sngan32', image_shape=(48, 48, 3))
  assert g.bottom_width == 6
  g, _ = models.get_models('mlp', image_shape=(2,))
  assert tuple(g.out_shape) == (2,)


@pytest.mark.parametrize('order', ['prefixed first', 'plain first'])
def test_a_prefixed_field_wins_over_the_plain_one_in_any_order(order):
  """``ConfigDict`` sorts its keys, so a config's ``d_width`` reaches the registry before
  ``width``; the prefixed value must still decide D's width."""
  pairs = [('d_width', 8), ('g_width', 16), ('width', 32)]
  kwargs = dict(pairs if order == 'prefixed first' else pairs[::-1])
  g, d = models.get_models('dcgan28', **kwargs)
  assert (g.width, d.width) == (16, 8)
  config = ml_collections.ConfigDict({'width': 32})
  config.d_width = 8
  assert models.get_models('dcgan28', **config)[1].width == 8


def test_get_models_rejects_bad_input():
  with pytest.raises(ValueError, match=r"unknown model 'dcgan128'; choose one of \[.*'dcgan64'"):
    models.get_models('dcgan128')
  with pytest.raises(ValueError, match="unknown argument 'depth'"):
    models.get_models('dcgan32', depth=3)
  with pytest.raises(ValueError, match=r'\(32, 32, C\)'):
    models.get_models('dcgan32', image_shape=(28, 28, 1))
  with pytest.raises(ValueError, match='fixes image_size'):
    models.get_models('dcgan32', image_size=64)
  with pytest.raises(ValueError, match='latent_dim'):
    models.get_models('mlp', latent_dim=0)
  _, d = models.get_models('dcgan32', d_norm='instance')
  with pytest.raises(ValueError, match='unknown norm'):
    d.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False)
  g, _ = models.get_models('dcgan32')
  with pytest.raises(ValueError, match=r'\[B, nz\]'):
    g.init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4)), train=False)


@pytest.mark.parametrize('size,channels', [(28, 1), (32, 3)])
def test_pytorch_mirror_of_dcgan_matches_after_weight_conversion(size, channels):
  """The benchmark's PyTorch DCGAN, converted layer by layer, gives the same outputs."""
  torch = pytest.importorskip('torch')
  from experiments.bench_step import flax_variables_from_torch, torch_dcgan

  torch.manual_seed(0)
  tg, td = torch_dcgan(size, 4, channels, NZ)
  with torch.no_grad():  # non-trivial running statistics and affine params
    for m in [*tg.modules(), *td.modules()]:
      if isinstance(m, torch.nn.BatchNorm2d):
        m.running_mean.normal_()
        m.running_var.uniform_(0.5, 2.0)
        m.weight.normal_()
        m.bias.normal_()
  tg.eval()
  td.eval()
  gv, dv = flax_variables_from_torch(tg, td, size)
  g, d = models.get_models(f'dcgan{size}', image_shape=(size, size, channels), width=4)
  z = np.random.default_rng(0).normal(size=(3, NZ)).astype(np.float32)
  with torch.no_grad():
    x_t = tg(torch.tensor(z))
    logits_t = td(x_t)

  @jax.jit
  def run(gv, dv, z):
    x, _ = make_apply(g)(gv, z, train=False)
    return x, make_apply(d)(dv, x, train=False)[0]

  x, logits = run(gv, dv, jnp.asarray(z))
  np.testing.assert_allclose(x, x_t.numpy().transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(logits, logits_t.numpy(), rtol=1e-4, atol=1e-4)
