"""The masked optax transformation: exact zeros, untouched survivors, moment reset."""

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

STEPS = 50


def make_params(dtype=jnp.float32):
  rng = np.random.RandomState(0)
  params = {
    'dense': {'kernel': rng.randn(6, 5), 'bias': rng.randn(5)},
    'conv': {'kernel': rng.randn(3, 3, 2, 4)},
  }
  return jax.tree.map(lambda a: jnp.asarray(a, dtype), params)


def make_masks(params, density=0.4, seed=1):
  """Random masks (numpy; the library's random_masks is tested elsewhere)."""
  rng = np.random.RandomState(seed)
  template = _masks.maskable_tree(params)
  return jax.tree.map(
    lambda t, p: None if t is None else jnp.asarray(rng.rand(*p.shape) < density),
    template,
    params,
    is_leaf=lambda x: x is None,
  )


def all_grads(params):
  """``[STEPS, ...]`` random gradients (numpy: nothing to compile)."""
  rng = np.random.RandomState(100)
  return jax.tree.map(lambda p: rng.randn(STEPS, *p.shape).astype(p.dtype), params)


def grads_at(i, params):
  return jax.tree.map(lambda g: g[i], all_grads(params))


def run(tx, params, steps=STEPS, mask_fn=None):
  """``steps`` updates with fixed random gradients; returns (params, opt_state)."""

  @jax.jit
  def body(params, state, grads, i):
    u, state = tx.update(jax.tree.map(lambda g: g[i], grads), state, params)
    return optax.apply_updates(params, u), state

  state = tx.init(params)
  if mask_fn is not None:
    params = mask_fn(params, state)
  grads = all_grads(params)
  for i in range(steps):
    params, state = body(params, state, grads, jnp.int32(i))
  return params, state


def mask_params(params, state):
  return sparse.apply_masks(params, sparse.get_masks(state))


INNERS = {
  'adamw': lambda: optax.adamw(1e-2, weight_decay=1e-2),
  'clip_adam': lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2)),
  'sgd_nesterov': lambda: optax.sgd(1e-2, momentum=0.9, nesterov=True),
  'adam_schedule': lambda: optax.inject_hyperparams(optax.adam)(
    learning_rate=optax.linear_schedule(1e-2, 1e-3, 20)
  ),
}


@pytest.mark.parametrize('name', sorted(INNERS))
def test_masked_weights_exactly_zero_and_survivors_match_dense_run(name):
  with jax.enable_x64(True):
    params = make_params(jnp.float64)
    masks = make_masks(params)
    sparse_params, state = run(
      sparse.masked_optimizer(INNERS[name](), masks), params, mask_fn=mask_params
    )
    dense_params, _ = run(INNERS[name](), params)
    for path in (('dense', 'kernel'), ('conv', 'kernel')):
      m = np.asarray(masks[path[0]][path[1]])
      w = np.asarray(sparse_params[path[0]][path[1]])
      assert np.all(w[~m] == 0.0)
      # Nonzeros per layer are exactly what the mask says.
      assert np.count_nonzero(w) == m.sum()
      # Dense-gradient mode: survivors follow the unmasked optimizer (to float64
      # rounding: the two programs are compiled differently).
      np.testing.assert_allclose(
        w[m], np.asarray(dense_params[path[0]][path[1]])[m], rtol=1e-13, atol=1e-15
      )
    # Dense leaves (no mask) are trained as by the inner optimizer.
    np.testing.assert_allclose(
      sparse_params['dense']['bias'], dense_params['dense']['bias'], rtol=1e-13
    )
    chex.assert_trees_all_equal(sparse.get_masks(state), masks)


def test_zeroes_unmasked_params_on_first_update():
  params = make_params()
  masks = make_masks(params)
  tx = sparse.masked_optimizer(optax.adamw(1e-2, weight_decay=0.1), masks)
  out, _ = run(tx, params, steps=1)  # params not pre-masked
  assert np.all(np.asarray(out['conv']['kernel'])[~np.asarray(masks['conv']['kernel'])] == 0.0)


def test_all_ones_masks_identical_to_inner():
  params = make_params()
  ones = sparse.dense_masks(params)
  a, _ = run(sparse.masked_optimizer(optax.adamw(1e-2, weight_decay=1e-2), ones), params, steps=10)
  b, _ = run(optax.adamw(1e-2, weight_decay=1e-2), params, steps=10)
  chex.assert_trees_all_close(a, b, rtol=1e-6, atol=1e-7)  # separately compiled: ulp differences


def test_masked_grad_mode_keeps_moments_zero_at_pruned():
  params = make_params()
  masks = make_masks(params)
  _, state = run(
    sparse.masked_optimizer(optax.adam(1e-2), masks, grad_mode='masked'),
    params,
    steps=10,
    mask_fn=mask_params,
  )
  adam_state = state.inner[0]
  for moment in (adam_state.mu, adam_state.nu):
    m = np.asarray(masks['conv']['kernel'])
    v = np.asarray(moment['conv']['kernel'])
    assert np.all(v[~m] == 0.0) and np.all(v[m] != 0.0)
  # Dense mode: shadow moments at pruned weights evolve (the reference).
  _, dense_state = run(
    sparse.masked_optimizer(optax.adam(1e-2), masks), params, steps=10, mask_fn=mask_params
  )
  v = np.asarray(dense_state.inner[0].mu['conv']['kernel'])
  assert np.all(v[~np.asarray(masks['conv']['kernel'])] != 0.0)


