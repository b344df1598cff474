"""Schedules, the BR window, the DDST controller, and SDST/DDST on a GANState."""

from __future__ import annotations

import collections
import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tiny_models as tm

from jaxgan import sparse
from jaxgan.checkpoint import RunCheckpointer
from jaxgan.sparse import _balance as balance
from jaxgan.sparse import ddst
from jaxgan.state import Player
from jaxgan.steps import two_stage_step

# ----------------------------------------------------------------------------
# Schedules
# ----------------------------------------------------------------------------


def test_cosine_drop_fraction_reference_values():
  f = sparse.cosine_drop_fraction
  assert f(0, 100_000) == pytest.approx(0.5)
  assert f(50_000, 100_000) == pytest.approx(0.2525)
  assert f(100_000, 100_000) == pytest.approx(0.005)
  assert f(200_000, 100_000) == pytest.approx(0.005)  # clipped at T
  for t in (0, 1234, 50_000, 99_999):
    assert float(jax.jit(lambda s: f(s, 100_000))(jnp.int32(t))) == pytest.approx(
      f(t, 100_000), rel=1e-5
    )
  expected = 0.005 + 0.495 * (1 + math.cos(math.pi * 0.3)) / 2
  assert f(30_000, 100_000) == pytest.approx(expected)


def test_is_update_step():
  due = [t for t in range(0, 2001) if sparse.is_update_step(t, 500, total_steps=2000)]
  assert due == [500, 1000, 1500]  # never at t = 0 or t = T
  assert not sparse.is_update_step(1000, 500, end_step=750)
  with pytest.raises(ValueError, match='positive'):
    sparse.is_update_step(10, 0)


# ----------------------------------------------------------------------------
# BR window
# ----------------------------------------------------------------------------


def window_of(triples, capacity, start_step=1):
  w = balance.init_window(capacity)
  for i, t in enumerate(triples):
    w = balance.push(w, *t, step=start_step + i)
  return w


def test_br_is_mean_of_ratios():
  w = window_of([(1.0, 0.0, 2.0), (3.0, 0.0, 1.0)], capacity=5)
  assert float(balance.balance_ratio(w, step=100)) == pytest.approx(1.75)  # mean(0.5, 3)
  assert float(balance.balance_ratio(w, 100, 'ratio_of_means')) == pytest.approx(4 / 3)
  assert float(balance.balance_ratio(window_of([(0.2, 0.0, 1.0)], 3), 9)) == pytest.approx(0.2)
  assert np.isnan(float(balance.balance_ratio(balance.init_window(3), 1)))
  assert int(balance.window_size(balance.init_window(3), 1)) == 0


def test_window_matches_reference_deque_with_deferred_trim():
  """The reference appends every br_freq iterations, decides, then cuts to Q."""
  q, br_freq = 4, 3
  rng = np.random.RandomState(0)
  w = balance.init_window(q)
  ref = collections.deque()
  push = jax.jit(balance.push_if_due, static_argnums=5)
  for t in range(1, 40):
    gf, df, dr = rng.rand(), rng.rand() - 1.0, rng.rand() + 1.0
    w = push(w, gf, df, dr, t, br_freq)
    if t % br_freq == 0:
      ref.append((gf, df, dr))
    # what a controller at iteration t sees:
    assert int(balance.window_size(w, t)) == len(ref)
    if ref:
      expected = np.mean([(a - b) / (c - b) for a, b, c in ref])
      assert float(balance.balance_ratio(w, t)) == pytest.approx(expected, rel=1e-5)
    if len(ref) > q:
      ref.popleft()
  assert int(w.count) <= q + 1


def test_window_drops_oldest():
  w = window_of([(float(i), 0.0, 100.0) for i in range(9)], capacity=4)
  entries, valid = balance.window_view(w, step=100)
  assert sorted(np.asarray(entries)[np.asarray(valid), 0].tolist()) == [5.0, 6.0, 7.0, 8.0]
  entries, valid = balance.window_view(w, step=9)  # pushed at step 9: Q + 1 visible
  assert sorted(np.asarray(entries)[np.asarray(valid), 0].tolist()) == [4.0, 5.0, 6.0, 7.0, 8.0]


# ----------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------


