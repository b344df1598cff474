"""Tests of DAT (jaxgan.dat) and the Lipschitz monitor (jaxgan.lipschitz).

Closed forms use a linear D ``f(x) = w . x + b``: for it, the reference attack
moves fakes by ``+w / B`` and reals by ``-w / B`` when mean D(real) > mean
D(fake) (papers/dat.md section 5).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tiny_models as tm

from jaxgan import dat, lipschitz, losses
from jaxgan.game import make_apply
from jaxgan.onestage import one_stage_step
from jaxgan.steps import two_stage_step

SHAPE = (3, 3, 2)  # 18 pixels per sample
DIM = 18


def uniform(seed, shape, low=-1.0, high=1.0):
  """Test data from numpy (eager jax.random would compile a kernel per shape)."""
  return jnp.asarray(np.random.default_rng(seed).uniform(low, high, shape))


def normal(seed, shape):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape))


def filled_like(shapes, seed):
  """Random values for a pytree of ShapeDtypeStructs, drawn with numpy.

  Replaces Flax's random init in these tests (threefry kernels take seconds
  to compile on a shared CPU); BatchNorm variances are set to 1.
  """
  rng = np.random.default_rng(seed)

  def leaf(path, s):
    if not jnp.issubdtype(s.dtype, jnp.floating):
      return jnp.zeros(s.shape, s.dtype)
    if 'var' in jax.tree_util.keystr(path):
      return jnp.ones(s.shape, s.dtype)
    return jnp.asarray(0.5 * rng.standard_normal(s.shape), s.dtype)

  return jax.tree_util.tree_map_with_path(leaf, shapes)


def tiny_game_and_state(loss_name):
  """A tiny_models game with DAT, float64 state, a real batch and the step's z."""
  z = tm.to_f64(normal(70, (8, tm.LATENT_DIM)))
  game, g_module, d_module = tm.make_game(
    loss_name, z=z, d_perturbation=dat.make_dat_perturbation()
  )
  state = tm.to_f64(filled_like(jax.eval_shape(lambda: tm.make_state(g_module, d_module)), 71))
  batch = {'image': uniform(72, (8, *tm.IMAGE_SHAPE))}
  return game, state, batch, z


def linear_fn(w, b=0.25):
  return lambda x: x.reshape(x.shape[0], -1) @ w + b


def linear_apply(variables, x, *, train, rngs=None):
  del train, rngs
  p = variables['params']
  return x.reshape(x.shape[0], -1) @ p['w'] + p['b'], {}


def mlp_params(seed, dim=DIM, hidden=5, skip=0.5):
  return {
    'W': normal(seed, (dim, hidden)) / np.sqrt(dim),
    'b': jnp.asarray(np.linspace(-0.3, 0.3, hidden)),
    'v': normal(seed + 1, (hidden,)),
    'a': skip * normal(seed + 2, (dim,)) / np.sqrt(dim),
    'c': jnp.asarray(0.1),
  }


def mlp_apply(variables, x, *, train, rngs=None):
  """A smooth per-sample D with a linear skip term."""
  del train, rngs
  p = variables['params']
  flat = x.reshape(x.shape[0], -1)
  return jnp.tanh(flat @ p['W'] + p['b']) @ p['v'] + flat @ p['a'] + p['c'], {}


def mlp_fn(params):
  return lambda x: mlp_apply({'params': params}, x, train=True)[0]


def normal_regime_batches(seed, w, b=8, spread=0.2, shift=0.3):
  """Real and fake batches in [-0.5, 0.5] with mean D(real) > mean D(fake) for D = w . x."""
  s = jnp.sign(w).reshape(SHAPE)
  real = shift * s + uniform(seed, (b, *SHAPE), -spread, spread)
  fake = -shift * s + uniform(seed + 1, (b, *SHAPE), -spread, spread)
  return real, fake


def flat(x):
  return x.reshape(x.shape[0], -1)


# ----------------------------------------------------------------------------
# The reference attack: closed forms for a linear D
# ----------------------------------------------------------------------------


