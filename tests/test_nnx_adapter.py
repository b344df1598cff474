"""Flax NNX models through jaxgan: equal to their Linen twins, and through every step."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tiny_models as tm
from flax import nnx

from jaxgan import augment, dat, losses, nnx_adapter, onestage, sparse
from jaxgan.game import Game, gaussian_latents, make_apply
from jaxgan.state import create_state, create_state_from_variables
from jaxgan.steps import d_gradients, g_gradients, two_stage_step

B, NZ, SHAPE = 8, 3, (4, 4, 3)
PIXELS = 48


class LinenG(nn.Module):
  @nn.compact
  def __call__(self, z, train: bool):
    h = jnp.tanh(nn.Dense(8, name='l1')(z))
    return jnp.tanh(nn.Dense(PIXELS, name='l2')(h)).reshape(-1, *SHAPE)


class LinenD(nn.Module):
  bn: bool = False

  @nn.compact
  def __call__(self, x, train: bool):
    h = nn.Dense(6, name='l1')(x.reshape(x.shape[0], -1))
    if self.bn:
      h = nn.BatchNorm(use_running_average=not train, momentum=0.9, name='bn')(h)
    return nn.Dense(1, name='l2')(jnp.tanh(h))[:, 0]


class NNXG(nnx.Module):
  def __init__(self, rngs):
    self.l1 = nnx.Linear(NZ, 8, rngs=rngs)
    self.l2 = nnx.Linear(8, PIXELS, rngs=rngs)

  def __call__(self, z):
    return jnp.tanh(self.l2(jnp.tanh(self.l1(z)))).reshape(-1, *SHAPE)


class NNXD(nnx.Module):
  """Returns ``[B, 1]`` logits, as NNX users write them."""

  def __init__(self, rngs, bn=False, dropout=0.0):
    self.l1 = nnx.Linear(PIXELS, 6, rngs=rngs)
    self.bn = nnx.BatchNorm(6, momentum=0.9, rngs=rngs) if bn else None
    self.drop = nnx.Dropout(dropout, rngs=rngs) if dropout else None
    self.l2 = nnx.Linear(6, 1, rngs=rngs)

  def __call__(self, x):
    h = self.l1(x.reshape(x.shape[0], -1))
    if self.bn is not None:
      h = self.bn(h)
    h = jnp.tanh(h)
    if self.drop is not None:
      h = self.drop(h)
    return self.l2(h)


def twins(bn=False, **game_kwargs):
  """(Linen game, NNX game, Linen G/D variables (float64); the NNX models take them as they are)."""
  z = jax.random.normal(jax.random.PRNGKey(3), (B, NZ), jnp.float64)
  g_apply, _ = nnx_adapter.from_nnx(NNXG(nnx.Rngs(0)))
  d_apply, _ = nnx_adapter.from_nnx(NNXD(nnx.Rngs(1), bn=bn))
  kw = dict(loss=losses.get_loss('ns'), sample_latents=tm.fixed_latents(z), **game_kwargs)
  linen = Game(make_apply(LinenG()), make_apply(LinenD(bn)), **kw)
  nnx_game = Game(g_apply, d_apply, **kw)
  g_vars = LinenG().init(jax.random.PRNGKey(5), jnp.zeros((2, NZ)), train=False)
  d_vars = LinenD(bn).init(jax.random.PRNGKey(6), jnp.zeros((2, *SHAPE)), train=False)
  return linen, nnx_game, tm.to_f64(dict(g_vars)), tm.to_f64(dict(d_vars))


def real_batch(seed=1, dtype=jnp.float64):
  x = jax.random.uniform(jax.random.PRNGKey(seed), (B, *SHAPE), minval=-1, maxval=1)
  return x.astype(dtype)


TRANSFORMS = {
  'plain': {},
  'diffaugment_dat': dict(
    d_input_transform=augment.make_diff_augment('color,translation,cutout'),
    d_perturbation=dat.make_dat_perturbation(steps=2, step_size=0.5),
  ),
}


@pytest.mark.parametrize('transforms', sorted(TRANSFORMS))
@pytest.mark.parametrize('bn,mode', [(False, 'asymmetric'), (False, 'exact'), (True, 'auto')])
def test_one_stage_gradients_equal_linen(transforms, bn, mode):
  with jax.enable_x64(True):
    linen, nnx_game, g_vars, d_vars = twins(bn, **TRANSFORMS[transforms])
    batch, key = {'image': real_batch()}, jax.random.PRNGKey(9)
    want = onestage.gradients(linen, g_vars, d_vars, batch, key, mode)
    got = onestage.gradients(nnx_game, g_vars, d_vars, batch, key, mode)
    chex.assert_trees_all_close(got, want, rtol=1e-10, atol=1e-13)
    assert jax.tree.leaves(want.g_grads)[0].dtype == jnp.float64
    if bn:  # 'auto' found the BatchNorm D coupled: the exact rule, statistics updated alike
      assert float(want.metrics['onestage/gamma_dropped']) == 0.0
      assert set(got.model_states['d']) == {'batch_stats'}


@pytest.mark.parametrize('transforms', sorted(TRANSFORMS))
def test_two_stage_gradients_equal_linen(transforms):
  with jax.enable_x64(True):
    linen, nnx_game, g_vars, d_vars = twins(True, **TRANSFORMS[transforms])
    real, key = real_batch(), jax.random.PRNGKey(9)
    fake = linen.g_apply(g_vars, jax.random.normal(key, (B, NZ), jnp.float64), train=True)[0]
    want = d_gradients(linen, d_vars, real, fake, key)
    got = d_gradients(nnx_game, d_vars, real, fake, key)
    chex.assert_trees_all_close(got, want, rtol=1e-10, atol=1e-13)
    z = jax.random.normal(jax.random.PRNGKey(4), (B, NZ), jnp.float64)
    want = g_gradients(linen, g_vars, d_vars, z, key)
    got = g_gradients(nnx_game, g_vars, d_vars, z, key)
    chex.assert_trees_all_close(got, want, rtol=1e-10, atol=1e-13)


def nnx_state(g_tx, d_tx, d_model=None):
  g_apply, g_vars = nnx_adapter.from_nnx(NNXG(nnx.Rngs(0)))
  d_apply, d_vars = nnx_adapter.from_nnx(d_model or NNXD(nnx.Rngs(1)))
  state = create_state_from_variables(
    jax.random.PRNGKey(2), g_variables=g_vars, d_variables=d_vars, g_tx=g_tx, d_tx=d_tx
  )
  return g_apply, d_apply, sparse.sparsify_state(state)


def test_steps_with_dat_diffaugment_and_a_sparse_nnx_g():
  g_tx = sparse.masked_optimizer(
    optax.adam(1e-2), sparse.mask_initializer(jax.random.PRNGKey(7), 0.3)
  )
  d_tx = optax.adam(1e-2)
  g_apply, d_apply, state = nnx_state(g_tx, d_tx)
  masks = sparse.get_masks(state.g.opt_state)
  assert 0.2 < float(sparse.global_density(masks)) < 0.4
  game = Game(
    g_apply, d_apply, losses.get_loss('ns'), gaussian_latents(NZ), **TRANSFORMS['diffaugment_dat']
  )
  for step in (onestage.one_stage_step(game, g_tx, d_tx), two_stage_step(game, g_tx, d_tx)):
    s = state
    for seed in range(3):
      s, metrics = step(s, {'image': real_batch(seed, jnp.float32)})
    assert all(np.isfinite(float(v)) for v in metrics.values())
    for tree in (s.g.params, s.ema_params):  # pruned weights exactly zero in G and its EMA
      chex.assert_trees_all_equal(tree, sparse.apply_masks(tree, masks))
    assert not np.allclose(s.g.params['l1']['kernel'], state.g.params['l1']['kernel'])
  g = nnx_adapter.to_nnx(g_apply, {'params': s.ema_params})
  assert isinstance(g, NNXG) and g(jnp.ones((2, NZ))).shape == (2, *SHAPE)


def test_nnx_optimizer_loop_equals_the_step():
  """A user keeping their NNX models and nnx.Optimizers, with onestage.gradients."""
  g_model, d_model = NNXG(nnx.Rngs(0)), NNXD(nnx.Rngs(1), bn=True)
  g_tx, d_tx = optax.adam(1e-2), optax.adam(1e-3)
  g_apply, d_apply, state = nnx_state(g_tx, d_tx, d_model)
  game = Game(g_apply, d_apply, losses.get_loss('ns'), gaussian_latents(NZ))
  g_opt = nnx.Optimizer(g_model, g_tx, wrt=nnx.Param)
  d_opt = nnx.Optimizer(d_model, d_tx, wrt=nnx.Param)

  @nnx.jit
  def own_step(g_model, d_model, g_opt, d_opt, batch, key):
    g_vars, d_vars = g_apply.variables_of(g_model), d_apply.variables_of(d_model)
    g_grads, d_grads, states, metrics = onestage.gradients(game, g_vars, d_vars, batch, key)
    g_opt.update(g_model, g_apply.state({'params': g_grads}))
    d_opt.update(d_model, d_apply.state({'params': d_grads}))
    nnx.update(d_model, d_apply.state(states['d']))  # BatchNorm statistics
    return metrics

  step = jax.jit(onestage.one_stage_step(game, g_tx, d_tx))
  for t in range(2):
    batch = {'image': real_batch(t, jnp.float32)}
    own = own_step(g_model, d_model, g_opt, d_opt, batch, jax.random.fold_in(state.rng, t))
    state, lib = step(state, batch)
    chex.assert_trees_all_close(own, lib, rtol=1e-6)
  chex.assert_trees_all_close(g_apply.variables_of(g_model)['params'], state.g.params, rtol=1e-5)
  chex.assert_trees_all_close(d_apply.variables_of(d_model), state.d.variables, rtol=1e-5)


def test_dropout_streams_advance_with_the_model_state():
  d_apply, d_vars = nnx_adapter.from_nnx(NNXD(nnx.Rngs(1, dropout=2), dropout=0.5))
  assert set(d_vars) == {'params', 'rngs'} and d_vars['rngs']['drop']['rngs']['key'].shape == (2,)
  x = real_batch(dtype=jnp.float32)
  a, new = jax.jit(lambda v: d_apply(v, x, train=True))(d_vars)
  b, _ = d_apply({**d_vars, **new}, x, train=True)
  assert int(new['rngs']['drop']['rngs']['count']) == 1
  assert not np.allclose(a, b)  # the next call draws a new dropout mask
  e1, none = d_apply(d_vars, x, train=False)
  e2, _ = d_apply({**d_vars, **new}, x, train=False)
  np.testing.assert_array_equal(e1, e2)  # eval: no dropout, no state change
  assert none == {}
  r1, _ = d_apply(d_vars, x, train=True, rngs={'dropout': jax.random.PRNGKey(8)})
  r2, _ = d_apply({**d_vars, **new}, x, train=True, rngs={'dropout': jax.random.PRNGKey(8)})
  np.testing.assert_array_equal(r1, r2)  # reseeded streams: the same draw


def test_batchnorm_statistics_and_to_nnx_round_trip():
  d_apply, d_vars = nnx_adapter.from_nnx(NNXD(nnx.Rngs(1), bn=True))
  x = real_batch(dtype=jnp.float32)
  _, new = d_apply(d_vars, x, train=True)
  h = x.reshape(B, -1) @ d_vars['params']['l1']['kernel'] + d_vars['params']['l1']['bias']
  np.testing.assert_allclose(new['batch_stats']['bn']['mean'], 0.1 * h.mean(0), rtol=1e-5)
  model = nnx_adapter.to_nnx(d_apply, {**d_vars, **new})
  chex.assert_trees_all_equal(d_apply.variables_of(model), {**d_vars, **new})


def test_wrong_inputs_name_the_fix():
  with pytest.raises(TypeError, match='from_nnx'):
    make_apply(NNXD(nnx.Rngs(1)))
  with pytest.raises(TypeError, match='from_nnx'):
    create_state(
      jax.random.PRNGKey(0),
      g_module=NNXG(nnx.Rngs(0)),
      d_module=NNXD(nnx.Rngs(1)),
      g_tx=optax.identity(),
      d_tx=optax.identity(),
      latent_dim=NZ,
      image_shape=SHAPE,
    )
  with pytest.raises(TypeError, match='make_apply'):
    nnx_adapter.from_nnx(LinenD())
  d_apply, d_vars = nnx_adapter.from_nnx(NNXD(nnx.Rngs(1), bn=True))
  with pytest.raises(ValueError, match="no 'batch_stats' collection"):
    d_apply({'params': d_vars['params']}, real_batch(dtype=jnp.float32), train=True)