def test_config_presets_and_validation():
  relax = sparse.ddst_config('relax')
  assert (relax.br_lower, relax.br_upper, relax.d_control_every, relax.density_cap) == (
    0.45,
    0.55,
    1000,
    1.0,
  )
  assert (
    relax.queue_capacity == 100 and relax.g_update_every == 500 and relax.d_density_step == 0.05
  )
  strict = sparse.ddst_config('strict')
  assert (strict.g_density, strict.d_density, strict.d_control_every, strict.density_cap) == (
    0.3,
    0.3,
    2000,
    0.5,
  )
  dda = sparse.ddst_config('dda')
  assert not dda.g_dst and (dda.br_lower, dda.br_upper, dda.d_control_every) == (0.5, 0.65, 2000)
  assert sparse.ddst_config('sdst').d_control is None
  with pytest.raises(ValueError, match='variant'):
    sparse.ddst_config('adapt')
  with pytest.raises(ValueError, match='unknown DDSTConfig fields'):
    sparse.ddst_config('relax', br_upperr=0.6)
  with pytest.raises(ValueError, match='br_lower'):
    sparse.ddst_config('relax', br_lower=0.7)
  with pytest.raises(ValueError, match='br_freq'):
    sparse.ddst_config('relax', br_freq=200)
  with pytest.raises(ValueError, match='g_regrow'):
    sparse.ddst_config('relax', g_regrow='momentum')


# ----------------------------------------------------------------------------
# The controller on a D player
# ----------------------------------------------------------------------------

CFG = sparse.ddst_config('relax', total_steps=1000, br_freq=1, br_window=4, d_control_every=10)
STRICT = sparse.ddst_config('strict', total_steps=1000, br_freq=1, br_window=4, d_control_every=10)
N_D = 8 * 10 + 8 * 4  # 112: no d * N below lands on a .5 tie


def d_player(density, seed=0):
  """A masked D with a layer of big and a layer of tiny weights, exactly round(d N) alive."""
  rng = np.random.RandomState(seed)
  params = {
    'big': {'kernel': jnp.asarray(rng.randn(8, 10), jnp.float32), 'bias': jnp.zeros(10)},
    'tiny': {'kernel': jnp.asarray(1e-3 * rng.randn(8, 4), jnp.float32)},
  }
  alive = np.zeros(N_D, bool)
  alive[rng.permutation(N_D)[: round(density * N_D)]] = True
  masks = {
    'big': {'kernel': jnp.asarray(alive[:80].reshape(8, 10)), 'bias': None},
    'tiny': {'kernel': jnp.asarray(alive[80:].reshape(8, 4))},
  }
  tx = sparse.masked_optimizer(optax.adam(1e-2), masks)
  player = sparse.sparsify_player(Player(params=params, model_state={}, opt_state=tx.init(params)))
  grads = jax.tree.map(lambda p: jnp.asarray(rng.randn(*p.shape), jnp.float32), params)
  return player, grads


def ddst_state_with_br(br, density, cfg=CFG, n=4):
  ds = ddst.init_ddst_state(cfg, density)
  return ds._replace(window=window_of([(br, 0.0, 1.0)] * n, cfg.queue_capacity))


def control(ds, player, grads, cfg=CFG, step=100):
  return ddst.ddst_control(
    ds, player, grads, step=jnp.int32(step), key=jax.random.PRNGKey(0), config=cfg
  )


def flat(tree):
  return np.concatenate(
    [np.asarray(tree['big']['kernel']).ravel(), np.asarray(tree['tiny']['kernel']).ravel()]
  )


def test_controller_waits_for_a_full_window():
  player, grads = d_player(0.4)
  ds = ddst_state_with_br(0.9, 0.4, n=3)  # Q = 4, only 3 entries
  new_ds, new_player = control(ds, player, grads)
  assert int(new_ds.action) == ddst.WAITING
  assert float(new_ds.d_density) == pytest.approx(0.4)
  chex.assert_trees_all_equal(new_player, player)


def test_controller_grows_d_when_br_high():
  player, grads = d_player(0.4)
  new_ds, new_player = control(ddst_state_with_br(0.8, 0.4), player, grads)
  assert int(new_ds.action) == ddst.GROW
  assert float(new_ds.d_density) == pytest.approx(0.45)
  assert float(new_ds.br) == pytest.approx(0.8)
  old_m, new_m = (
    flat(sparse.get_masks(player.opt_state)),
    flat(sparse.get_masks(new_player.opt_state)),
  )
  assert new_m.sum() == round(0.45 * N_D)
  assert np.all(new_m[old_m])  # superset
  added = np.flatnonzero(new_m & ~old_m)
  dead = np.flatnonzero(~old_m)
  g = np.abs(flat(grads))
  assert set(added) == set(dead[np.argsort(-g[dead], kind='stable')[: len(added)]])
  assert np.all(flat(new_player.params)[added] == 0.0)