def test_linear_d_closed_form_and_logit_shift():
  with jax.enable_x64(True):
    b = 8
    w = uniform(0, (DIM,), -3.0, 3.0)
    fn = linear_fn(w)
    real, fake = normal_regime_batches(1, w, b)
    assert jnp.mean(fn(real)) > jnp.mean(fn(fake))
    assert jnp.max(jnp.abs(w)) / b < 1.0  # the clip t = 1 is inactive

    real_adv, fake_adv = dat.reference_perturbation(fn, real, fake)
    step = (w / b).reshape(SHAPE)
    np.testing.assert_allclose(fake_adv, fake + step, rtol=0, atol=1e-15)
    np.testing.assert_allclose(real_adv, real - step, rtol=0, atol=1e-15)
    # Interior points: no clamping, so D moves by exactly ||w||^2 / B.
    sq = jnp.sum(w**2) / b
    np.testing.assert_allclose(fn(fake_adv) - fn(fake), jnp.full((b,), sq), rtol=1e-12)
    np.testing.assert_allclose(fn(real_adv) - fn(real), jnp.full((b,), -sq), rtol=1e-12)


def test_linear_d_fakes_clamped_to_range():
  with jax.enable_x64(True):
    b = 8
    w = uniform(2, (DIM,), -7.8, 7.8)
    fn = linear_fn(w)
    base = uniform(3, (b, *SHAPE), -1.0, 1.0)
    s = jnp.sign(w).reshape(SHAPE)
    fake = jnp.clip(base - 0.1 * s, -1, 1)
    real = jnp.clip(base[::-1] + 0.1 * s, -1, 1)
    assert jnp.mean(fn(real)) > jnp.mean(fn(fake))
    real_adv, fake_adv = dat.reference_perturbation(fn, real, fake)
    step = (w / b).reshape(SHAPE)
    np.testing.assert_allclose(fake_adv, jnp.clip(fake + step, -1, 1), rtol=0, atol=1e-15)
    assert jnp.any(fake + step > 1.0)  # the clamp was exercised
    np.testing.assert_allclose(real_adv, real - step, rtol=0, atol=1e-15)
    assert jnp.any(jnp.abs(real - step) > 1.0)  # reference base D: reals not clamped
    real_c, _ = dat.reference_perturbation(fn, real, fake, clamp_real=True)
    np.testing.assert_allclose(real_c, jnp.clip(real - step, -1, 1), rtol=0, atol=1e-15)


@pytest.mark.parametrize('t', [1.0, 0.3])
def test_clip_active_exactly_where_step_exceeds_t(t):
  with jax.enable_x64(True):
    b = 8
    w = jnp.array([20.0, -20.0, 4.0, -4.0, 1.0, -1.0, 12.0, -2.0, 0.0] * 2, jnp.float64)
    fn = linear_fn(w)
    real, fake = normal_regime_batches(4, w, b)
    cfg = dat.DATConfig(clip=t, clamp_fake=False)
    real_adv, fake_adv = dat.pgd_perturbation(fn, real, fake, cfg)
    raw = jnp.broadcast_to((w / b).reshape(SHAPE), real.shape)
    expected_step = jnp.clip(raw, -t, t)
    np.testing.assert_allclose(fake_adv - fake, expected_step, rtol=0, atol=1e-14)
    np.testing.assert_allclose(real_adv - real, -expected_step, rtol=0, atol=1e-14)
    active = jnp.abs(raw) > t
    assert jnp.any(active) and jnp.any(~active)
    np.testing.assert_array_equal(
      jnp.isclose(jnp.abs(fake_adv - fake), t, rtol=0, atol=1e-14), active
    )
    # The reference helper with the same t agrees (its fakes are clamped, interior here).
    ref_real, _ = dat.reference_perturbation(fn, real, fake, t=t)
    np.testing.assert_allclose(ref_real, real_adv, rtol=0, atol=0)


def test_sign_flip_when_fakes_score_higher():
  with jax.enable_x64(True):
    b = 8
    w = uniform(5, (DIM,), -3.0, 3.0)
    fn = linear_fn(w)
    high, low = normal_regime_batches(6, w, b)
    real, fake = low, high  # mean D(real) < mean D(fake)
    real_adv, fake_adv = dat.reference_perturbation(fn, real, fake)
    step = (w / b).reshape(SHAPE)
    np.testing.assert_allclose(fake_adv, jnp.clip(fake - step, -1, 1), rtol=0, atol=1e-15)
    np.testing.assert_allclose(real_adv, real + step, rtol=0, atol=1e-15)


