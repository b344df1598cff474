"""Prune/regrow primitives and their player-level, jitted forms."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgan import sparse
from jaxgan.sparse import _masks, _prune_regrow
from jaxgan.state import Player

# The mask-level primitives are pure; jitting them makes one program per call site
# (eager dispatch would compile every primitive separately).
prune = jax.jit(sparse.prune_by_magnitude, static_argnames=('scope',))
grow = jax.jit(sparse.grow_by_score, static_argnames=('scope',))
dst_masks = jax.jit(sparse.dst_masks, static_argnames=('regrow', 'scope'))
set_count = jax.jit(_prune_regrow.set_count_masks, static_argnames=('regrow', 'scope'))


def np_masks(params, density, seed=0):
  rng = np.random.RandomState(seed)
  return jax.tree.map(
    lambda t, p: None if t is None else jnp.asarray(rng.rand(*p.shape) < density),
    _masks.maskable_tree(params),
    params,
    is_leaf=lambda x: x is None,
  )


def random_params(seed=0):
  rng = np.random.RandomState(seed)
  return {
    'l1': {
      'kernel': jnp.asarray(rng.randn(10, 12), jnp.float32),
      'bias': jnp.asarray(rng.randn(12), jnp.float32),
    },
    'l2': {'kernel': jnp.asarray(rng.randn(3, 3, 4, 5), jnp.float32)},
  }


def tiny_tree():
  params = {
    'a': jnp.array([[0.1, 0.01], [0.02, 5.0]]),
    'b': jnp.array([[3.0, -4.0], [0.5, -0.03]]),
    'bias': jnp.ones(2),
  }
  masks = {'a': jnp.ones((2, 2), bool), 'b': jnp.ones((2, 2), bool), 'bias': None}
  return params, masks


def as_np(masks):
  return {k: None if v is None else np.asarray(v) for k, v in masks.items()}


# ----------------------------------------------------------------------------
# Mask-level primitives on hand-made cases
# ----------------------------------------------------------------------------


def test_global_prune_removes_smallest_magnitudes_across_layers():
  params, masks = tiny_tree()
  out = as_np(prune(params, masks, 3))
  np.testing.assert_array_equal(out['a'], [[True, False], [False, True]])
  np.testing.assert_array_equal(out['b'], [[True, True], [True, False]])
  assert out['bias'] is None


def test_layer_prune_removes_k_per_layer():
  params, masks = tiny_tree()
  out = as_np(prune(params, masks, 1, scope='layer'))
  np.testing.assert_array_equal(out['a'], [[True, False], [True, True]])
  np.testing.assert_array_equal(out['b'], [[True, True], [True, False]])
  out = as_np(prune(params, masks, [2, 0], scope='layer'))
  np.testing.assert_array_equal(out['a'], [[True, False], [False, True]])
  assert out['b'].all()


def test_prune_ignores_dead_weights():
  params, masks = tiny_tree()
  masks = {**masks, 'a': jnp.array([[True, False], [False, True]])}  # 0.01, 0.02 already dead
  out = as_np(prune(params, masks, 1))
  # smallest alive is -0.03 in b; dead entries stay dead.
  np.testing.assert_array_equal(out['a'], [[True, False], [False, True]])
  np.testing.assert_array_equal(out['b'], [[True, True], [True, False]])


def test_grow_picks_largest_scores_among_dead_with_index_ties():
  masks = {
    'a': jnp.array([True, False, False, False]),
    'b': jnp.array([False, False, True]),
    'bias': None,
  }
  scores = {
    'a': jnp.array([9.0, 1.0, 0.0, 2.0]),
    'b': jnp.array([2.0, 0.5, 7.0]),
    'bias': jnp.zeros(2),
  }
  out = as_np(grow(masks, scores, 2))
  # dead scores: a1=1, a2=0, a3=2, b0=2, b1=0.5 -> the two 2.0 (a3 before b0).
  np.testing.assert_array_equal(out['a'], [True, False, False, True])
  np.testing.assert_array_equal(out['b'], [True, False, True])
  out = as_np(grow(masks, scores, 1, scope='layer'))
  np.testing.assert_array_equal(out['a'], [True, False, False, True])
  np.testing.assert_array_equal(out['b'], [True, False, True])


def test_dst_masks_exchange_semantics():
  params = random_params()
  masks = np_masks(params, 0.3)
  grads = jax.tree.map(
    lambda p: jnp.asarray(np.random.RandomState(7).randn(*p.shape), jnp.float32), params
  )
  n0 = int(sparse.count_alive(masks))
  new = dst_masks(params, masks, grads, 0.4)
  assert int(sparse.count_alive(new)) == n0
  k = int(np.floor(n0 * 0.4))
  # The pruned set is the k smallest |w| among alive, across layers.
  flat_w = np.concatenate([np.abs(np.asarray(params[n]['kernel'])).ravel() for n in ('l1', 'l2')])
  flat_m = np.concatenate([np.asarray(masks[n]['kernel']).ravel() for n in ('l1', 'l2')])
  flat_g = np.concatenate([np.abs(np.asarray(grads[n]['kernel'])).ravel() for n in ('l1', 'l2')])
  flat_new = np.concatenate([np.asarray(new[n]['kernel']).ravel() for n in ('l1', 'l2')])
  alive = np.flatnonzero(flat_m)
  pruned = set(alive[np.argsort(flat_w[alive], kind='stable')[:k]])
  after_prune = flat_m.copy()
  after_prune[list(pruned)] = False
  dead = np.flatnonzero(~after_prune)
  grown = set(dead[np.argsort(-flat_g[dead], kind='stable')[:k]])
  expected = after_prune.copy()
  expected[list(grown)] = True
  np.testing.assert_array_equal(flat_new, expected)
  assert new['l1']['bias'] is None
  # frac = 0 is the identity.
  chex.assert_trees_all_equal(dst_masks(params, masks, grads, 0.0), masks)


def test_dst_masks_layer_scope_keeps_each_layer_count():
  params = random_params(1)
  masks = np_masks(params, 0.5, seed=3)
  grads = jax.tree.map(jnp.ones_like, params)
  new = dst_masks(params, masks, grads, 0.5, scope='layer')
  for name in ('l1', 'l2'):
    assert int(new[name]['kernel'].sum()) == int(masks[name]['kernel'].sum())
  assert not np.array_equal(new['l1']['kernel'], masks['l1']['kernel'])


def test_random_regrow_deterministic_per_key():
  params = random_params()
  masks = np_masks(params, 0.3)
  a = dst_masks(params, masks, None, 0.5, key=jax.random.PRNGKey(0), regrow='random')
  b = dst_masks(params, masks, None, 0.5, key=jax.random.PRNGKey(0), regrow='random')
  c = dst_masks(params, masks, None, 0.5, key=jax.random.PRNGKey(1), regrow='random')
  chex.assert_trees_all_equal(a, b)
  assert not np.array_equal(a['l1']['kernel'], c['l1']['kernel'])
  assert int(sparse.count_alive(a)) == int(sparse.count_alive(masks))
  with pytest.raises(ValueError, match='key'):
    dst_masks(params, masks, None, 0.5, regrow='random')


def test_set_count_masks_grow_and_prune_exact_and_monotone():
  params = random_params()
  masks = np_masks(params, 0.3)
  grads = jax.tree.map(
    lambda p: jnp.asarray(np.random.RandomState(9).randn(*p.shape), jnp.float32), params
  )
  n0 = int(sparse.count_alive(masks))
  up = set_count(params, masks, grads, n0 + 25)
  down = set_count(params, masks, grads, n0 - 25)
  assert int(sparse.count_alive(up)) == n0 + 25
  assert int(sparse.count_alive(down)) == n0 - 25
  for name in ('l1', 'l2'):
    m, u, d = (np.asarray(t[name]['kernel']) for t in (masks, up, down))
    assert np.all(u[m]) and not np.any(d[~m])  # superset / subset
  # The added weights are the 25 largest |grad| among the dead ones.
  flat = lambda t, f=np.asarray: np.concatenate([f(t[n]['kernel']).ravel() for n in ('l1', 'l2')])  # noqa: E731
  g, m, u = np.abs(flat(grads)), flat(masks), flat(up)
  dead = np.flatnonzero(~m)
  assert set(np.flatnonzero(u & ~m)) == set(dead[np.argsort(-g[dead], kind='stable')[:25]])


# ----------------------------------------------------------------------------
# Player level
# ----------------------------------------------------------------------------


def trained_player(density=0.3, steps=3):
  """A masked-Adam player after a few steps (nonzero moments everywhere)."""
  params = random_params()
  tx = sparse.masked_optimizer(optax.adam(1e-2), np_masks(params, density))
  player = sparse.sparsify_player(Player(params=params, model_state={}, opt_state=tx.init(params)))
  rng = np.random.RandomState(11)
  for _ in range(steps):
    g = jax.tree.map(lambda p: jnp.asarray(rng.randn(*p.shape), jnp.float32), params)
    u, opt_state = tx.update(g, player.opt_state, player.params)
    player = player.replace(params=optax.apply_updates(player.params, u), opt_state=opt_state)
  return player, g


@pytest.mark.parametrize('reset', [False, True])
def test_dst_update_player(reset):
  player, g = trained_player()
  old = sparse.get_masks(player.opt_state)
  new_player = sparse.dst_update(player, g, drop_fraction=0.5, reset_moments=reset)
  new = sparse.get_masks(new_player.opt_state)
  assert int(sparse.count_alive(new)) == int(sparse.count_alive(old))
  mu_old, mu_new = player.opt_state.inner[0].mu, new_player.opt_state.inner[0].mu
  for name in ('l1', 'l2'):
    o, n = np.asarray(old[name]['kernel']), np.asarray(new[name]['kernel'])
    w0, w1 = (
      np.asarray(player.params[name]['kernel']),
      np.asarray(new_player.params[name]['kernel']),
    )
    assert np.all(w1[~n] == 0.0)  # pruned and never-alive weights are exactly 0
    assert np.all(w1[n & ~o] == 0.0)  # regrown weights start at 0
    np.testing.assert_array_equal(w1[n & o], w0[n & o])  # survivors untouched
    assert np.count_nonzero(w1) == n.sum() - np.count_nonzero(n & ~o)
    m0, m1 = np.asarray(mu_old[name]['kernel']), np.asarray(mu_new[name]['kernel'])
    grown = n & ~o
    assert grown.any()
    if reset:
      assert np.all(m1[grown] == 0.0) and np.all(m0[grown] != 0.0)
      np.testing.assert_array_equal(m1[~grown], m0[~grown])
    else:
      np.testing.assert_array_equal(m1, m0)  # the reference: moments untouched
  # Dense leaves untouched bitwise.
  np.testing.assert_array_equal(new_player.params['l1']['bias'], player.params['l1']['bias'])


def test_set_density_player_hits_count_exactly():
  player, g = trained_player(0.3)
  n_total = sparse.num_maskable(sparse.get_masks(player.opt_state))
  for d in (0.55, 0.12, 0.3):
    player = sparse.set_density(player, g, d)
    masks = sparse.get_masks(player.opt_state)
    assert int(sparse.count_alive(masks)) == round(d * n_total)
    for name in ('l1', 'l2'):
      w = np.asarray(player.params[name]['kernel'])
      assert np.all(w[~np.asarray(masks[name]['kernel'])] == 0.0)


def test_set_density_layer_scope():
  player, g = trained_player(0.3)
  player = sparse.set_density(player, g, 0.5, scope='layer')
  masks = sparse.get_masks(player.opt_state)
  assert int(masks['l1']['kernel'].sum()) == 60 and int(masks['l2']['kernel'].sum()) == 90


def test_no_recompilation_across_mask_updates():
  player, g = trained_player()
  dst_before = _prune_regrow._dst_update._cache_size()
  set_before = _prune_regrow._set_density._cache_size()
  for f in (0.5, 0.3, 0.1, 0.05):
    player = sparse.dst_update(player, g, drop_fraction=f)
  for d in (0.4, 0.2, 0.35):
    player = sparse.set_density(player, g, d)
  assert _prune_regrow._dst_update._cache_size() - dst_before <= 1
  assert _prune_regrow._set_density._cache_size() - set_before <= 1


def test_player_errors():
  player, g = trained_player()
  dense = Player(
    params=player.params, model_state={}, opt_state=optax.adam(1e-3).init(player.params)
  )
  with pytest.raises(ValueError, match='no sparse masks'):
    sparse.dst_update(dense, g, drop_fraction=0.1)
  with pytest.raises(ValueError, match='scope'):
    sparse.dst_update(player, g, drop_fraction=0.1, scope='net')
  with pytest.raises(ValueError, match='needs grads'):
    sparse.dst_update(player, None, drop_fraction=0.1)
  with pytest.raises(ValueError, match='regrow'):
    sparse.set_density(player, g, 0.5, regrow='momentum')
  with pytest.raises(ValueError, match=r'\[0, 1\]'):
    sparse.set_density(player, g, 1.5)
  with pytest.raises(ValueError, match='mirror the params'):
    sparse.dst_update(player, {'l1': g['l1']}, drop_fraction=0.1)