def test_controller_prunes_d_when_br_low_smallest_magnitudes_globally():
  player, grads = d_player(0.6)
  new_ds, new_player = control(ddst_state_with_br(0.1, 0.6), player, grads)
  assert int(new_ds.action) == ddst.PRUNE
  assert float(new_ds.d_density) == pytest.approx(0.55)
  old_m, new_m = (
    flat(sparse.get_masks(player.opt_state)),
    flat(sparse.get_masks(new_player.opt_state)),
  )
  assert new_m.sum() == round(0.55 * N_D)
  assert not np.any(new_m[~old_m])  # subset
  removed = np.flatnonzero(old_m & ~new_m)
  w = np.abs(flat(player.params))
  alive = np.flatnonzero(old_m)
  assert set(removed) == set(alive[np.argsort(w[alive], kind='stable')[: len(removed)]])
  assert np.all(removed >= 80)  # the tiny layer loses the weights
  assert np.all(flat(new_player.params)[~new_m] == 0.0)


def test_controller_between_bounds_changes_nothing_bitwise():
  player, grads = d_player(0.4)
  ds = ddst_state_with_br(0.5, 0.4)
  new_ds, new_player = control(ds, player, grads)
  assert int(new_ds.action) == ddst.KEEP
  chex.assert_trees_all_equal(new_player, player)
  assert float(new_ds.d_density) == float(ds.d_density)


def test_strict_at_cap_exchanges_and_relax_at_cap_keeps():
  player, grads = d_player(0.5)
  new_ds, new_player = control(ddst_state_with_br(0.9, 0.5, STRICT), player, grads, STRICT)
  assert int(new_ds.action) == ddst.EXCHANGE
  assert float(new_ds.d_density) == pytest.approx(0.5)
  old_m, new_m = (
    flat(sparse.get_masks(player.opt_state)),
    flat(sparse.get_masks(new_player.opt_state)),
  )
  assert new_m.sum() == old_m.sum() and not np.array_equal(new_m, old_m)
  # Strict never exceeds its cap: from 0.47 it grows to 0.5, not 0.52.
  p2, g2 = d_player(0.47)
  ds2, _ = control(ddst_state_with_br(0.9, 0.47, STRICT), p2, g2, STRICT)
  assert int(ds2.action) == ddst.GROW and float(ds2.d_density) == pytest.approx(0.5)
  # Relax at 1.0 does nothing.
  p3, g3 = d_player(1.0)
  ds3, p3_new = control(ddst_state_with_br(0.9, 1.0), p3, g3)
  assert int(ds3.action) == ddst.KEEP
  chex.assert_trees_all_equal(p3_new, p3)


def test_density_floor_and_relax_cap():
  player, grads = d_player(0.05)
  ds, new_player = control(ddst_state_with_br(0.0, 0.05), player, grads)
  assert int(ds.action) == ddst.KEEP and float(ds.d_density) == pytest.approx(0.05)
  chex.assert_trees_all_equal(new_player, player)
  player, grads = d_player(0.08)
  ds, _ = control(ddst_state_with_br(0.0, 0.08), player, grads)
  assert float(ds.d_density) == pytest.approx(0.05)  # max(0.05, 0.08 - 0.05)
  player, grads = d_player(0.97)
  ds, new_player = control(ddst_state_with_br(0.9, 0.97), player, grads)
  assert float(ds.d_density) == pytest.approx(1.0)
  assert flat(sparse.get_masks(new_player.opt_state)).all()


def test_controller_compiles_once_across_decisions():
  before = ddst.ddst_control._cache_size()
  player, grads = d_player(0.4)
  ds = ddst.init_ddst_state(CFG, 0.4)
  for br in (0.9, 0.9, 0.1, 0.5, 0.9):
    ds = ds._replace(window=window_of([(br, 0.0, 1.0)] * 4, CFG.queue_capacity))
    ds, player = control(ds, player, grads)
  assert ddst.ddst_control._cache_size() - before <= 1


# ----------------------------------------------------------------------------
# SDST + DDST on a GANState, with a checkpoint in the middle
# ----------------------------------------------------------------------------

GAN_CFG = sparse.ddst_config(
  'relax',
  total_steps=40,
  g_density=0.5,
  d_density=0.5,
  g_update_every=4,
  br_freq=1,
  br_window=3,
  d_control_every=10,
  br_lower=10.0,  # any BR below 10 shrinks D: the controller acts on every decision
  br_upper=20.0,
  d_density_step=0.1,
)