def test_equal_means_give_no_perturbation_and_the_clean_loss():
  with jax.enable_x64(True):
    b = 8
    w = uniform(7, (DIM,), -3.0, 3.0)
    x = uniform(8, (b, *SHAPE), -1.0, 1.0)
    # Constant D: no gradient at all.
    real_adv, fake_adv = dat.reference_perturbation(linear_fn(jnp.zeros(DIM)), x, x[::-1] * 0.5)
    np.testing.assert_array_equal(real_adv, x)
    np.testing.assert_array_equal(fake_adv, x[::-1] * 0.5)
    # Non-constant D with equal class means (the same batch, so the two means are
    # bitwise equal; a permuted batch would differ in the last bit): abs'(0) = 0.
    real_adv, fake_adv = dat.reference_perturbation(linear_fn(w), x, x)
    np.testing.assert_array_equal(real_adv, x)
    np.testing.assert_array_equal(fake_adv, x)

    variables = {'params': {'w': w, 'b': jnp.asarray(0.1)}}
    loss = losses.get_loss('hinge')
    key = jax.random.PRNGKey(0)

    def dat_loss(params):
      return dat.dat_d_loss(linear_apply, {'params': params}, x, x, loss, key)[0]

    def clean_loss(params):
      v = {'params': params}
      return loss.d_loss(linear_apply(v, x, train=True)[0], linear_apply(v, x, train=True)[0])

    assert dat_loss(variables['params']) == clean_loss(variables['params'])
    chex.assert_trees_all_equal(
      jax.grad(dat_loss)(variables['params']), jax.grad(clean_loss)(variables['params'])
    )


# ----------------------------------------------------------------------------
# The D loss: gradients, loss increase, first-order penalty
# ----------------------------------------------------------------------------


def mlp_setup(b=8, seed=10):
  params = mlp_params(seed)
  s = jnp.sign(params['a']).reshape(SHAPE)  # the skip term orders the classes
  real = 0.4 * s + uniform(seed + 3, (b, *SHAPE), -0.3, 0.3)
  fake = -0.4 * s + uniform(seed + 4, (b, *SHAPE), -0.3, 0.3)
  return params, real, fake


@pytest.mark.parametrize('loss_name', ['hinge', 'ns'])
def test_no_second_order_gradient_through_the_attack(loss_name):
  with jax.enable_x64(True):
    params, real, fake = mlp_setup()
    loss = losses.get_loss(loss_name)
    key = jax.random.PRNGKey(0)
    real_adv, fake_adv = dat.reference_perturbation(mlp_fn(params), real, fake)
    assert not np.allclose(fake_adv, fake)

    def fixed(p):
      v = {'params': p}
      return loss.d_loss(
        mlp_apply(v, real_adv, train=True)[0], mlp_apply(v, fake_adv, train=True)[0]
      )

    def dat_loss(p):
      return dat.dat_d_loss(mlp_apply, {'params': p}, real, fake, loss, key)[0]

    np.testing.assert_allclose(dat_loss(params), fixed(params), rtol=1e-14)
    chex.assert_trees_all_close(
      jax.grad(dat_loss)(params), jax.grad(fixed)(params), rtol=1e-12, atol=1e-14
    )


@pytest.mark.parametrize('loss_name', ['hinge', 'ns'])
def test_attack_increases_d_loss(loss_name):
  with jax.enable_x64(True):
    params, real, fake = mlp_setup()
    fn = mlp_fn(params)
    assert jnp.mean(fn(real)) > jnp.mean(fn(fake))
    loss = losses.get_loss(loss_name)
    real_adv, fake_adv = dat.reference_perturbation(fn, real, fake)
    assert loss.d_loss(fn(real_adv), fn(fake_adv)) > loss.d_loss(fn(real), fn(fake))
    # Each class on its own moves towards the other.
    assert jnp.mean(fn(real_adv)) < jnp.mean(fn(real))
    assert jnp.mean(fn(fake_adv)) > jnp.mean(fn(fake))


