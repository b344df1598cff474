"""CoopInit: Langevin chain, EBM and teaching losses, the cooperative step, the phase switch.

Compilation dominates the cost here, so each test compiles one or two programs
and does its reference arithmetic in numpy (inputs come from numpy RNGs).
"""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tiny_models as tm

from jaxgan import coopinit
from jaxgan.coopinit import LangevinConfig
from jaxgan.steps import two_stage_step

RNG = np.random.default_rng(0)
Z64 = RNG.normal(size=(8, tm.LATENT_DIM))
REAL64 = RNG.uniform(-1, 1, size=(8, *tm.IMAGE_SHAPE))


class LinearD(nn.Module):
  """f(x) = <w, x> + b: grad_x f = w everywhere, grad_w f = x."""

  @nn.compact
  def __call__(self, x, train: bool):
    return nn.Dense(1)(x.reshape(x.shape[0], -1))[:, 0]


def quadratic(mu):
  """Stub D: f(x) = -||x - mu||^2 / 2 per sample."""
  return lambda x: -0.5 * jnp.sum(jnp.square(x - mu), axis=tuple(range(1, x.ndim)))


D_MODULES = {'tiny': tm.TinyD, 'linear': LinearD, 'bn': tm.TinyBND}


@functools.cache
def _f64_setup(d_kind):
  with jax.enable_x64(True):
    game, g_mod, d_mod = tm.make_game('ns', d_module=D_MODULES[d_kind](), z=Z64)
    build = lambda: tm.to_f64(coopinit.with_coop_state(tm.make_state(g_mod, d_mod)))
    return game, jax.device_get(jax.jit(build)())


def f64_setup(d_kind='tiny', *, g_tx=None, d_tx=None):
  """(game, float64 state with the CoopInit entry, as numpy), built once per D kind.

  ``g_tx``/``d_tx`` replace the identity optimizer states (only stateless
  ones are used here). The game samples the fixed latents ``Z64``.
  """
  game, state = _f64_setup(d_kind)
  if g_tx is not None:
    state = state.replace(g=state.g.replace(opt_state=g_tx.init(state.g.params)))
  if d_tx is not None:
    state = state.replace(d=state.d.replace(opt_state=d_tx.init(state.d.params)))
  return game, state


def g_apply(game, g_params, state, z):
  return game.g_apply({'params': g_params, **state.g.model_state}, z, train=True)[0]


def d_apply(game, d_params, x):
  return game.d_apply({'params': d_params}, x, train=True)[0]


def run64(fn, *args):
  """``jit(fn)(*args)`` in float64, fetched to numpy (so later arithmetic stays float64)."""
  with jax.enable_x64(True):
    return jax.device_get(jax.jit(fn)(*args))


def tree_sub(a, b):
  return jax.tree.map(lambda u, v: np.asarray(u) - np.asarray(v), a, b)


# ----------------------------------------------------------------------------
# Langevin
# ----------------------------------------------------------------------------


def test_one_langevin_step_matches_closed_form():
  """x' = x + (d^2/2)(mu - x) and, with the reference s, x' = x + (d^2/2)(mu - x - x/s^2)."""
  x = RNG.normal(size=(3, 2, 2, 1))
  mu = np.linspace(-1.0, 1.0, 4).reshape(1, 2, 2, 1)
  delta, s = 0.4, 0.5
  kw = dict(n_steps=1, step_size=delta, noise_scale=0.0, clip=None)
  plain, ref = run64(
    lambda x: (
      coopinit.langevin_revise(quadratic(mu), x, None, **kw),
      coopinit.langevin_revise(quadratic(mu), x, None, ref_sigma=s, **kw),
    ),
    x,
  )
  np.testing.assert_allclose(plain, x + 0.5 * delta**2 * (mu - x), rtol=1e-14, atol=1e-15)
  np.testing.assert_allclose(ref, x + 0.5 * delta**2 * (mu - x - x / s**2), rtol=1e-14, atol=1e-15)