def test_mask_change_between_steps_regrown_weights_move():
  params = make_params()
  masks = make_masks(params, 0.3)
  tx = sparse.masked_optimizer(optax.adamw(1e-2, weight_decay=1e-2), masks)
  params, state = run(tx, params, steps=5, mask_fn=mask_params)
  grown = _prune_regrow.newly_alive(
    masks, jax.tree.map(lambda m: None if m is None else ~m, masks, is_leaf=lambda x: x is None)
  )
  new_masks = jax.tree.map(lambda m: None if m is None else ~m, masks, is_leaf=lambda x: x is None)
  state = sparse.replace_masks(state, new_masks)
  params = sparse.apply_masks(params, new_masks)
  u, state = tx.update(grads_at(9, params), state, params)
  params = optax.apply_updates(params, u)
  g = np.asarray(grown['conv']['kernel'])
  w = np.asarray(params['conv']['kernel'])
  assert np.all(np.isfinite(w))
  assert np.all(w[g] != 0.0) and np.all(w[~g] == 0.0)


def test_reset_moments_generic_over_states():
  params = make_params()
  masks = make_masks(params)
  where = jax.tree.map(lambda m: None if m is None else ~m, masks, is_leaf=lambda x: x is None)
  for inner in (optax.adam(1e-2), INNERS['adam_schedule'](), INNERS['sgd_nesterov']()):
    tx = sparse.masked_optimizer(inner, masks)
    _, state = run(tx, params, steps=3)
    new_state = sparse.replace_masks(state, masks, reset_at=where)
    before = jax.tree.leaves(state.inner)
    after = jax.tree.leaves(new_state.inner)
    changed = 0
    for b, a in zip(before, after):
      b, a = np.asarray(b), np.asarray(a)
      by_shape = {
        where[n]['kernel'].shape: np.asarray(where[n]['kernel']) for n in ('dense', 'conv')
      }
      if b.shape in by_shape:
        w = by_shape[b.shape]
        assert np.all(a[w] == 0.0)
        np.testing.assert_array_equal(a[~w], b[~w])
        changed += 1
      else:  # the dense bias's moments, counts, hyperparameters: untouched
        np.testing.assert_array_equal(a, b)
    assert changed >= 1


def test_find_get_replace_masks():
  params = make_params()
  masks = make_masks(params)
  assert sparse.get_masks(optax.adam(1e-3).init(params)) is None
  chain = optax.chain(optax.clip(1.0), sparse.masked_optimizer(optax.adam(1e-3), masks))
  state = chain.init(params)
  chex.assert_trees_all_equal(sparse.get_masks(state), masks)
  new = jax.tree.map(
    lambda m: None if m is None else jnp.ones_like(m), masks, is_leaf=lambda x: x is None
  )
  replaced = sparse.replace_masks(state, new)
  chex.assert_trees_all_equal(sparse.get_masks(replaced), new)
  # Round trip through jit.
  chex.assert_trees_all_equal(jax.jit(sparse.get_masks)(replaced), new)
  with pytest.raises(ValueError, match='no sparse masks'):
    sparse.replace_masks(optax.adam(1e-3).init(params), new)
  twice = optax.chain(
    sparse.masked_optimizer(optax.adam(1e-3), masks),
    sparse.masked_optimizer(optax.sgd(1e-3), masks),
  )
  with pytest.raises(ValueError, match='2 jaxgan.sparse.masked'):
    sparse.get_masks(twice.init(params))


def test_errors_before_tracing():
  params = make_params()
  masks = make_masks(params)
  tx = sparse.masked_optimizer(optax.adam(1e-3), masks)
  state = tx.init(params)
  with pytest.raises(ValueError, match='needs the params'):
    tx.update(params, state)
  with pytest.raises(ValueError, match='grad_mode'):
    sparse.masked_optimizer(optax.adam(1e-3), masks, grad_mode='sparse')
  bad = {
    'dense': {'kernel': jnp.ones((5, 6), bool), 'bias': None},
    'conv': {'kernel': masks['conv']['kernel']},
  }
  with pytest.raises(ValueError, match='shape'):
    sparse.masked_optimizer(optax.adam(1e-3), bad).init(params)
  with pytest.raises(ValueError, match='density'):
    sparse.mask_initializer(jax.random.PRNGKey(0), 1.5)


def test_mask_initializer_and_sparsify_player():
  params = make_params()
  tx = sparse.masked_optimizer(
    optax.adam(1e-3), sparse.mask_initializer(jax.random.PRNGKey(5), 0.5)
  )
  player = sparse.sparsify_player(Player(params=params, model_state={}, opt_state=tx.init(params)))
  masks = sparse.get_masks(player.opt_state)
  dens = sparse.erk_densities(params, 0.5)
  for name in ('dense', 'conv'):
    m = np.asarray(masks[name]['kernel'])
    assert m.sum() == round(dens[name]['kernel'] * m.size)
    assert np.count_nonzero(np.asarray(player.params[name]['kernel'])) == m.sum()
  assert masks['dense']['bias'] is None
  np.testing.assert_array_equal(player.params['dense']['bias'], params['dense']['bias'])