def test_first_order_penalty_identity():
  """(L_DAT(kappa) - L) / kappa -> (1/B^2) sum |f_r'| ||grad D||^2 + f' ||grad D||^2."""
  with jax.enable_x64(True):
    b = 8
    params, real, fake = mlp_setup(b)
    fn = mlp_fn(params)
    loss = losses.get_loss('ns')
    single = lambda x: fn(x[None])[0]
    gr = jax.vmap(jax.grad(single))(real)
    gf = jax.vmap(jax.grad(single))(fake)
    q, p = fn(real), fn(fake)
    # ns: d_real = softplus(-q), |f_r'| = sigmoid(-q); d_fake = softplus(p), f' = sigmoid(p).
    penalty = (
      jnp.sum(jax.nn.sigmoid(-q) * jnp.sum(flat(gr) ** 2, 1))
      + jnp.sum(jax.nn.sigmoid(p) * jnp.sum(flat(gf) ** 2, 1))
    ) / b**2
    clean = loss.d_loss(q, p)
    key = jax.random.PRNGKey(0)
    for kappa in (1e-5, 1e-6):
      cfg = dat.DATConfig(step_size=kappa, clamp_fake=False)
      adv, _ = dat.dat_d_loss(mlp_apply, {'params': params}, real, fake, loss, key, cfg)
      np.testing.assert_allclose((adv - clean) / kappa, penalty, rtol=10 * kappa)


def test_mix_is_a_convex_combination_with_the_clean_loss():
  with jax.enable_x64(True):
    params, real, fake = mlp_setup()
    fn = mlp_fn(params)
    loss = losses.get_loss('hinge')
    real_adv, fake_adv = dat.reference_perturbation(fn, real, fake)
    key = jax.random.PRNGKey(0)

    def expected(p):
      f = mlp_fn(p)
      return 0.75 * loss.d_loss(f(real_adv), f(fake_adv)) + 0.25 * loss.d_loss(f(real), f(fake))

    def mixed(p):
      return dat.dat_d_loss(mlp_apply, {'params': p}, real, fake, loss, key, mix=0.25)[0]

    np.testing.assert_allclose(mixed(params), expected(params), rtol=1e-14)
    chex.assert_trees_all_close(
      jax.grad(mixed)(params), jax.grad(expected)(params), rtol=1e-12, atol=1e-14
    )


# ----------------------------------------------------------------------------
# G isolation
# ----------------------------------------------------------------------------


def toy_g(a, z):
  return jnp.tanh(z @ a).reshape(z.shape[0], *SHAPE)


def test_no_gradient_into_g_through_the_attack():
  with jax.enable_x64(True):
    b = 8
    params, real, _ = mlp_setup(b)
    fn = mlp_fn(params)
    a = normal(20, (4, DIM)) * 0.5
    z = normal(21, (b, 4))
    loss = losses.get_loss('ns')
    key = jax.random.PRNGKey(0)
    d_vars = {'params': params}

    # The attack output does not depend on G at all.
    grad_attack = jax.grad(lambda a: jnp.sum(dat.reference_perturbation(fn, real, toy_g(a, z))[1]))(
      a
    )
    np.testing.assert_array_equal(grad_attack, jnp.zeros_like(a))

    # Two-stage (reference): fakes detached, no gradient into G at all.
    g_two = jax.grad(lambda a: dat.dat_d_loss(mlp_apply, d_vars, real, toy_g(a, z), loss, key)[0])(
      a
    )
    np.testing.assert_array_equal(g_two, jnp.zeros_like(a))

    # detach_fake=False: the gradient is that of the loss at G(z) + delta, delta constant.
    fake0 = toy_g(a, z)
    real_adv, fake_adv = dat.reference_perturbation(fn, real, fake0)
    delta = fake_adv - fake0
    assert jnp.max(jnp.abs(delta)) > 0

    def with_constant_delta(a):
      return loss.d_loss(fn(real_adv), fn(toy_g(a, z) + delta))

    def one_stage(a):
      return dat.dat_d_loss(mlp_apply, d_vars, real, toy_g(a, z), loss, key, detach_fake=False)[0]

    chex.assert_trees_all_close(
      jax.grad(one_stage)(a), jax.grad(with_constant_delta)(a), rtol=1e-12, atol=1e-15
    )
    # ... and it differs from the gradient at the clean fakes.
    clean_grad = jax.grad(lambda a: loss.d_loss(fn(real_adv), fn(toy_g(a, z))))(a)
    assert not np.allclose(jax.grad(one_stage)(a), clean_grad, rtol=1e-6)


