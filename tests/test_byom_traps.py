"""The three silent traps of a user's own models (issue 18), through the public steps only.

1. A user-written BatchNorm D that declares nothing must not get the asymmetric
   one-stage rule: it is refused, and ``mode='auto'`` gives exact gradients.
2. A state with an EMA (``create_state``'s default) and a step built without a
   decay must not leave the EMA frozen at the initial G.
3. A D returning ``[B, 1]`` and modules without a ``train`` argument work; a D of
   any other output shape is refused with the shape named.
"""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tiny_models as tm

from jaxgan import losses, onestage
from jaxgan.game import Game, gaussian_latents, make_apply
from jaxgan.state import create_state
from jaxgan.steps import two_stage_step

B, NZ, SHAPE = 8, tm.LATENT_DIM, tm.IMAGE_SHAPE
# tm.TinyG and tm.TinyBND are plain Linen modules: D's BatchNorm is declared nowhere.
UserG, UserD, UserBatchNormD = tm.TinyG, tm.TinyD, tm.TinyBND


class PlainG(nn.Module):
  """No ``train`` argument (the PyTorch-style module)."""

  @nn.compact
  def __call__(self, z):
    return jnp.tanh(nn.Dense(4)(jnp.tanh(nn.Dense(5)(z)))).reshape(-1, *SHAPE)


class PlainD(nn.Module):
  """No ``train`` argument, logits ``[B, width]``."""

  width: int = 1

  @nn.compact
  def __call__(self, x):
    return nn.Dense(self.width)(jnp.tanh(nn.Dense(6)(x.reshape(x.shape[0], -1))))


def fixed(z):
  return lambda key, n: z[:n]


def real_batch(seed=1):
  return jax.random.uniform(jax.random.PRNGKey(seed), (B, *SHAPE), minval=-1, maxval=1)


def state_for(g, d, tx=None, **kwargs):
  tx = tx or optax.identity()
  return create_state(
    jax.random.PRNGKey(0),
    g_module=g,
    d_module=d,
    g_tx=tx,
    d_tx=tx,
    latent_dim=NZ,
    image_shape=SHAPE,
    **kwargs,
  )


def test_trap1_user_batchnorm_d_is_refused_asymmetric_and_auto_is_exact():
  with jax.enable_x64(True):
    z = jax.random.normal(jax.random.PRNGKey(3), (B, NZ), jnp.float64)
    real = real_batch().astype(jnp.float64)
    g, d = UserG(), UserBatchNormD()
    game = Game(make_apply(g), make_apply(d), losses.get_loss('ns'), fixed(z))
    state = tm.to_f64(state_for(g, d, use_ema=False))
    ident = optax.identity()
    asym = onestage.one_stage_step(game, ident, ident, mode='asymmetric')
    with pytest.raises(ValueError, match=r"batch-coupled D.*mode='exact'"):
      asym(state, {'image': real})
    new, _ = jax.jit(onestage.one_stage_step(game, ident, ident, mode='auto'))(
      state, {'image': real}
    )
    g_grads = jax.tree.map(jnp.subtract, new.g.params, state.g.params)

    def l_g(gp):  # G's own loss through D in train mode, with the real batch's statistics first
      d_vars = state.d.variables
      _, ms = game.d_apply(d_vars, real, train=True)
      fake = game.g_apply({'params': gp}, z, train=True)[0]
      return game.loss.g_loss(game.d_apply({**d_vars, **ms}, fake, train=True)[0])

    chex.assert_trees_all_close(g_grads, jax.grad(l_g)(state.g.params), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize('builder', ['one_stage', 'two_stage'])
def test_trap2_default_step_trains_the_ema(builder):
  g, d = UserG(), UserD()
  tx = optax.adam(1e-2)
  state = state_for(g, d, tx=tx)  # use_ema defaults to True
  game = Game(make_apply(g), make_apply(d), losses.get_loss('ns'), gaussian_latents(NZ))
  make = onestage.one_stage_step if builder == 'one_stage' else two_stage_step
  new, _ = jax.jit(make(game, tx, tx))(state, {'image': real_batch()})
  expected = jax.tree.map(lambda e, p: 0.999 * e + 0.001 * p, state.ema_params, new.g.params)
  chex.assert_trees_all_close(new.ema_params, expected, rtol=1e-6, atol=1e-8)
  moved = jax.tree.map(
    lambda a, b: float(jnp.max(jnp.abs(a - b))), new.ema_params, state.ema_params
  )
  assert max(jax.tree.leaves(moved)) > 0.0


def test_trap3_trailing_logit_axis_and_modules_without_train():
  z = jax.random.normal(jax.random.PRNGKey(3), (B, NZ))
  g, d = PlainG(), PlainD()
  state = state_for(g, d, use_ema=False)
  ident = optax.identity()
  game = Game(make_apply(g), make_apply(d), losses.get_loss('ns'), fixed(z))
  squeezed = game.replace(d_apply=lambda v, x, **kw: (make_apply(d)(v, x, **kw)[0][:, 0], {}))
  batch = {'image': real_batch()}
  for mode in ('asymmetric', 'exact'):
    a, ma = jax.jit(onestage.one_stage_step(game, ident, ident, mode=mode))(state, batch)
    b, mb = jax.jit(onestage.one_stage_step(squeezed, ident, ident, mode=mode))(state, batch)
    chex.assert_trees_all_close((a.g.params, a.d.params, ma), (b.g.params, b.d.params, mb))
  wide = PlainD(width=2)
  wide_game = Game(make_apply(g), make_apply(wide), losses.get_loss('ns'), fixed(z))
  with pytest.raises(ValueError, match=r'got shape \(8, 2\)'):
    two_stage_step(wide_game, ident, ident)(state_for(g, wide, use_ema=False), batch)
  np.testing.assert_equal(int(a.step), 1)