def test_noise_is_sigma_times_the_chain_normals():
  """With a flat f the chain is x0 + sigma * sum_k eps_k, eps_k from split(key, K)."""
  x0 = RNG.normal(size=(4, 2, 2, 1))
  flat = lambda x: jnp.zeros(x.shape[0], x.dtype)

  def chains(x0, seed):
    key = jax.random.PRNGKey(seed)
    eps = sum(jax.random.normal(k, x0.shape, x0.dtype) for k in jax.random.split(key, 3))
    explicit = coopinit.langevin_revise(
      flat, x0, key, n_steps=3, step_size=0.2, noise_scale=0.7, clip=None
    )
    default = coopinit.langevin_revise(flat, x0, key, n_steps=3, step_size=0.2, clip=None)
    return eps, explicit, default

  eps, explicit, default = run64(chains, x0, 5)
  assert float(np.std(eps)) > 0.5
  np.testing.assert_allclose(explicit, x0 + 0.7 * eps, rtol=1e-13, atol=1e-13)
  # noise_scale=None means sigma = step_size (exact Langevin).
  np.testing.assert_allclose(default, x0 + 0.2 * eps, rtol=1e-13, atol=1e-13)


def test_zero_step_and_zero_noise_is_the_identity():
  game, state = f64_setup()
  x0 = RNG.uniform(-0.9, 0.9, size=(5, 2, 2, 1))

  def chains(d_vars, x0):
    f = coopinit.energy_fn(game, d_vars)
    out = []
    for clip in (None, (-1.0, 1.0)):
      out += [
        coopinit.langevin_revise(f, x0, None, n_steps=7, step_size=0.0, noise_scale=0.0, clip=clip),
        coopinit.langevin_revise(f, x0, jax.random.PRNGKey(0), n_steps=0, step_size=5.0, clip=clip),
        coopinit.langevin_revise(f, x0, None, n_steps=2, step_size=0.5, noise_scale=0.0, clip=clip),
      ]
    return out

  out = run64(chains, state.d.variables, x0)
  for still, no_steps, moved in (out[:3], out[3:]):
    np.testing.assert_array_equal(still, x0)
    np.testing.assert_array_equal(no_steps, x0)
    # A real step does move the samples (the identity above is not vacuous).
    assert float(np.max(np.abs(moved - x0))) > 1e-4


def test_unroll_does_not_change_the_chain():
  """Whole, blockwise (7 = 3 + 3 + 1) and plain-loop chains draw the same noise and agree."""
  x0 = RNG.uniform(-0.9, 0.9, size=(3, 2, 2, 1))

  def chains(x0):
    kw = dict(n_steps=7, step_size=0.3, key=jax.random.PRNGKey(3))
    return [coopinit.langevin_revise(quadratic(0.2), x0, unroll=u, **kw) for u in (32, 3, 1)]

  whole, blocks, loop = run64(chains, x0)
  np.testing.assert_allclose(blocks, whole, rtol=1e-12, atol=1e-14)
  np.testing.assert_allclose(loop, whole, rtol=1e-12, atol=1e-14)
  assert float(np.max(np.abs(whole - x0))) > 1e-2


def test_clip_applies_after_every_step():
  mu = np.full((1, 2, 2, 1), 5.0)
  x = np.zeros((2, 2, 2, 1))
  delta, x_ref = 0.8, x
  for _ in range(3):
    x_ref = np.clip(x_ref + 0.5 * delta**2 * (mu - x_ref), -0.5, 0.7)
  out = run64(
    lambda x: coopinit.langevin_revise(
      quadratic(mu), x, None, n_steps=3, step_size=delta, noise_scale=0.0, clip=(-0.5, 0.7)
    ),
    x,
  )
  np.testing.assert_allclose(out, x_ref, rtol=1e-14)
  assert float(np.max(out)) == 0.7  # the bound was hit


def test_no_gradient_flows_through_the_chain():
  x0 = RNG.normal(size=(3, 2, 2, 1))

  def end(x0, mu):
    return jnp.sum(
      coopinit.langevin_revise(
        quadratic(mu), x0, jax.random.PRNGKey(1), n_steps=3, step_size=0.5, clip=None
      )
    )

  gx, gmu = run64(jax.grad(end, argnums=(0, 1)), x0, 0.3)
  np.testing.assert_array_equal(gx, np.zeros_like(x0))
  assert float(gmu) == 0.0