# ----------------------------------------------------------------------------
# Range, determinism, statistics
# ----------------------------------------------------------------------------


def test_outputs_stay_in_range():
  b = 8
  w = normal(30, (DIM,)) * 40.0  # big steps
  fn = linear_fn(w)
  real = uniform(31, (b, *SHAPE), -1, 1)
  fake = uniform(32, (b, *SHAPE), -1, 1)
  for r, f in ((real, fake), (fake, real)):
    r_adv, f_adv = dat.reference_perturbation(fn, r, f)
    assert jnp.all(jnp.abs(f_adv) <= 1.0)
    assert jnp.any(jnp.abs(r_adv) > 1.0)  # reference: reals unclamped
    r_adv, f_adv = dat.reference_perturbation(fn, r, f, clamp_real=True)
    assert jnp.all(jnp.abs(r_adv) <= 1.0) and jnp.all(jnp.abs(f_adv) <= 1.0)
  cfg = dat.DATConfig(clamp_real=True, value_range=(-0.5, 2.0), steps=3)
  r_adv, f_adv = dat.pgd_perturbation(fn, real, fake, cfg)
  for x in (r_adv, f_adv):
    assert jnp.all(x >= -0.5) and jnp.all(x <= 2.0)


def test_deterministic_pure_and_compiled_once():
  params, real, fake = mlp_setup()  # float32 outside enable_x64
  before = jax.tree.map(np.asarray, (params, real, fake))
  perturb = dat.make_dat_perturbation()

  @jax.jit
  @chex.assert_max_traces(n=1)
  def run(params, real, fake, key):
    return perturb(mlp_fn(params), real, fake, key)

  key = jax.random.PRNGKey(0)
  out1 = run(params, real, fake, key)
  out2 = run(params, real, fake, key)
  chex.assert_trees_all_equal(out1, out2)
  run(params, real * 0.9, fake, jax.random.PRNGKey(1))  # new values, no retrace
  chex.assert_trees_all_equal(jax.tree.map(np.asarray, (params, real, fake)), before)


def test_statistics_updated_only_by_the_final_forwards():
  d_module = tm.TinyBND()
  d_apply = make_apply(d_module)
  shapes = jax.eval_shape(
    lambda: d_module.init(jax.random.PRNGKey(0), jnp.zeros((2, *tm.IMAGE_SHAPE)), train=False)
  )
  variables = filled_like(shapes, 73)
  real = uniform(74, (8, *tm.IMAGE_SHAPE))
  fake = uniform(75, (8, *tm.IMAGE_SHAPE)) * 0.5
  loss = losses.get_loss('hinge')
  value, new_state = jax.jit(
    lambda v: dat.dat_d_loss(d_apply, v, real, fake, loss, jax.random.PRNGKey(0))
  )(variables)

  @jax.jit
  def expected(variables):
    frozen = lambda x: d_apply(variables, x, train=True)[0]  # batch stats, not stored
    real_adv, fake_adv = dat.reference_perturbation(frozen, real, fake)
    q, s1 = d_apply(variables, real_adv, train=True)
    p, s2 = d_apply({'params': variables['params'], **s1}, fake_adv, train=True)
    return real_adv, q, p, s2

  real_adv, q, p, s2 = expected(variables)
  assert not np.allclose(real_adv, real)
  chex.assert_trees_all_close(new_state, s2, rtol=1e-6)
  np.testing.assert_allclose(value, loss.d_loss(q, p), rtol=1e-6)
  # The running mean moved exactly twice (momentum 0.9): from the two final forwards only.
  old = variables['batch_stats']['BatchNorm_0']['mean']
  assert not np.allclose(new_state['batch_stats']['BatchNorm_0']['mean'], old)


# ----------------------------------------------------------------------------
# The generalized attack
# ----------------------------------------------------------------------------


