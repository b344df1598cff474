"""The gradient functions: against independent computations, and as the steps' own core.

A user loop that applies them with plain optax (the ``TrainState`` pattern) and
the same keys reproduces the library's steps bit for bit.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tiny_models as tm

from jaxgan import augment, coopinit, dat, onestage, regularizers, steps
from jaxgan.state import GANState


def f64_setup(loss='ns', **game_kwargs):
  z = jax.random.normal(jax.random.PRNGKey(3), (8, tm.LATENT_DIM), jnp.float64)
  game, g_mod, d_mod = tm.make_game(loss, z=z, **game_kwargs)
  state = tm.to_f64(tm.make_state(g_mod, d_mod))
  return game, state, z, tm.real_batch()['image'].astype(jnp.float64)


def d_logits(game, d_params, x):
  return game.d_apply({'params': d_params}, x, train=True)[0]


def test_two_stage_player_gradients_equal_their_losses():
  with jax.enable_x64(True):
    game, state, z, real = f64_setup('hinge')
    fake = game.g_apply(state.g.variables, z, train=True)[0]
    key = jax.random.PRNGKey(0)
    grads, new_ms, m = steps.d_gradients(game, state.d.variables, real, fake, key)
    ref = jax.grad(lambda dp: game.loss.d_loss(d_logits(game, dp, real), d_logits(game, dp, fake)))(
      state.d.params
    )
    chex.assert_trees_all_close(grads, ref, rtol=1e-10, atol=1e-13)
    assert new_ms == {} and set(m) == {'d_loss', 'd_reg', 'd_real', 'd_fake'}
    grads, _, m = steps.g_gradients(game, state.g.variables, state.d.variables, z, key)
    ref = jax.grad(
      lambda gp: game.loss.g_loss(
        d_logits(game, state.d.params, game.g_apply({'params': gp}, z, train=True)[0])
      )
    )(state.g.params)
    chex.assert_trees_all_close(grads, ref, rtol=1e-10, atol=1e-13)
    assert float(m['g_reg']) == 0.0


def own_loop_step(game, g_tx, d_tx, mode):
  """A user's one-stage step over (params, opt states) with onestage.gradients."""

  def step(params, opt_states, batch, key):
    g_grads, d_grads, _, metrics = onestage.gradients(
      game, {'params': params[0]}, {'params': params[1]}, batch, key, mode
    )
    new = []
    for p, o, g, tx in zip(params, opt_states, (g_grads, d_grads), (g_tx, d_tx)):
      updates, o = tx.update(g, o, p)
      new.append((optax.apply_updates(p, updates), o))
    return (new[0][0], new[1][0]), (new[0][1], new[1][1]), metrics

  return jax.jit(step)


@pytest.mark.parametrize('mode', ['asymmetric', 'exact'])
def test_own_optax_loop_reproduces_one_stage_step_bitwise(mode):
  game, g_mod, d_mod = tm.make_game('ns')
  game = game.replace(
    d_input_transform=augment.make_diff_augment('color,translation'),
    d_regularizers=(regularizers.r1_penalty(game.d_apply, 0.5),),
    d_perturbation=dat.make_dat_perturbation(step_size=0.5),
  )
  g_tx, d_tx = optax.adam(1e-2, b1=0.5), optax.adam(2e-3, b1=0.5)
  state = tm.make_state(g_mod, d_mod, g_tx=g_tx, d_tx=d_tx)
  lib = jax.jit(onestage.one_stage_step(game, g_tx, d_tx, mode=mode, ema_decay=0.9))
  own = own_loop_step(game, g_tx, d_tx, mode)
  params, opts = (state.g.params, state.d.params), (state.g.opt_state, state.d.opt_state)
  lib_state = state
  for t in range(3):
    batch = tm.real_batch(seed=t)
    params, opts, m_own = own(params, opts, batch, jax.random.fold_in(state.rng, t))
    lib_state, m_lib = lib(lib_state, batch)
  chex.assert_trees_all_equal((params, m_own), ((lib_state.g.params, lib_state.d.params), m_lib))


def test_two_stage_step_is_the_player_gradients():
  game, g_mod, d_mod = tm.make_game('ns', d_input_transform=augment.make_diff_augment('cutout'))
  tx = optax.sgd(0.1)
  state = tm.make_state(g_mod, d_mod, g_tx=tx, d_tx=tx)
  new, metrics = jax.jit(steps.two_stage_step(game, tx, tx))(state, tm.real_batch())
  k_d, k_z, k_g, _ = jax.random.split(jax.random.fold_in(state.rng, 0), 4)
  k_dz, k_loss = jax.random.split(jax.random.split(k_d, 1)[0])
  fake = game.g_apply(state.g.variables, game.sample_latents(k_dz, 8), train=True)[0]
  real = tm.real_batch()['image']
  d_grads, _, _ = steps.d_gradients(game, state.d.variables, real, fake, k_loss)
  d_params = jax.tree.map(lambda p, g: p - 0.1 * g, state.d.params, d_grads)
  z = game.sample_latents(k_z, 8)
  g_grads, _, _ = steps.g_gradients(game, state.g.variables, {'params': d_params}, z, k_g)
  g_params = jax.tree.map(lambda p, g: p - 0.1 * g, state.g.params, g_grads)
  chex.assert_trees_all_close(
    (new.d.params, new.g.params), (d_params, g_params), rtol=1e-5, atol=1e-8
  )