def test_langevin_stationary_law():
  """f = -||x - mu||^2/2 (+ reference s): the chains' law tends to N(mu/P, 1/P), P = 1 + 1/s^2."""
  mu = np.array([0.5, -0.3], np.float32)
  x0 = np.zeros((10_000, 2), np.float32)
  delta, s = 0.1, 1.5

  @jax.jit
  def chains(x0, seed):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    kw = dict(n_steps=2000, step_size=delta, clip=None)
    return (
      coopinit.langevin_revise(quadratic(mu), x0, k1, **kw),
      coopinit.langevin_revise(quadratic(mu), x0, k2, ref_sigma=s, **kw),
    )

  for out, prec in zip(chains(x0, 0), (1.0, 1.0 + 1.0 / s**2)):
    h = 0.5 * delta**2 * prec  # unadjusted Langevin inflates the variance by 1 / (1 - h/2)
    np.testing.assert_allclose(out.mean(0), mu / prec, atol=0.03)
    np.testing.assert_allclose(out.var(0), 1.0 / prec / (1 - h / 2), rtol=0.05)


def test_chain_is_deterministic_per_key_under_jit():
  game, state = f64_setup()
  x0 = RNG.uniform(-0.5, 0.5, size=(4, 2, 2, 1)).astype(np.float32)
  d_vars = jax.tree.map(lambda a: np.asarray(a, np.float32), state.d.variables)

  @jax.jit
  def run(seed):
    f = coopinit.energy_fn(game, d_vars)
    key = jax.random.PRNGKey(seed)
    noisy = coopinit.langevin_revise(f, x0, key, n_steps=5, step_size=0.3)
    quiet = coopinit.langevin_revise(f, x0, key, n_steps=5, step_size=0.3, noise_scale=0.0)
    return noisy, quiet

  (a, qa), (b, _), (c, qc) = run(1), run(1), run(2)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  np.testing.assert_array_equal(qa, qc)


def test_eval_statistics_make_the_chain_per_sample():
  """With a BatchNorm D, 'eval' revises each sample as if it were alone; 'batch' couples them."""
  game, state = f64_setup('bn')
  ms = jax.tree.map(lambda a: a + 0.3, state.d.model_state)  # non-trivial running statistics
  d_vars = {'params': state.d.params, **ms}
  x0 = RNG.uniform(-0.5, 0.5, size=(4, 2, 2, 1))
  kw = dict(n_steps=3, step_size=0.7, noise_scale=0.0, clip=None)

  def chains(d_vars, x0):
    f = coopinit.energy_fn(game, d_vars, 'eval')
    fb = coopinit.energy_fn(game, d_vars, 'batch')
    together = coopinit.langevin_revise(f, x0, None, **kw)
    alone = jnp.concatenate(
      [coopinit.langevin_revise(f, x0[i : i + 1], None, **kw) for i in range(4)]
    )
    return together, alone, coopinit.langevin_revise(fb, x0, None, **kw)

  together, alone, coupled = run64(chains, d_vars, x0)
  np.testing.assert_allclose(together, alone, rtol=1e-13)
  assert float(np.max(np.abs(together - x0))) > 1e-3
  assert not np.allclose(coupled, alone, rtol=1e-6)


# ----------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------


def test_ebm_loss_is_difference_of_means():
  q = np.array([1.0, 2.0, 6.0])
  p = np.array([-1.0, 3.0])
  assert float(coopinit.ebm_d_loss(q, p)) == pytest.approx(1.0 - 3.0)
  with pytest.raises(ValueError, match='per-sample logits'):
    coopinit.ebm_d_loss(q[:, None], p)


def test_teaching_loss_scale_and_zero_gradient_at_the_target():
  fake = RNG.normal(size=(3, 2, 2, 1))
  c = np.array([0.1, -0.2, 0.3, 0.5]).reshape(1, 2, 2, 1)
  sigma = 0.3

  def values(fake, target):
    return (
      coopinit.teaching_g_loss(fake, target, sigma=sigma),
      coopinit.teaching_g_loss(fake, target, sigma=sigma, reduction='mean'),
      jax.grad(coopinit.teaching_g_loss)(fake, fake),
      jax.grad(lambda t: coopinit.teaching_g_loss(fake, t))(target),
      jax.grad(coopinit.teaching_g_loss)(fake, target),
    )

  loss, mean_loss, grad_same, grad_target, grad_shift = run64(values, fake, fake + c)
  assert float(loss) == pytest.approx(float(np.sum(c**2)) / (2 * sigma**2), rel=1e-12)
  assert float(mean_loss) == pytest.approx(float(loss) / 4, rel=1e-12)
  np.testing.assert_array_equal(grad_same, np.zeros_like(fake))
  np.testing.assert_array_equal(grad_target, np.zeros_like(fake))  # the target carries no gradient
  np.testing.assert_allclose(
    grad_shift, -np.broadcast_to(c, fake.shape) / (sigma**2 * 3), rtol=1e-12
  )