def test_pgd_sign_steps_in_linf_ball():
  with jax.enable_x64(True):
    b = 8
    w = uniform(40, (DIM,), -3.0, 3.0)
    fn = linear_fn(w)
    real, fake = normal_regime_batches(41, w, b)
    s = jnp.sign(w).reshape(SHAPE)
    for steps, expected in ((2, 0.04), (5, 0.05)):  # min(steps * 0.02, epsilon)
      cfg = dat.DATConfig(steps=steps, step_size=0.02, step_rule='sign', epsilon=0.05)
      real_adv, fake_adv = dat.pgd_perturbation(fn, real, fake, cfg)
      np.testing.assert_allclose(
        fake_adv - fake, jnp.broadcast_to(expected * s, fake.shape), atol=1e-15
      )
      np.testing.assert_allclose(
        real_adv - real, jnp.broadcast_to(-expected * s, real.shape), atol=1e-15
      )


def test_pgd_raw_steps_projected_on_l2_ball_and_l2_rule():
  with jax.enable_x64(True):
    b = 8
    w = uniform(42, (DIM,), -3.0, 3.0)
    fn = linear_fn(w)
    real, fake = normal_regime_batches(43, w, b)
    unit = (w / jnp.linalg.norm(w)).reshape(SHAPE)
    cfg = dat.DATConfig(steps=3, clip=None, epsilon=0.1, norm='l2', clamp_fake=False)
    real_adv, fake_adv = dat.pgd_perturbation(fn, real, fake, cfg)
    assert 3 * jnp.linalg.norm(w) / b > 0.1  # the ball binds
    np.testing.assert_allclose(
      fake_adv - fake, jnp.broadcast_to(0.1 * unit, fake.shape), atol=1e-14
    )
    np.testing.assert_allclose(
      real_adv - real, jnp.broadcast_to(-0.1 * unit, real.shape), atol=1e-14
    )

    cfg = dat.DATConfig(step_size=0.07, step_rule='l2')
    real_adv, fake_adv = dat.pgd_perturbation(fn, real, fake, cfg)
    np.testing.assert_allclose(
      fake_adv - fake, jnp.broadcast_to(0.07 * unit, fake.shape), atol=1e-14
    )
    np.testing.assert_allclose(
      real_adv - real, jnp.broadcast_to(-0.07 * unit, real.shape), atol=1e-14
    )


def test_per_sample_objective_moves_each_sample_towards_the_target():
  with jax.enable_x64(True):
    b = 8
    w = uniform(44, (DIM,), -3.0, 3.0)
    fn = linear_fn(w)
    # Overlapping classes: some samples on each side of the other class's mean.
    real = uniform(45, (b, *SHAPE), -0.5, 0.5)
    fake = uniform(46, (b, *SHAPE), -0.5, 0.5)
    m_r, m_f = jnp.mean(fn(real)), jnp.mean(fn(fake))
    side_f = jnp.sign(fn(fake) - m_r)
    side_r = jnp.sign(fn(real) - m_f)
    assert jnp.any(side_f > 0) and jnp.any(side_f < 0)
    cfg = dat.DATConfig(step_size=0.01, reduction='per_sample')
    real_adv, fake_adv = dat.pgd_perturbation(fn, real, fake, cfg)
    step = 0.01 * w.reshape(SHAPE)  # per-sample: not divided by B
    np.testing.assert_allclose(fake_adv - fake, -side_f[:, None, None, None] * step, atol=1e-15)
    np.testing.assert_allclose(real_adv - real, -side_r[:, None, None, None] * step, atol=1e-15)


@pytest.mark.parametrize('norm', ['linf', 'l2'])
def test_random_start_in_ball_and_key_dependent(norm):
  b, eps = 8, 0.1
  fn = linear_fn(jnp.zeros(DIM))  # no gradient: the output is the start point
  real = uniform(50, (b, *SHAPE), -0.5, 0.5)
  fake = real[::-1]
  perturb = jax.jit(
    lambda key: dat.make_dat_perturbation(epsilon=eps, norm=norm, random_start=True, steps=2)(
      fn, real, fake, key
    )
  )  # one compile: the threefry kernels are slow to compile on CPU
  r1, f1 = perturb(jax.random.PRNGKey(1))
  r2, f2 = perturb(jax.random.PRNGKey(1))
  r3, _ = perturb(jax.random.PRNGKey(2))
  chex.assert_trees_all_equal((r1, f1), (r2, f2))
  assert not np.allclose(r1, r3)
  for d in (r1 - real, f1 - fake):
    assert jnp.min(jnp.max(jnp.abs(flat(d)), 1)) > 0
    size = jnp.max(jnp.abs(flat(d)), 1) if norm == 'linf' else jnp.linalg.norm(flat(d), axis=1)
    assert jnp.all(size <= eps * (1 + 1e-6))