@functools.lru_cache(maxsize=1)
def make_run():
  """A fresh sparse GAN state and a training function (built once per session)."""
  game, g_mod, d_mod = tm.make_game('hinge')
  g_tx, d_tx = sparse.ddst_optimizers(
    optax.adam(1e-2), optax.adam(1e-2), jax.random.PRNGKey(4), GAN_CFG
  )
  # One compiled init (op-by-op dispatch of the module inits is slow).
  state = jax.jit(
    lambda: sparse.init_sparse_state(tm.make_state(g_mod, d_mod, g_tx, d_tx, use_ema=True), GAN_CFG)
  )()
  step = jax.jit(two_stage_step(game, g_tx, d_tx, ema_decay=0.9, measure_balance=True))
  z = jax.random.normal(jax.random.PRNGKey(8), (8, tm.LATENT_DIM))
  real = tm.real_batch()['image']

  @jax.jit
  def g_grads(state):
    def loss(gp):
      fake, _ = game.g_apply({'params': gp}, z, train=True)
      return game.loss.g_loss(game.d_apply(state.d.variables, fake, train=True)[0])

    return jax.grad(loss)(state.g.params)

  @jax.jit
  def d_grads(state):
    fake, _ = game.g_apply(state.g.variables, z, train=True)

    def loss(dp):
      v = {'params': dp}
      return game.loss.d_loss(
        game.d_apply(v, real, train=True)[0], game.d_apply(v, fake, train=True)[0]
      )

    return jax.grad(loss)(state.d.params)

  def train(state, start, stop, check=None):
    for t in range(start, stop):
      state, metrics = step(state, tm.real_batch(seed=t))
      state, logs = sparse.sparse_after_step(
        state, metrics, t + 1, GAN_CFG, g_grads_fn=g_grads, d_grads_fn=d_grads
      )
      if check is not None:
        check(state, logs, t + 1)
    return state

  return state, train


def test_sparse_gan_run_invariants_and_resume(tmp_path):
  state0, train = make_run()
  g_masks0 = sparse.get_masks(state0.g.opt_state)
  n_g = int(sparse.count_alive(g_masks0))
  n_d_total = sparse.num_maskable(sparse.get_masks(state0.d.opt_state))
  history = []

  @jax.jit
  def invariants(state):
    g_m, d_m = sparse.get_masks(state.g.opt_state), sparse.get_masks(state.d.opt_state)
    zero = jnp.array(True)
    for params, m in ((state.g.params, g_m), (state.ema_params, g_m), (state.d.params, d_m)):
      for w, mk in zip(jax.tree.leaves(params), jax.tree.leaves(m, is_leaf=lambda x: x is None)):
        if mk is not None:
          zero &= jnp.all(jnp.where(mk, 0.0, w) == 0.0)
    return zero, sparse.count_alive(g_m), sparse.count_alive(d_m)

  def check(state, logs, t):
    zero, g_count, d_count = jax.device_get(invariants(state))
    assert zero, t  # pruned weights exactly 0 in G, its EMA and D
    assert g_count == n_g  # G's DST keeps its count
    ds = state.extra['ddst']
    assert d_count == round(float(ds.d_density) * n_d_total)
    history.append((t, int(ds.action), float(logs['sparse/d_density'])))

  full = train(state0, 0, 22, check)
  actions = {t: a for t, a, _ in history}
  assert actions[10] == ddst.PRUNE and actions[20] == ddst.PRUNE  # BR < 10 < ... always
  assert float(full.extra['ddst'].d_density) == pytest.approx(0.3)
  assert not np.array_equal(
    np.asarray(sparse.get_masks(full.g.opt_state)['Dense_0']['kernel']),
    np.asarray(g_masks0['Dense_0']['kernel']),
  )

  # Interrupted run: 11 steps, checkpoint, restore into a fresh state, 11 more.
  first = train(state0, 0, 11)
  ckpt = RunCheckpointer(tmp_path, keep=1)
  ckpt.save(11, first, {}, '{}')
  ckpt.wait()
  restored, _, _, start = ckpt.restore(state0)  # state0: a freshly built state
  ckpt.close()
  assert start == 11
  chex.assert_trees_all_equal(restored.extra['ddst'], first.extra['ddst'])
  resumed = train(restored, 11, 22)
  chex.assert_trees_all_equal(resumed, full)


def test_sema_and_errors():
  state, _ = make_run()
  # The EMA takes G's new mask at a G update (SEMA).
  state = state.replace(ema_params=jax.tree.map(jnp.ones_like, state.ema_params), step=jnp.int32(4))
  grads = jax.tree.map(jnp.ones_like, state.g.params)
  new = ddst.sdst_update(state, grads, GAN_CFG)
  m = sparse.get_masks(new.g.opt_state)['Dense_0']['kernel']
  ema = np.asarray(new.ema_params['Dense_0']['kernel'])
  np.testing.assert_array_equal(ema, np.where(np.asarray(m), 1.0, 0.0))
  np.testing.assert_array_equal(new.ema_params['Dense_0']['bias'], 1.0)
  with pytest.raises(ValueError, match='measure_balance=True'):
    ddst.ddst_record(state, {'d_loss': 0.0}, GAN_CFG)
  with pytest.raises(ValueError, match='needs g_grads_fn'):
    sparse.sparse_after_step(state, {k: 0.0 for k in ddst.BALANCE_KEYS}, 4, GAN_CFG)
  with pytest.raises(ValueError, match='init_sparse_state'):
    ddst.ddst_control_state(state.replace(extra={}), grads, GAN_CFG)