def test_teaching_gradient_for_a_shifted_target_matches_finite_differences():
  game, state = f64_setup()
  direction = jax.tree.map(lambda a: RNG.normal(size=a.shape), state.g.params)
  eps = 1e-6

  def check(g_params):
    target = g_apply(game, g_params, state, Z64) + 0.25
    loss = lambda gp: coopinit.teaching_g_loss(g_apply(game, gp, state, Z64), target)
    shift = lambda s: jax.tree.map(lambda p, d: p + s * eps * d, g_params, direction)
    grad = jax.grad(loss)(g_params)
    analytic = sum(
      jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(direction))
    )
    return (loss(shift(1)) - loss(shift(-1))) / (2 * eps), analytic

  fd, analytic = run64(check, state.g.params)
  assert float(fd) == pytest.approx(float(analytic), rel=1e-7)
  assert abs(float(analytic)) > 1e-3


# ----------------------------------------------------------------------------
# The cooperative step
# ----------------------------------------------------------------------------


def test_coop_step_gradients_with_a_linear_d():
  """x_tilde = G(z) + K d^2/2 w; grad_w = mean x_tilde - mean x; grad_b = 0; G regresses on x_tilde."""
  game, state = f64_setup('linear')
  k, delta, sigma, lam = 4, 0.3, 0.3, 0.7
  steps = [
    coopinit.coop_step(
      game,
      optax.identity(),
      optax.identity(),
      langevin=LangevinConfig(step_size=delta, n_steps=k, noise_scale=0.0, clip=None),
      teach_sigma=sigma,
      logit_penalty=penalty,
    )
    for penalty in (0.0, lam)
  ]
  w = np.asarray(state.d.params['Dense_0']['kernel'][:, 0])
  b = float(state.d.params['Dense_0']['bias'][0])
  shift = (k * 0.5 * delta**2 * w).reshape(1, 2, 2, 1)

  def reference(g_params):
    x_hat = g_apply(game, g_params, state, Z64)
    x_tilde = x_hat + shift
    teach = lambda gp: (
      0.5
      / sigma**2
      * jnp.mean(jnp.sum(jnp.square(x_tilde - g_apply(game, gp, state, Z64)), axis=(1, 2, 3)))
    )
    return x_hat, jax.grad(teach)(g_params)

  (new, metrics), (new_pen, metrics_pen) = run64(
    lambda s, b: [step(s, b) for step in steps], state, {'image': REAL64}
  )
  x_hat, ref_g = run64(reference, state.g.params)
  d_grads = tree_sub(new.d.params, state.d.params)
  g_grads = tree_sub(new.g.params, state.g.params)
  x_tilde = x_hat + shift
  flat = lambda x: x.reshape(x.shape[0], -1)
  np.testing.assert_allclose(
    d_grads['Dense_0']['kernel'][:, 0],
    flat(x_tilde).mean(0) - flat(REAL64).mean(0),
    rtol=1e-12,
    atol=1e-14,
  )
  np.testing.assert_allclose(d_grads['Dense_0']['bias'], 0.0, atol=1e-14)
  chex.assert_trees_all_close(g_grads, ref_g, rtol=1e-11, atol=1e-14)
  f = lambda x: flat(x) @ w + b
  expected = {
    'coop/revision_dist': k * 0.5 * delta**2 * np.linalg.norm(w),
    'coop/f_init': f(x_hat).mean(),
    'coop/f_revised': f(x_tilde).mean(),
    'd_real': f(REAL64).mean(),
    'd_fake': f(x_tilde).mean(),
    'coop/ebm_loss': f(x_tilde).mean() - f(REAL64).mean(),
    'coop/teach_loss': np.sum(shift**2) / (2 * sigma**2),
    'coop/d_reg': 0.0,
  }
  assert set(metrics) == set(expected)
  for name, value in expected.items():
    assert float(metrics[name]) == pytest.approx(float(value), rel=1e-12, abs=1e-15), name
  assert int(new.step) == 1
  # With the logit penalty lam (mean f(x)^2 + mean f(x_tilde)^2), by hand.
  q, p = f(REAL64), f(x_tilde)
  pen_w = lam * (2 * (q[:, None] * flat(REAL64)).mean(0) + 2 * (p[:, None] * flat(x_tilde)).mean(0))
  pen_grads = tree_sub(new_pen.d.params, state.d.params)['Dense_0']
  np.testing.assert_allclose(
    pen_grads['kernel'][:, 0], d_grads['Dense_0']['kernel'][:, 0] + pen_w, rtol=1e-12
  )
  np.testing.assert_allclose(pen_grads['bias'], lam * (2 * q.mean() + 2 * p.mean()), rtol=1e-12)
  pen_reg = lam * (np.mean(q**2) + np.mean(p**2))
  assert float(metrics_pen['coop/d_reg']) == pytest.approx(pen_reg, rel=1e-12)
  chex.assert_trees_all_equal(new_pen.g.params, new.g.params)