# ----------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
  'kwargs, match',
  [
    ({'steps': 0}, 'steps must be a positive int'),
    ({'steps': 1.5}, 'steps must be a positive int'),
    ({'step_size': 0.0}, 'step_size must be a positive'),
    ({'clip': -1.0}, 'clip must be positive'),
    ({'step_rule': 'fgsm'}, 'unknown DAT step_rule'),
    ({'norm': 'l1'}, 'unknown DAT norm'),
    ({'epsilon': 0.0}, 'epsilon must be positive'),
    ({'random_start': True}, 'needs a ball'),
    ({'reduction': 'sum'}, 'unknown DAT reduction'),
    ({'value_range': (1.0, -1.0)}, 'low < high'),
  ],
)
def test_bad_config_raises(kwargs, match):
  with pytest.raises(ValueError, match=match):
    dat.DATConfig(**kwargs)
  with pytest.raises(ValueError, match=match):
    dat.make_dat_perturbation(**kwargs)


def test_config_accepts_numpy_scalars():
  cfg = dat.DATConfig(steps=np.int64(2), step_size=np.float32(0.5), epsilon=np.float64(0.1))
  assert cfg.steps == 2 and cfg.step_size == 0.5


def test_bad_inputs_raise():
  x = jnp.zeros((4, *SHAPE))
  with pytest.raises(ValueError, match=r'logits of shape \[B\]'):
    dat.reference_perturbation(lambda u: flat(u)[:, :1], x, x)
  with pytest.raises(ValueError, match='float batch'):
    dat.reference_perturbation(linear_fn(jnp.ones(DIM)), x.astype(jnp.int32), x)
  with pytest.raises(ValueError, match='either a DATConfig or keyword'):
    dat.make_dat_perturbation(dat.DATConfig(), steps=2)
  with pytest.raises(ValueError, match='needs a PRNG key'):
    dat.pgd_perturbation(
      linear_fn(jnp.ones(DIM)), x, x, dat.DATConfig(epsilon=0.1, random_start=True)
    )
  variables = {'params': {'w': jnp.ones(DIM), 'b': jnp.zeros(())}}
  hinge = losses.get_loss('hinge')
  with pytest.raises(ValueError, match=r'mix must be a number in \[0, 1\]'):
    dat.dat_d_loss(linear_apply, variables, x, x, hinge, jax.random.PRNGKey(0), mix=1.5)
  with pytest.raises(ValueError, match="must be {'params'"):
    dat.dat_d_loss(linear_apply, variables['params'], x, x, hinge, jax.random.PRNGKey(0))


# ----------------------------------------------------------------------------
# Lipschitz monitor
# ----------------------------------------------------------------------------


def test_monitor_linear_and_quadratic_d():
  with jax.enable_x64(True):
    b = 8
    w = normal(60, (DIM,))
    real = uniform(61, (b, *SHAPE), -1, 1)
    fake = uniform(62, (b, *SHAPE), -1, 1)
    key = jax.random.PRNGKey(63)
    out = lipschitz.input_gradient_norms(linear_fn(w), real, fake, key)
    assert sorted(out) == sorted(
      f'lipschitz/{p}_{s}' for p in ('real', 'fake', 'interp') for s in ('mean', 'max')
    )
    for v in out.values():
      np.testing.assert_allclose(v, jnp.linalg.norm(w), rtol=1e-12)

    c = 1.7  # D(x) = c/2 ||x||^2: grad = c x
    quad = lambda x: 0.5 * c * jnp.sum(flat(x) ** 2, 1)
    out = jax.jit(lambda r, f, k: lipschitz.input_gradient_norms(quad, r, f, k, prefix='lip'))(
      real, fake, key
    )
    eps = jax.random.uniform(key, (b, 1, 1, 1), jnp.float64)
    for name, x in (('real', real), ('fake', fake), ('interp', eps * real + (1 - eps) * fake)):
      norms = c * jnp.linalg.norm(flat(x), axis=1)
      np.testing.assert_allclose(out[f'lip/{name}_mean'], jnp.mean(norms), rtol=1e-12)
      np.testing.assert_allclose(out[f'lip/{name}_max'], jnp.max(norms), rtol=1e-12)


