"""Mask trees, exact top-k, uniform/ERK densities, random initial masks."""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan import sparse
from jaxgan.sparse import _distributions, _masks, _topk


class SmallNet(nn.Module):
  """Conv, BatchNorm, embedding, a classifier head and a Dense."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    h = nn.Conv(8, (3, 3))(x)
    h = nn.BatchNorm(use_running_average=not train)(h)
    e = nn.Embed(10, 8)(jnp.zeros((x.shape[0],), jnp.int32))
    h = h.mean(axis=(1, 2)) + e
    c = nn.Dense(3, name='classifier')(h)
    return nn.Dense(1)(h)[:, 0] + c.sum(-1)


def small_params():
  """SmallNet's params with random values (shapes by eval_shape: nothing compiles)."""
  shapes = jax.eval_shape(SmallNet().init, jax.random.PRNGKey(0), jnp.zeros((2, 6, 6, 3)))['params']
  rng = np.random.RandomState(0)
  return jax.tree.map(lambda s: rng.randn(*s.shape).astype(np.float32), shapes)


# ----------------------------------------------------------------------------
# topk_mask
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('k', [0, 1, 9, 10])
def test_topk_exact_count_with_heavy_ties(k):
  scores = jnp.array([0.0, 1.0, 1.0, 0.0, 1.0, -0.0, 0.5, 1.0, 0.0, 0.5])
  sel = np.asarray(_topk.topk_mask(scores, None, k))
  assert sel.sum() == k
  # Ranking: 1.0 at 1, 2, 4, 7; 0.5 at 6, 9; then the zeros by index 0, 3, 5, 8.
  order = [1, 2, 4, 7, 6, 9, 0, 3, 5, 8]
  expected = np.zeros(10, bool)
  expected[order[:k]] = True
  np.testing.assert_array_equal(sel, expected)


def test_topk_only_candidates_and_clipped_count():
  scores = jnp.array([5.0, 4.0, 3.0, 2.0, 1.0])
  cand = jnp.array([False, True, False, True, True])
  np.testing.assert_array_equal(_topk.topk_mask(scores, cand, 2), [False, True, False, True, False])
  # k larger than the number of candidates selects every candidate, nothing else.
  np.testing.assert_array_equal(_topk.topk_mask(scores, cand, 4), cand)


def test_topk_traced_k_compiles_once():
  @jax.jit
  @chex.assert_max_traces(n=1)
  def select(scores, k):
    return _topk.topk_mask(scores, None, k)

  scores = jax.random.normal(jax.random.PRNGKey(0), (50,))
  ranks = np.argsort(-np.asarray(scores), kind='stable')
  for k in (0, 3, 17, 50):
    sel = np.asarray(select(scores, jnp.int32(k)))
    assert sel.sum() == k
    assert set(np.flatnonzero(sel)) == set(ranks[:k])


def test_topk_rejects_non_flat_scores():
  with pytest.raises(ValueError, match='flat'):
    _topk.topk_mask(jnp.ones((2, 3)), None, 1)


# ----------------------------------------------------------------------------
# Which leaves are maskable
# ----------------------------------------------------------------------------


def test_default_filter_keeps_kernels_only():
  template = _masks.maskable_tree(small_params())
  flat = dict(_masks.leaves_with_paths(template))
  assert flat['Conv_0/kernel'] is True
  assert flat['Dense_0/kernel'] is True
  for name in (
    'Conv_0/bias',
    'BatchNorm_0/scale',
    'BatchNorm_0/bias',
    'Embed_0/embedding',
    'classifier/kernel',
    'classifier/bias',
    'Dense_0/bias',
  ):
    assert flat[name] is None, name


def test_exclude_and_custom_filter():
  params = small_params()
  flat = dict(_masks.leaves_with_paths(_masks.maskable_tree(params, exclude=(r'^Conv_0/',))))
  assert flat['Conv_0/kernel'] is None and flat['Dense_0/kernel'] is True
  only_conv = _masks.maskable_tree(params, filter_fn=lambda path, leaf: path.startswith('Conv'))
  flat = dict(_masks.leaves_with_paths(only_conv))
  assert flat['Conv_0/kernel'] is True and flat['Dense_0/kernel'] is None
  with pytest.raises(ValueError, match='sequence of regular expressions'):
    _masks.maskable_tree(params, exclude='Conv')