def test_teaching_gradient_is_zero_without_revision():
  """K = 0, or K > 0 with zero step and noise: x_tilde = G(z), so G's gradient is exactly 0."""
  game, state = f64_setup()
  steps = [
    coopinit.coop_step(
      game,
      optax.identity(),
      optax.identity(),
      langevin=LangevinConfig(step_size=0.0, n_steps=n, noise_scale=0.0),
    )
    for n in (0, 3)
  ]
  outs = run64(lambda s, b: [st(s, b) for st in steps], state, {'image': REAL64})
  for new, metrics in outs:
    g_grads = tree_sub(new.g.params, state.g.params)
    chex.assert_trees_all_equal(g_grads, jax.tree.map(np.zeros_like, g_grads))
    assert float(metrics['coop/teach_loss']) == 0.0
    assert float(metrics['coop/revision_dist']) == 0.0
    assert np.abs(tree_sub(new.d.params, state.d.params)['Dense_1']['kernel']).max() > 1e-6


def test_ebm_step_raises_real_logits_above_revised_ones():
  """One SGD step on the EBM loss, samples fixed: mean D(real) - mean D(x_tilde) grows."""
  sgd = optax.sgd(0.05)
  game, state = f64_setup(d_tx=sgd)
  step = coopinit.coop_step(
    game, optax.identity(), sgd, langevin=LangevinConfig(step_size=0.0, n_steps=0)
  )

  def gaps(state):
    new, _ = step(state, {'image': REAL64})
    x_tilde = g_apply(game, state.g.params, state, Z64)
    gap = lambda dp: jnp.mean(d_apply(game, dp, REAL64)) - jnp.mean(d_apply(game, dp, x_tilde))
    return gap(state.d.params), gap(new.d.params)

  before, after = run64(gaps, state)
  assert float(after) > float(before) + 1e-4


def test_d_statistics_change_only_in_the_loss_forward():
  """BatchNorm D, K = 3 chain steps: the stored statistics are those of D(real) then D(x_tilde)."""
  game, state = f64_setup('bn')
  step = coopinit.coop_step(
    game,
    optax.identity(),
    optax.identity(),
    langevin=LangevinConfig(step_size=0.0, n_steps=3, noise_scale=0.0),
  )

  def both(state):
    new, _ = step(state, {'image': REAL64})
    x_tilde = g_apply(game, state.g.params, state, Z64)
    _, ms = game.d_apply(state.d.variables, REAL64, train=True)
    _, ms = game.d_apply({'params': state.d.params, **ms}, x_tilde, train=True)
    return new.d.model_state, ms

  got, expected = run64(both, state)
  chex.assert_trees_all_close(got, expected, rtol=1e-13)
  moved = tree_sub(got, state.d.model_state)['batch_stats']['BatchNorm_0']['mean']
  assert np.abs(moved).max() > 1e-4