def test_coop_gradients_against_the_chain_and_losses():
  with jax.enable_x64(True):
    game, state, z, real = f64_setup()
    langevin = coopinit.LangevinConfig(step_size=0.2, n_steps=3, noise_scale=0.0)
    batch, key = {'image': real}, jax.random.PRNGKey(0)
    out = coopinit.gradients(
      game, state.g.variables, state.d.variables, batch, key, langevin=langevin, logit_penalty=0.1
    )
    energy = lambda x: d_logits(game, state.d.params, x)
    x_hat = game.g_apply(state.g.variables, z, train=True)[0]
    chain = dict(n_steps=3, step_size=0.2, noise_scale=0.0)
    x_tilde = coopinit.langevin_revise(energy, x_hat, None, **chain)

    def ebm(dp):
      q, p = d_logits(game, dp, real), d_logits(game, dp, x_tilde)
      return coopinit.ebm_d_loss(q, p) + 0.1 * (jnp.mean(q**2) + jnp.mean(p**2))

    teach = lambda gp: coopinit.teaching_g_loss(
      game.g_apply({'params': gp}, z, train=True)[0], x_tilde
    )
    chex.assert_trees_all_close(out.d_grads, jax.grad(ebm)(state.d.params), rtol=1e-10)
    chex.assert_trees_all_close(out.g_grads, jax.grad(teach)(state.g.params), rtol=1e-10)
    assert np.isclose(out.metrics['coop/teach_loss'], teach(state.g.params))


def test_dat_d_gradients_equal_the_gradient_of_dat_d_loss():
  game, g_mod, d_mod = tm.make_game('hinge', d_module=tm.TinyBND())
  state = tm.make_state(g_mod, d_mod)
  real = tm.real_batch()['image']
  fake = -real[::-1]
  key, cfg = jax.random.PRNGKey(0), dat.DATConfig(steps=2, step_size=0.5)
  grads, new_ms, m = dat.dat_d_gradients(
    game.d_apply, state.d.variables, real, fake, game.loss, key, cfg, mix=0.25
  )
  loss_fn = lambda p: dat.dat_d_loss(
    game.d_apply, {**state.d.variables, 'params': p}, real, fake, game.loss, key, cfg, mix=0.25
  )
  (value, ref_ms), ref = jax.value_and_grad(loss_fn, has_aux=True)(state.d.params)
  chex.assert_trees_all_close((grads, new_ms, m['d_loss']), (ref, ref_ms, value))
  assert set(new_ms) == {'batch_stats'}


def test_step_without_ema_decay_uses_the_default_and_no_ema_is_no_op():
  game, g_mod, d_mod = tm.make_game('ns')
  tx = optax.sgd(0.1)
  with_ema = tm.make_state(g_mod, d_mod, g_tx=tx, d_tx=tx, use_ema=True)
  langevin = coopinit.LangevinConfig(step_size=0.1, n_steps=2)
  d = steps.DEFAULT_EMA_DECAY
  for make in (steps.two_stage_step, onestage.one_stage_step):
    new, _ = jax.jit(make(game, tx, tx))(with_ema, tm.real_batch())
    want = jax.tree.map(lambda e, p: d * e + (1 - d) * p, with_ema.ema_params, new.g.params)
    chex.assert_trees_all_close(new.ema_params, want, rtol=1e-6)
  new, _ = jax.jit(coopinit.coop_step(game, tx, tx, langevin=langevin))(with_ema, tm.real_batch())
  assert not np.allclose(
    new.ema_params['Dense_0']['kernel'], with_ema.ema_params['Dense_0']['kernel']
  )
  no_ema = tm.make_state(g_mod, d_mod, g_tx=tx, d_tx=tx)
  new, _ = jax.jit(steps.two_stage_step(game, tx, tx))(no_ema, tm.real_batch())
  assert isinstance(new, GANState) and new.ema_params is None


def test_concrete_call_compiles_once_and_matches_jit():
  game, g_mod, d_mod = tm.make_game('ns')
  state = tm.make_state(g_mod, d_mod)
  step = onestage.one_stage_step(game, optax.identity(), optax.identity())
  a, _ = step(state, tm.real_batch())
  a, _ = step(a, tm.real_batch(seed=2))
  b, _ = jax.jit(onestage.one_stage_step(game, optax.identity(), optax.identity()))(
    state, tm.real_batch()
  )
  b, _ = jax.jit(onestage.one_stage_step(game, optax.identity(), optax.identity()))(
    b, tm.real_batch(seed=2)
  )
  chex.assert_trees_all_equal(a, b)