def test_apply_masks_zeroes_and_leaves_dense_leaves_untouched():
  params = small_params()
  m = sparse.random_masks(jax.random.PRNGKey(1), params, sparse.uniform_densities(params, 0.5))
  out = sparse.apply_masks(params, m)
  for (name, mk), p, o in zip(
    _masks.leaves_with_paths(m), jax.tree.leaves(params), jax.tree.leaves(out)
  ):
    if mk is None:
      assert o is p, name
    else:
      np.testing.assert_array_equal(o, np.where(mk, p, 0.0))
  assert sparse.apply_masks(params, None) is params


def test_check_masks_errors():
  params = {'a': jnp.ones((2, 3)), 'b': jnp.ones(3)}
  with pytest.raises(ValueError, match='does not mirror'):
    _masks.check_masks(params, {'a': jnp.ones((2, 3), bool)})
  with pytest.raises(ValueError, match='shape'):
    _masks.check_masks(params, {'a': jnp.ones((3, 2), bool), 'b': None})
  with pytest.raises(ValueError, match='bool'):
    _masks.check_masks(params, {'a': jnp.ones((2, 3)), 'b': None})


# ----------------------------------------------------------------------------
# Densities
# ----------------------------------------------------------------------------


def test_erk_hand_computed_small_net():
  # raw = sum/prod: (2, 2) -> 1.0, (10, 10) -> 0.2, (20, 20) -> 0.1; N = 504, d = 0.5.
  # Round 1: eps = 252 / (4 + 20 + 40) = 3.9375, 1.0 * eps > 1 -> layer a dense.
  # Round 2: eps = (252 - 4) / (20 + 40) = 62 / 15; b = 0.2 eps, c = 0.1 eps.
  got = _distributions.erk_from_shapes({'a': (2, 2), 'b': (10, 10), 'c': (20, 20)}, 0.5)
  eps = 62.0 / 15.0
  assert got == pytest.approx({'a': 1.0, 'b': 0.2 * eps, 'c': 0.1 * eps}, rel=1e-12)
  total = 4 * got['a'] + 100 * got['b'] + 400 * got['c']
  assert total == pytest.approx(0.5 * 504, rel=1e-12)


def test_erk_two_layer_net_from_params():
  params = {
    'l1': {'kernel': jnp.zeros((8, 16)), 'bias': jnp.zeros(16)},
    'c': {'kernel': jnp.zeros((3, 3, 4, 8))},
  }
  d = sparse.erk_densities(params, 0.3)
  eps = 0.3 * (128 + 288) / (24 / 128 * 128 + 18 / 288 * 288)
  assert d['l1']['bias'] is None
  assert d['l1']['kernel'] == pytest.approx(eps * 24 / 128, rel=1e-12)
  assert d['c']['kernel'] == pytest.approx(eps * 18 / 288, rel=1e-12)


def sngan_shapes():
  g = {'l1': (4096, 128), 'c5': (3, 256, 3, 3)}
  for b in ('block2', 'block3', 'block4'):
    g.update(
      {f'{b}.c1': (256, 256, 3, 3), f'{b}.c2': (256, 256, 3, 3), f'{b}.c_sc': (256, 256, 1, 1)}
    )
  d = {
    'block1.c1': (128, 3, 3, 3),
    'block1.c2': (128, 128, 3, 3),
    'block1.c_sc': (128, 3, 1, 1),
    'block2.c1': (128, 128, 3, 3),
    'block2.c2': (128, 128, 3, 3),
    'block2.c_sc': (128, 128, 1, 1),
    'l5': (1, 128),
  }
  for b in ('block3', 'block4'):
    d.update({f'{b}.c1': (128, 128, 3, 3), f'{b}.c2': (128, 128, 3, 3)})
  return g, d