def test_coop_step_updates_the_ema():
  sgd = optax.sgd(0.1)
  game, state = f64_setup(g_tx=sgd)
  ema0 = jax.tree.map(lambda a: a + 1.0, state.g.params)
  state = state.replace(ema_params=ema0)
  step = coopinit.coop_step(
    game,
    sgd,
    optax.identity(),
    langevin=LangevinConfig(step_size=0.5, noise_scale=0.0),
    ema_decay=0.9,
  )
  new, _ = run64(step, state, {'image': REAL64})
  assert np.abs(tree_sub(new.g.params, state.g.params)['Dense_0']['kernel']).max() > 1e-6
  expected = jax.tree.map(lambda e, p: 0.9 * e + 0.1 * p, ema0, new.g.params)
  chex.assert_trees_all_close(new.ema_params, expected, rtol=1e-13)


def test_axis_name_averages_gradients_and_metrics():
  """Two shards under vmap(axis_name): params and metrics are the mean of the per-shard steps."""
  game, state = f64_setup()
  reals = np.stack([REAL64, -REAL64[::-1]])
  kw = dict(langevin=LangevinConfig(step_size=0.4, n_steps=2, noise_scale=0.0))
  single = coopinit.coop_step(game, optax.identity(), optax.identity(), **kw)
  shard = coopinit.coop_step(game, optax.identity(), optax.identity(), axis_name='data', **kw)

  def both(state):
    sharded = jax.vmap(shard, in_axes=(None, 0), axis_name='data')(state, {'image': reals})
    return sharded, [single(state, {'image': r}) for r in reals]

  (new, metrics), outs = run64(both, state)
  for name in ('d', 'g'):
    per_shard = [getattr(o[0], name).params for o in outs]
    expected = jax.tree.map(lambda a, b: (a + b) / 2, *per_shard)
    for i in range(2):
      chex.assert_trees_all_close(
        jax.tree.map(lambda a, i=i: a[i], getattr(new, name).params), expected, rtol=1e-12
      )
    if name == 'd':  # the shards see different data (G's targets depend only on z and D)
      assert not np.allclose(per_shard[0]['Dense_0']['kernel'], per_shard[1]['Dense_0']['kernel'])
  for k in metrics:
    assert float(metrics[k][1]) == pytest.approx(
      (float(outs[0][1][k]) + float(outs[1][1][k])) / 2, rel=1e-12, abs=1e-15
    )


def test_coop_step_rejects_bad_settings():
  game, _, _ = tm.make_game('ns', d_module=tm.TinyD(coupled=True), d_batch_coupled=True, z=Z64)
  cfg = LangevinConfig(step_size=0.1)
  ident = optax.identity()
  with pytest.raises(ValueError, match="langevin_stats='eval'"):
    coopinit.coop_step(game, ident, ident, langevin=cfg, langevin_stats='batch')
  with pytest.raises(ValueError, match='LangevinConfig'):
    coopinit.coop_step(game, ident, ident, langevin={'step_size': 0.1})
  with pytest.raises(ValueError, match='teaching sigma'):
    coopinit.coop_step(game, ident, ident, langevin=cfg, teach_sigma=0.0)
  with pytest.raises(ValueError, match='reduction'):
    coopinit.coop_step(game, ident, ident, langevin=cfg, teach_reduction='none')
  with pytest.raises(ValueError, match='langevin_stats'):
    coopinit.coop_step(game, ident, ident, langevin=cfg, langevin_stats='train')
  with pytest.raises(ValueError, match='logit_penalty'):
    coopinit.coop_step(game, ident, ident, langevin=cfg, logit_penalty=-1.0)
  with pytest.raises(ValueError, match='n_dis'):
    coopinit.coop_step(game, ident, ident, langevin=cfg, n_dis=0)
  bad_configs = (
    dict(step_size=-1.0),
    dict(step_size=0.1, n_steps=-1),
    dict(step_size=0.1, n_steps=2.0),
    dict(step_size=0.1, noise_scale=-0.1),
    dict(step_size=0.1, ref_sigma=0.0),
    dict(step_size=0.1, clip=(1.0, -1.0)),
    dict(step_size=float('nan')),
  )
  for bad in bad_configs:
    with pytest.raises(ValueError, match='Langevin'):
      LangevinConfig(**bad)
  with pytest.raises(ValueError, match='PRNG key'):
    coopinit.langevin_revise(quadratic(0.0), np.zeros((2, 3)), None, n_steps=2, step_size=0.1)
  for bad_unroll in (0, True, 2.0):
    with pytest.raises(ValueError, match='unroll'):
      coopinit.langevin_revise(
        quadratic(0.0), np.zeros((2, 3)), None, n_steps=2, step_size=0.1, unroll=bad_unroll
      )


