"""The alternating step against separately computed gradients (float64), and its guards."""

import chex
import jax
import jax.numpy as jnp
import optax
import pytest
import tiny_models as tm

from jaxgan import coopinit, onestage, regularizers, sparse
from jaxgan.steps import two_stage_step


def test_two_stage_gradients_follow_the_reference_order():
  """D's grad at (D_t, G_t); G's grad through the updated D_{t+1}."""
  with jax.enable_x64(True):
    z = jax.random.normal(jax.random.PRNGKey(3), (8, tm.LATENT_DIM), jnp.float64)
    real = tm.real_batch()['image'].astype(jnp.float64)
    game, g_mod, d_mod = tm.make_game('ns', z=z)
    state = tm.to_f64(tm.make_state(g_mod, d_mod))
    new, metrics = jax.jit(two_stage_step(game, optax.identity(), optax.identity()))(
      state, {'image': real}
    )
    g_grads = tm.grads_from_identity_update(state.g.params, new.g.params)
    d_grads = tm.grads_from_identity_update(state.d.params, new.d.params)

    def d_out(dp, x):
      return game.d_apply({'params': dp}, x, train=True)[0]

    fake0 = game.g_apply({'params': state.g.params}, z, train=True)[0]
    ref_d = jax.grad(lambda dp: game.loss.d_loss(d_out(dp, real), d_out(dp, fake0)))(state.d.params)
    ref_g = jax.grad(
      lambda gp: game.loss.g_loss(
        d_out(new.d.params, game.g_apply({'params': gp}, z, train=True)[0])
      )
    )(state.g.params)
    chex.assert_trees_all_close(d_grads, ref_d, rtol=1e-10, atol=1e-13)
    chex.assert_trees_all_close(g_grads, ref_g, rtol=1e-10, atol=1e-13)
    assert jnp.allclose(
      metrics['d_loss'], game.loss.d_loss(d_out(state.d.params, real), d_out(state.d.params, fake0))
    )


def test_n_dis_uses_one_real_batch_per_d_update():
  with jax.enable_x64(True):
    z = jax.random.normal(jax.random.PRNGKey(3), (4, tm.LATENT_DIM), jnp.float64)
    real = tm.real_batch(8)['image'].astype(jnp.float64)
    game, g_mod, d_mod = tm.make_game('hinge', z=z)
    sgd = optax.sgd(0.1)
    state = tm.to_f64(tm.make_state(g_mod, d_mod, g_tx=sgd, d_tx=sgd))
    new, _ = two_stage_step(game, sgd, sgd, n_dis=2)(state, {'image': real})

    def d_out(dp, x):
      return game.d_apply({'params': dp}, x, train=True)[0]

    fake = game.g_apply({'params': state.g.params}, z, train=True)[0]
    dp = state.d.params
    for chunk in (real[:4], real[4:]):
      g = jax.grad(lambda p, c=chunk: game.loss.d_loss(d_out(p, c), d_out(p, fake)))(dp)
      dp = jax.tree.map(lambda w, gw: w - 0.1 * gw, dp, g)
    chex.assert_trees_all_close(new.d.params, dp, rtol=1e-10)


def test_bad_batches_rejected_before_compiling():
  game, g_mod, d_mod = tm.make_game('ns')
  state = tm.make_state(g_mod, d_mod)
  step = jax.jit(two_stage_step(game, optax.identity(), optax.identity(), n_dis=3))
  with pytest.raises(ValueError, match='n_dis=3'):
    step(state, tm.real_batch(8))
  with pytest.raises(ValueError, match=r'\[N, H, W, C\] images'):
    step(state, {'image': jnp.zeros((6, 4, 2))})
  with pytest.raises(ValueError, match='to_float'):
    step(state, {'image': jnp.zeros((6, 2, 2, 1), jnp.uint8)})
  with pytest.raises(ValueError, match='n_dis'):
    two_stage_step(game, optax.identity(), optax.identity(), n_dis=0)
  with pytest.raises(ValueError, match='ema_decay'):
    two_stage_step(game, optax.identity(), optax.identity(), ema_decay=1.5)


def test_ema_batchnorm_state_and_single_compile():
  game, g_mod, d_mod = tm.make_game('ns', d_module=tm.TinyBND(), d_batch_coupled=True)
  tx = optax.adam(1e-2)
  state = tm.make_state(g_mod, d_mod, g_tx=tx, d_tx=tx, use_ema=True)
  step = jax.jit(chex.assert_max_traces(two_stage_step(game, tx, tx, ema_decay=0.9), n=1))
  s1, m = step(state, tm.real_batch())
  s2, _ = step(s1, tm.real_batch(seed=2))
  expected = jax.tree.map(lambda e, p: 0.9 * e + 0.1 * p, s1.ema_params, s2.g.params)
  chex.assert_trees_all_close(s2.ema_params, expected, rtol=1e-6)
  # BatchNorm running statistics moved (stored once per D forward).
  assert not jnp.allclose(s1.d.model_state['batch_stats']['BatchNorm_0']['mean'], 0.0)
  assert set(m) >= {'d_loss', 'g_loss', 'd_real', 'd_fake', 'd_reg', 'g_reg'}