def test_erk_reproduces_reference_sngan_vectors():
  """ddst.md §5 test vectors (4 decimals)."""
  g, d = sngan_shapes()
  assert sum(np.prod(s) for s in g.values()) == 4_266_752
  assert sum(np.prod(s) for s in d.values()) == 1_052_544
  eg = _distributions.erk_from_shapes(g, 0.1)
  assert eg['l1'] == pytest.approx(0.3811, abs=5e-5)
  assert eg['block3.c1'] == pytest.approx(0.0415, abs=5e-5)
  assert eg['block4.c_sc'] == pytest.approx(0.3710, abs=5e-5)
  assert eg['c5'] == 1.0
  eg3 = _distributions.erk_from_shapes(g, 0.3)
  assert eg3['l1'] == eg3['c5'] == eg3['block2.c_sc'] == 1.0
  assert eg3['block2.c2'] == pytest.approx(0.1560, abs=5e-5)
  eg5 = _distributions.erk_from_shapes(g, 0.5)
  assert eg5['block2.c1'] == pytest.approx(0.3972, abs=5e-5)
  ed = _distributions.erk_from_shapes(d, 0.1)
  assert ed['block1.c1'] == ed['block1.c_sc'] == ed['l5'] == 1.0
  assert ed['block3.c2'] == pytest.approx(0.0860, abs=5e-5)
  assert ed['block2.c_sc'] == pytest.approx(0.7624, abs=5e-5)
  ed3 = _distributions.erk_from_shapes(d, 0.3)
  assert ed3['block2.c1'] == pytest.approx(0.2862, abs=5e-5)
  for dens, shapes in ((eg, g), (ed, d), (eg3, g)):
    n = sum(np.prod(s) for s in shapes.values())
    target = {id(eg): 0.1, id(ed): 0.1, id(eg3): 0.3}[id(dens)]
    assert sum(dens[k] * np.prod(s) for k, s in shapes.items()) == pytest.approx(
      target * n, rel=1e-9
    )


def test_erk_invariant_to_axis_order():
  a = _distributions.erk_from_shapes({'x': (3, 3, 16, 32), 'y': (64, 10)}, 0.2)
  b = _distributions.erk_from_shapes({'x': (32, 16, 3, 3), 'y': (10, 64)}, 0.2)
  assert a == pytest.approx(b, rel=1e-15)


def test_uniform_and_bad_density():
  params = small_params()
  d = _distributions.density_items(sparse.uniform_densities(params, 0.25))
  assert d == {'Conv_0/kernel': 0.25, 'Dense_0/kernel': 0.25}
  with pytest.raises(ValueError, match=r'\(0, 1\]'):
    sparse.erk_densities(params, 0.0)
  with pytest.raises(ValueError, match='distribution'):
    _distributions.layer_densities_for(params, 0.5, 'er')


# ----------------------------------------------------------------------------
# Random masks
# ----------------------------------------------------------------------------


def test_random_masks_exact_counts_and_determinism():
  params = {'a': jnp.zeros((30, 20)), 'b': jnp.zeros((3, 3, 8, 16)), 'bias': jnp.zeros(16)}
  dens = sparse.erk_densities(params, 0.2)
  m1 = sparse.random_masks(jax.random.PRNGKey(3), params, dens)
  m2 = sparse.random_masks(jax.random.PRNGKey(3), params, dens)
  m3 = sparse.random_masks(jax.random.PRNGKey(4), params, dens)
  assert m1['bias'] is None
  for name in ('a', 'b'):
    assert m1[name].dtype == jnp.bool_
    assert int(m1[name].sum()) == round(dens[name] * m1[name].size)
  chex.assert_trees_all_equal(m1, m2)
  assert not np.array_equal(m1['a'], m3['a'])
  assert sparse.num_maskable(m1) == 600 + 1152


def test_random_masks_bernoulli_is_approximate():
  params = {'a': jnp.zeros((200, 200))}
  m = sparse.random_masks(jax.random.PRNGKey(0), params, {'a': 0.3}, sampling='bernoulli')
  frac = float(m['a'].mean())
  assert abs(frac - 0.3) < 0.01
  with pytest.raises(ValueError, match='sampling'):
    sparse.random_masks(jax.random.PRNGKey(0), params, {'a': 0.3}, sampling='binomial')


def test_counts_and_densities():
  m = {'a': jnp.array([[True, False], [True, True]]), 'b': None, 'c': jnp.zeros((4,), bool)}
  assert int(sparse.count_alive(m)) == 3
  assert sparse.num_maskable(m) == 8
  assert float(sparse.global_density(m)) == pytest.approx(3 / 8)
  assert sparse.layer_densities(m) == {'a': 0.75, 'c': 0.0}
  counts = _masks.layer_counts(m)
  assert int(counts['a']) == 3 and counts['b'] is None and int(counts['c']) == 0


def test_dense_masks_all_alive():
  m = sparse.dense_masks(small_params())
  assert int(sparse.count_alive(m)) == sparse.num_maskable(m) == 3 * 3 * 3 * 8 + 8