# ----------------------------------------------------------------------------
# The switch
# ----------------------------------------------------------------------------

T_INIT = 3
ADAM = optax.adam(1e-2, b1=0.5)


@functools.cache
def phase_setup():
  """One G/D pair and one coop/adversarial step pair for all switch tests.

  The steps are shared, so each compiles once for the module; they are wrapped
  in ``assert_max_traces(n=1)``: any retrace (a changed pytree, dtype or weak
  type at the switch or after a restore) fails the test that caused it.
  """
  game, g_mod, d_mod = tm.make_game('ns', z=Z64.astype(np.float32))
  state = jax.jit(
    lambda: coopinit.with_coop_state(
      tm.make_state(g_mod, d_mod, g_tx=ADAM, d_tx=ADAM, use_ema=True)
    )
  )()
  coop = coopinit.coop_step(game, ADAM, ADAM, langevin=LangevinConfig(step_size=0.3, n_steps=3))
  adv = two_stage_step(game, ADAM, ADAM)
  batches = [
    {'image': RNG.uniform(-1, 1, size=(8, *tm.IMAGE_SHAPE)).astype(np.float32)} for _ in range(7)
  ]
  return state, chex.assert_max_traces(coop, n=1), chex.assert_max_traces(adv, n=1), batches


@functools.cache
def jitted_switch(reset):
  return jax.jit(
    lambda s: coopinit.switch_to_adversarial(s, g_tx=ADAM, d_tx=ADAM, reset_moments=reset)
  )


def run(step, state, batches, start, stop):
  kinds = []
  for t in range(start, stop):
    state, metrics = step(state, batches[t])
    kinds.append('coop' if 'coop/ebm_loss' in metrics else 'adv')
  return state, kinds


@pytest.mark.parametrize('reset', [False, True])
def test_switch_to_adversarial(reset):
  state, coop, _, batches = phase_setup()
  state, _ = run(jax.jit(coop), state, batches, 0, 2)
  new = jitted_switch(reset)(state)
  chex.assert_trees_all_equal_structs(new, state)
  assert int(new.extra['coopinit']['phase']) == 1 and int(state.extra['coopinit']['phase']) == 0
  chex.assert_trees_all_equal(
    (new.g.params, new.d.params, new.step), (state.g.params, state.d.params, state.step)
  )
  chex.assert_trees_all_equal(new.ema_params, state.g.params)  # EMA restarted
  assert not np.allclose(state.ema_params['Dense_0']['kernel'], state.g.params['Dense_0']['kernel'])
  mu = jax.tree.leaves(new.d.opt_state[0].mu)
  if reset:
    assert all(float(np.abs(m).max()) == 0.0 for m in mu)
    assert int(new.d.opt_state[0].count) == 0 and int(new.g.opt_state[0].count) == 0
    chex.assert_trees_all_equal(
      jax.tree.leaves(new.d.opt_state[0].nu), [np.zeros_like(m) for m in mu]
    )
  else:
    chex.assert_trees_all_equal(
      (new.g.opt_state, new.d.opt_state), (state.g.opt_state, state.d.opt_state)
    )
    assert int(new.d.opt_state[0].count) == 2


@pytest.mark.parametrize('reset', [False, True])
def test_phased_step_switches_exactly_at_t_init(reset):
  state0, coop, adv, batches = phase_setup()
  phased = coopinit.make_phased_step(coop, adv, T_INIT, g_tx=ADAM, d_tx=ADAM, reset_moments=reset)
  final, kinds = run(phased, state0, batches, 0, 6)
  assert kinds == ['coop'] * T_INIT + ['adv'] * 3
  assert int(final.extra['coopinit']['phase']) == 1
  # The same run spelled out by hand.
  state, _ = run(jax.jit(coop), state0, batches, 0, T_INIT)
  state = jitted_switch(reset)(state)
  state, _ = run(jax.jit(adv), state, batches, T_INIT, 6)
  chex.assert_trees_all_equal(final, state)