def test_balance_triple_matches_direct_evaluation():
  z = jax.random.normal(jax.random.PRNGKey(3), (8, tm.LATENT_DIM))
  game, g_mod, d_mod = tm.make_game('hinge', z=z)
  tx = optax.adam(1e-2)
  state = tm.make_state(g_mod, d_mod, g_tx=tx, d_tx=tx)
  real = tm.real_batch()
  new, m = jax.jit(two_stage_step(game, tx, tx, measure_balance=True))(state, real)

  def mean_d(x):
    return jnp.mean(game.d_apply({'params': new.d.params}, x, train=True)[0])

  pre = game.g_apply({'params': state.g.params}, z, train=True)[0]
  post = game.g_apply({'params': new.g.params}, z, train=True)[0]
  assert jnp.allclose(m['balance/df'], mean_d(pre), atol=1e-6)
  assert jnp.allclose(m['balance/gf'], mean_d(post), atol=1e-6)
  assert jnp.allclose(m['balance/dr'], mean_d(real['image']), atol=1e-6)


def test_r1_and_gradient_penalty_closed_forms_for_a_linear_d():
  w = jnp.array([0.5, -1.0, 2.0, 0.25])

  def d_apply(variables, x, *, train, rngs=None):
    return x.reshape(x.shape[0], -1) @ variables['params']['w'], {}

  real = tm.real_batch()['image']
  fake = -real
  r1 = regularizers.r1_penalty(d_apply, 10.0)(
    {'params': {'w': w}}, real, fake, jax.random.PRNGKey(0)
  )
  assert jnp.allclose(r1, 5.0 * jnp.sum(w**2))
  gp = regularizers.wgan_gp_penalty(d_apply, 10.0)(
    {'params': {'w': w}}, real, fake, jax.random.PRNGKey(0)
  )
  assert jnp.allclose(gp, 10.0 * (jnp.linalg.norm(w) - 1.0) ** 2, rtol=1e-5)
  with pytest.raises(ValueError, match='r1 weight'):
    regularizers.r1_penalty(d_apply, -1.0)


def test_regularizer_gradient_reaches_d():
  game, g_mod, d_mod = tm.make_game('ns')
  game_r1 = game.replace(d_regularizers=(regularizers.r1_penalty(game.d_apply, 100.0),))
  state = tm.make_state(g_mod, d_mod)
  a, ma = jax.jit(two_stage_step(game, optax.identity(), optax.identity()))(state, tm.real_batch())
  b, mb = jax.jit(two_stage_step(game_r1, optax.identity(), optax.identity()))(
    state, tm.real_batch()
  )
  assert float(mb['d_reg']) > 0 and float(ma['d_reg']) == 0
  assert not jnp.allclose(a.d.params['Dense_0']['kernel'], b.d.params['Dense_0']['kernel'])


def test_every_step_keeps_pruned_weights_zero_in_the_ema():
  """The EMA takes the constraint of G's optimizer state (sparse masks), in every step."""
  game, g_mod, d_mod = tm.make_game('ns')
  kernel = jnp.arange(15).reshape(3, 5) % 2 == 0
  g_tx = sparse.masked_optimizer(
    optax.adam(1e-2),
    lambda p: {**sparse.dense_masks(p), 'Dense_0': {'kernel': kernel, 'bias': None}},
  )
  state = tm.make_state(g_mod, d_mod, g_tx=g_tx, d_tx=optax.adam(1e-2), use_ema=True)
  # An EMA that is not masked yet: only the step's constraint can zero it.
  state = state.replace(ema_params=jax.tree.map(lambda p: p + 1.0, state.g.params))
  steps = (
    two_stage_step(game, g_tx, optax.adam(1e-2), ema_decay=0.5),
    onestage.one_stage_step(game, g_tx, optax.adam(1e-2), ema_decay=0.5),
    coopinit.coop_step(
      game, g_tx, optax.adam(1e-2), langevin=coopinit.LangevinConfig(0.1, 2), ema_decay=0.5
    ),
  )
  for step in steps:
    new, _ = step(state, tm.real_batch())
    ema = new.ema_params['Dense_0']['kernel']
    assert jnp.all(ema[~kernel] == 0.0)
    assert jnp.all(ema[kernel] != 0.0)
    chex.assert_trees_all_close(
      new.ema_params['Dense_1'],
      jax.tree.map(
        lambda e, p: 0.5 * e + 0.5 * p, state.ema_params['Dense_1'], new.g.params['Dense_1']
      ),
    )