def test_monitor_per_sample_norms_match_single_sample_gradients():
  with jax.enable_x64(True):
    params, real, _ = mlp_setup()
    fn = mlp_fn(params)
    single = jax.vmap(jax.grad(lambda x: fn(x[None])[0]))(real)
    np.testing.assert_allclose(
      lipschitz.per_sample_input_gradient_norms(fn, real),
      jnp.linalg.norm(flat(single), axis=1),
      rtol=1e-12,
    )
  with pytest.raises(ValueError, match='same shape'):
    lipschitz.input_gradient_norms(fn, real, real[:3], jax.random.PRNGKey(0))


# ----------------------------------------------------------------------------
# Through the step builders (Game.d_perturbation hook)
# ----------------------------------------------------------------------------


def test_two_stage_step_d_gradient_equals_dat_d_loss():
  with jax.enable_x64(True):
    game, state, batch, z = tiny_game_and_state('hinge')
    step = two_stage_step(game, optax.identity(), optax.identity())
    new_state, _ = jax.jit(step)(state, batch)
    got = tm.grads_from_identity_update(state.d.params, new_state.d.params)

    fake = game.g_apply(state.g.variables, z, train=True)[0]
    real = batch['image']
    d_ms = state.d.model_state

    @jax.jit
    def reference_grads(params):
      def dat_loss(p):
        v = {'params': p, **d_ms}
        return dat.dat_d_loss(game.d_apply, v, real, fake, game.loss, jax.random.PRNGKey(0))[0]

      def clean_loss(p):
        v = {'params': p, **d_ms}
        return game.loss.d_loss(
          game.d_apply(v, real, train=True)[0], game.d_apply(v, fake, train=True)[0]
        )

      return jax.grad(dat_loss)(params), jax.grad(clean_loss)(params)

    want, clean = reference_grads(state.d.params)
    chex.assert_trees_all_close(got, want, rtol=1e-10, atol=1e-13)
    # DAT changed D's gradient.
    assert not np.allclose(jax.tree.leaves(got)[0], jax.tree.leaves(clean)[0], rtol=1e-6)


def test_one_stage_g_gets_its_clean_gradient_under_dat():
  """The perturbation acts on D's gradient only: G's is that of mean g(D(G(z))), not of g(D(G(z) + delta))."""
  with jax.enable_x64(True):
    game, state, batch, z = tiny_game_and_state('ns')

    @jax.jit
    def reference(g_params, d_vars, real):
      frozen = lambda x: game.d_apply(d_vars, x, train=True)[0]
      g_out = lambda p: game.g_apply({'params': p, **state.g.model_state}, z, train=True)[0]
      fake0 = g_out(g_params)
      _, fake_adv = dat.reference_perturbation(frozen, real, fake0)
      delta = fake_adv - fake0
      perturbed = jax.grad(lambda p: game.loss.g_loss(frozen(g_out(p) + delta)))(g_params)
      clean = jax.grad(lambda p: game.loss.g_loss(frozen(g_out(p))))(g_params)
      return perturbed, clean

    perturbed, want = reference(state.g.params, state.d.variables, batch['image'])
    assert not np.allclose(jax.tree.leaves(perturbed)[0], jax.tree.leaves(want)[0], rtol=1e-6)
    for mode in ('asymmetric', 'exact'):
      step = one_stage_step(game, optax.identity(), optax.identity(), mode=mode)
      new_state, _ = jax.jit(step)(state, batch)
      got = tm.grads_from_identity_update(state.g.params, new_state.g.params)
      chex.assert_trees_all_close(got, want, rtol=1e-9, atol=1e-13)