@pytest.mark.parametrize('stop', [T_INIT - 1, T_INIT])
def test_switch_across_a_resume(stop):
  """Resumed one step before the switch, or saved right at it (still phase 0)."""
  state0, coop, adv, batches = phase_setup()
  phased = coopinit.make_phased_step(coop, adv, T_INIT, g_tx=ADAM, d_tx=ADAM, reset_moments=True)
  if stop == T_INIT - 1:
    mid, _ = run(phased, state0, batches, 0, stop)
  else:  # the cooperative steps only: a checkpoint written before the switch was applied
    mid, _ = run(jax.jit(coop), state0, batches, 0, stop)
  assert int(mid.extra['coopinit']['phase']) == 0
  restored = jax.tree.map(np.asarray, mid)
  uninterrupted, kinds = run(phased, mid, batches, stop, 6)
  # A new process: a fresh wrapper around the same step functions (no new traces).
  resumed_phased = coopinit.make_phased_step(
    coop, adv, T_INIT, g_tx=ADAM, d_tx=ADAM, reset_moments=True
  )
  resumed, kinds_r = run(resumed_phased, restored, batches, stop, 6)
  assert kinds == kinds_r == ['coop'] * (T_INIT - stop) + ['adv'] * (6 - T_INIT)
  chex.assert_trees_all_equal(resumed, uninterrupted)
  # Feeding a restored (numpy) state to the first wrapper does not recompile either.
  run(phased, jax.tree.map(np.asarray, resumed), batches, 6, 7)


def test_phased_step_rejects_inconsistent_states():
  state, coop, adv, batches = phase_setup()
  phased = coopinit.make_phased_step(coop, adv, T_INIT, g_tx=ADAM, d_tx=ADAM)
  switched = jitted_switch(False)(state)
  with pytest.raises(ValueError, match='cannot restart'):
    phased(switched, batches[0])
  with pytest.raises(ValueError, match='init_coop_state'):
    phased(state.replace(extra={}), batches[0])
  with pytest.raises(ValueError, match='g_tx/d_tx the run was built with'):
    coopinit.switch_to_adversarial(state, g_tx=ADAM, d_tx=optax.sgd(0.1), reset_moments=True)
  for bad in (-1, 2.5, True):
    with pytest.raises(ValueError, match='t_init'):
      coopinit.make_phased_step(coop, adv, bad, g_tx=ADAM, d_tx=ADAM)


def test_reset_keeps_sparse_masks():
  """Resetting the moments re-inits Adam but keeps the masks (which may differ from init's)."""
  from jaxgan import sparse

  state, _, _, _ = phase_setup()
  tx = sparse.masked_optimizer(
    optax.adam(1e-2), sparse.mask_initializer(jax.random.PRNGKey(3), 0.5)
  )

  @jax.jit
  def go(state):
    params = state.d.params
    opt = tx.init(params)
    _, opt = tx.update(jax.tree.map(jnp.ones_like, params), opt, params)  # non-zero moments
    flipped = jax.tree.map(jnp.logical_not, sparse.get_masks(opt))  # as after prune/regrow
    opt = sparse.replace_masks(opt, flipped)
    s = state.replace(d=state.d.replace(opt_state=opt))
    new = coopinit.switch_to_adversarial(s, g_tx=ADAM, d_tx=tx, reset_moments=True)
    return flipped, opt, new.d.opt_state

  flipped, before, after = go(state)
  chex.assert_trees_all_equal(sparse.get_masks(after), flipped)
  assert not np.array_equal(
    sparse.get_masks(after)['Dense_0']['kernel'],
    sparse.get_masks(tx.init(state.d.params))['Dense_0']['kernel'],
  )
  inner_before, inner_after = before.inner[0], after.inner[0]
  assert int(inner_before.count) == 1 and int(inner_after.count) == 0
  assert max(float(np.abs(m).max()) for m in jax.tree.leaves(inner_before.mu)) > 0
  assert all(float(np.abs(m).max()) == 0.0 for m in jax.tree.leaves(inner_after.mu))
