"""Tests of jaxgan.sparse.lottery (IMP, rewinding, tickets)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats
from tiny_models import IMAGE_SHAPE, LATENT_DIM, TinyD, TinyG

from experiments import lottery_mnist
from jaxgan import models, run_setup, sparse
from jaxgan.nn import ConvTranspose4x4s2, Project4x4
from jaxgan.sparse import lottery
from jaxgan.sparse._masks import leaves_with_paths
from jaxgan.sparse._optimizer import find_mask_state
from jaxgan.state import create_state

# Maskable kernels of 4500 + 3500 + 2000 = 10000 = 16 * 5^4 weights, plus dense biases.
SHAPES = {
  'Conv_0': {'kernel': (3, 3, 20, 25), 'bias': (25,)},
  'Conv_1': {'kernel': (2, 2, 25, 35), 'bias': (35,)},
  'Dense_0': {'kernel': (16, 125), 'bias': (125,)},
}


def make_params(seed=0, shapes=SHAPES):
  """Params with distinct magnitudes (a random permutation of a fine grid)."""
  rng = np.random.default_rng(seed)
  leaves, treedef = jax.tree.flatten(shapes, is_leaf=lambda x: isinstance(x, tuple))
  total = sum(int(np.prod(s)) for s in leaves)
  values = rng.permutation(np.arange(1, total + 1)) / total * rng.choice([-1.0, 1.0], total)
  out, start = [], 0
  for s in leaves:
    n = int(np.prod(s))
    out.append(jnp.asarray(values[start : start + n].reshape(s), jnp.float32))
    start += n
  return jax.tree.unflatten(treedef, out)


def kernels(tree):
  return [tree[k]['kernel'] for k in sorted(SHAPES)]


def alive(masks):
  return int(sparse.count_alive(masks))


def ref_alive(n0, rounds, rate=0.2):
  """An independent recursion: Python's round (half to even) of rate * n."""
  n = [n0]
  for _ in range(rounds):
    n.append(n[-1] - round(rate * n[-1]))
  return n


# ----------------------------------------------------------------------------
# Counts and selection
# ----------------------------------------------------------------------------


def test_prune_count_rounding():
  assert lottery.prune_count(12, 0.2) == 2  # 2.4
  assert lottery.prune_count(13, 0.2) == 3  # 2.6
  assert lottery.prune_count(5, 0.5) == 2  # 2.5 -> 2 (half to even, as torch)
  assert lottery.prune_count(7, 0.5) == 4  # 3.5 -> 4
  assert lottery.prune_count(7, 0.5, 'floor') == 3
  assert lottery.expected_alive(10000, 4) == [10000, 8000, 6400, 5120, 4096]


def test_global_sparsity_after_r_rounds_is_exact():
  params = make_params()
  masks = sparse.dense_masks(params)
  assert sparse.num_maskable(masks) == 10000 and masks['Conv_0']['bias'] is None
  history = [masks]
  for r in range(1, 5):
    masks = lottery.imp_round(make_params(seed=r), masks)  # new "trained" weights each round
    history.append(masks)
    assert alive(masks) == round(10000 * 0.8**r)  # 8000, 6400, 5120, 4096
    assert float(sparse.global_density(masks)) == pytest.approx(0.8**r, abs=1e-7)
  assert 1.0 - alive(masks) / 10000 == pytest.approx(1 - 0.8**4, abs=1e-12)  # 59.04 %
  for outer, inner in zip(history, history[1:]):
    assert lottery.is_nested(inner, outer)


def test_global_counts_follow_the_documented_rounding_for_any_size():
  shapes = {'a': {'kernel': (7, 11)}, 'b': {'kernel': (3, 3, 5, 3)}, 'c': {'kernel': (13, 1)}}
  n0 = 77 + 135 + 13
  params = make_params(shapes=shapes)
  masks = sparse.dense_masks(params)
  want = ref_alive(n0, 8)
  for r in range(1, 9):
    masks = lottery.imp_round(params, masks)
    assert alive(masks) == want[r]
    assert abs(alive(masks) - n0 * 0.8**r) <= 2.5  # 0.5 / rate
  floor = sparse.dense_masks(params)
  for _ in range(3):
    floor = lottery.imp_round(params, floor, rounding='floor')
  assert alive(floor) == lottery.expected_alive(n0, 3, rounding='floor')[-1]


def test_global_round_prunes_the_smallest_alive_magnitudes():
  params = make_params()
  masks = lottery.imp_round(params, sparse.dense_masks(params))
  trained = make_params(seed=5)
  new = lottery.imp_round(trained, masks)
  # Independent selection: the round(0.2 * 8000) = 1600 smallest |w| among alive weights.
  w = np.concatenate([np.abs(np.asarray(k)).ravel() for k in kernels(trained)])
  old = np.concatenate([np.asarray(m).ravel() for m in kernels(masks)])
  order = np.argsort(np.where(old, w, np.inf))
  expect = old.copy()
  expect[order[:1600]] = False
  got = np.concatenate([np.asarray(m).ravel() for m in kernels(new)])
  np.testing.assert_array_equal(got, expect)


def test_global_ranking_empties_a_layer_of_tiny_weights():
  params = make_params()
  params['Dense_0']['kernel'] = params['Dense_0']['kernel'] * 1e-6  # 2000 tiny weights
  masks = lottery.imp_round(params, sparse.dense_masks(params))  # prunes 2000
  assert int(jnp.sum(masks['Dense_0']['kernel'])) == 0
  assert int(jnp.sum(masks['Conv_0']['kernel'])) == 4500


def test_layer_scope_hits_per_layer_counts():
  params = make_params()
  masks = sparse.dense_masks(params)
  sizes = {k: int(np.prod(SHAPES[k]['kernel'])) for k in SHAPES}
  for r in range(1, 4):
    trained = make_params(seed=10 + r)
    new = lottery.imp_round(trained, masks, scope='layer')
    for k, n in sizes.items():
      assert int(jnp.sum(new[k]['kernel'])) == ref_alive(n, r)[r]
      # Inside each layer: the smallest |w| among the layer's alive weights went.
      old = np.asarray(masks[k]['kernel']).ravel()
      w = np.abs(np.asarray(trained[k]['kernel'])).ravel()
      expect = old.copy()
      expect[np.argsort(np.where(old, w, np.inf))[: round(0.2 * old.sum())]] = False
      np.testing.assert_array_equal(np.asarray(new[k]['kernel']).ravel(), expect)
    assert lottery.is_nested(new, masks)
    masks = new


# ----------------------------------------------------------------------------
# Rewinding and the search
# ----------------------------------------------------------------------------


def test_rewind_is_initial_on_kept_entries_and_zero_elsewhere():
  theta0 = make_params(seed=1)
  masks = lottery.imp_round(make_params(seed=2), sparse.dense_masks(theta0))
  rewound = lottery.rewind(theta0, masks)
  for k in SHAPES:
    m = np.asarray(masks[k]['kernel'])
    w0, w = np.asarray(theta0[k]['kernel']), np.asarray(rewound[k]['kernel'])
    np.testing.assert_array_equal(w[m], w0[m])
    np.testing.assert_array_equal(w[~m], 0.0)
    np.testing.assert_array_equal(rewound[k]['bias'], theta0[k]['bias'])  # dense leaves
  assert lottery.rewind(theta0, None) is theta0


def test_find_ticket_rounds_rewinds_and_bookkeeping():
  theta0, phi0 = make_params(seed=1), make_params(seed=2)
  late = make_params(seed=3)  # a "step-k" copy of G for late rewinding
  calls, saved = [], []

  def train_fn(params, masks, r):
    calls.append((params, masks, r))
    # "Training" moves the weights; pruned weights stay zero as with a masked optimizer.
    moved = jax.tree.map(lambda p, q: p + 0.3 * q, params['g'], make_params(seed=20 + r))
    return {'g': sparse.apply_masks(moved, masks['g']), 'd': params['d']}

  tickets = lottery.find_ticket(
    train_fn,
    {'g': theta0, 'd': phi0},
    3,
    rewind_params={'g': late, 'd': phi0},
    on_round=lambda t, trained: saved.append((t.round, trained)),
  )
  assert [t.round for t in tickets] == [0, 1, 2, 3]
  assert [c[2] for c in calls] == [0, 1, 2]
  assert [s[0] for s in saved] == [1, 2, 3]
  for t in tickets:
    assert t.masks['d'] is None and t.density['d'] == 1.0
    assert t.density['g'] == pytest.approx(0.8**t.round, abs=1e-7)
  for (params, masks, _), t in zip(calls, tickets):  # round r trains the masks of ticket r
    jax.tree.map(np.testing.assert_array_equal, masks['g'], t.masks['g'])
    jax.tree.map(np.testing.assert_array_equal, params['g'], lottery.rewind(late, t.masks['g']))
    jax.tree.map(np.testing.assert_array_equal, params['d'], phi0)  # D dense, reset every round
  for a, b in zip(tickets, tickets[1:]):
    assert lottery.is_nested(b.masks['g'], a.masks['g'])
  # The masks of round r are the magnitudes of that round's trained G.
  want = lottery.imp_round(saved[1][1]['g'], tickets[1].masks['g'])
  jax.tree.map(np.testing.assert_array_equal, tickets[2].masks['g'], want)


def test_find_ticket_prunes_g_and_d_separately_and_respects_exclude():
  theta0 = make_params(seed=1)
  # D's weights are all tiny: a ranking across G and D would empty D first.
  phi0 = jax.tree.map(lambda x: x * 1e-6, make_params(seed=2))
  train_fn = lambda params, masks, r: params
  tickets = lottery.find_ticket(
    train_fn, {'g': theta0, 'd': phi0}, 2, prune=('g', 'd'), exclude=('Dense_0',)
  )
  last = tickets[-1]
  assert last.masks['g']['Dense_0']['kernel'] is None  # excluded: stays dense
  n = 4500 + 3500
  for net in ('g', 'd'):
    assert alive(last.masks[net]) == ref_alive(n, 2)[2]
    assert last.density[net] == pytest.approx(ref_alive(n, 2)[2] / n)


def test_find_ticket_errors():
  p = {'g': make_params()}
  train = lambda params, masks, r: params
  with pytest.raises(ValueError, match='rate'):
    lottery.find_ticket(train, p, 1, rate=1.0)
  with pytest.raises(ValueError, match='rate'):
    lottery.imp_round(p['g'], sparse.dense_masks(p['g']), rate=0.0)
  with pytest.raises(ValueError, match='rounding'):
    lottery.find_ticket(train, p, 1, rounding='ceil')
  with pytest.raises(ValueError, match='scope'):
    lottery.find_ticket(train, p, 1, scope='network')
  with pytest.raises(ValueError, match='rounds'):
    lottery.find_ticket(train, p, -1)
  with pytest.raises(ValueError, match=r"prune names \['d'\]"):
    lottery.find_ticket(train, p, 1, prune=('d',))
  with pytest.raises(ValueError, match='sequence of network names'):
    lottery.find_ticket(train, p, 1, prune='g')
  with pytest.raises(ValueError, match='no prunable leaf'):
    lottery.find_ticket(train, p, 1, exclude=('kernel',))
  with pytest.raises(ValueError, match='mirror'):
    lottery.imp_round(p['g'], {'Conv_0': None}, rate=0.2)


# ----------------------------------------------------------------------------
# A fresh run of a ticket (GANState level) and saving
# ----------------------------------------------------------------------------


def test_rewind_state_fresh_optimizer_ema_and_masks():
  g_mod, d_mod = TinyG(), TinyD()
  g_tx = sparse.masked_optimizer(optax.adam(1e-2), sparse.dense_masks, grad_mode='masked')
  d_tx = optax.adam(1e-2)
  init = jax.jit(
    lambda key: create_state(
      key,
      g_module=g_mod,
      d_module=d_mod,
      g_tx=g_tx,
      d_tx=d_tx,
      latent_dim=LATENT_DIM,
      image_shape=IMAGE_SHAPE,
    )
  )(jax.random.PRNGKey(0))  # one compile instead of many eager ops
  g_masks = lottery.imp_round(init.g.params, sparse.get_masks(init.g.opt_state), rate=0.5)
  state = lottery.rewind_state(init, g_tx, d_tx, {'g': g_masks})
  jax.tree.map(
    np.testing.assert_array_equal, state.g.params, lottery.rewind(init.g.params, g_masks)
  )
  jax.tree.map(np.testing.assert_array_equal, state.ema_params, state.g.params)
  jax.tree.map(np.testing.assert_array_equal, state.d.params, init.d.params)
  jax.tree.map(
    np.testing.assert_array_equal, sparse.get_masks(state.g.opt_state), g_masks
  )  # masks installed
  fresh = g_tx.init(state.g.params)
  jax.tree.map(
    np.testing.assert_array_equal,
    find_mask_state(state.g.opt_state).inner,
    fresh.inner,
  )  # Adam restarted

  # Training the ticket keeps the pruned weights at exactly zero.
  @jax.jit
  def one_step(params, opt_state):
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = g_tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates)

  new = one_step(state.g.params, state.g.opt_state)
  for m, w in zip(jax.tree.leaves(g_masks), [new['Dense_0']['kernel'], new['Dense_1']['kernel']]):
    np.testing.assert_array_equal(np.asarray(w)[~np.asarray(m)], 0.0)
  with pytest.raises(ValueError, match='no sparse masks'):
    lottery.rewind_state(init, g_tx, d_tx, {'d': sparse.dense_masks(init.d.params)})
  with pytest.raises(ValueError, match="'g' and 'd'"):
    lottery.rewind_state(init, g_tx, d_tx, {'gen': g_masks})


def test_masks_save_and_load(tmp_path):
  params = make_params()
  masks = lottery.imp_round(params, sparse.dense_masks(params))
  arrays = lottery.masks_to_arrays(masks)
  assert set(arrays) == {'Conv_0/kernel', 'Conv_1/kernel', 'Dense_0/kernel'}
  np.savez(tmp_path / 'round1.npz', **arrays)
  with np.load(tmp_path / 'round1.npz') as f:
    loaded = lottery.masks_from_arrays(dict(f), params)
  assert loaded['Conv_0']['bias'] is None
  jax.tree.map(np.testing.assert_array_equal, loaded, masks)
  with pytest.raises(ValueError, match='match no leaf'):
    lottery.masks_from_arrays({'Conv_9/kernel': arrays['Conv_0/kernel']}, params)
  with pytest.raises(ValueError, match='shape'):
    lottery.masks_from_arrays({'Conv_0/kernel': np.ones((2, 2), bool)}, params)


# ----------------------------------------------------------------------------
# The prunable set (conv and transposed-conv kernels by default)
# ----------------------------------------------------------------------------


class ConvNet(nn.Module):
  """One layer of each kind: Flax Conv/ConvTranspose, jaxgan's transposed convs, Dense, Embed."""

  @nn.compact
  def __call__(self, z, y):
    h = Project4x4(4, name='project')(z)  # a ConvTranspose2d(k4, s1, p0) on a 1x1 input
    h = ConvTranspose4x4s2(3, name='up')(h) + nn.Embed(5, 3, name='embed')(y)[:, None, None]
    h = nn.ConvTranspose(3, (3, 3), name='flax_up')(h)
    h = nn.Conv(2, (3, 3), name='conv')(h)
    return nn.Dense(1, name='head')(h.reshape(h.shape[0], -1)) + nn.LayerNorm(name='ln')(z)


def convnet_params():
  shapes = jax.eval_shape(
    lambda: ConvNet().init(jax.random.PRNGKey(0), jnp.zeros((2, 6)), jnp.zeros((2,), jnp.int32))
  )
  return shapes['params']


def masked_names(masks):
  return {name for name, m in leaves_with_paths(masks) if m is not None}


CONV_KERNELS = {'project/kernel', 'up/kernel', 'flax_up/kernel', 'conv/kernel'}


def test_default_prunable_set_is_conv_and_transposed_conv_kernels():
  params = convnet_params()
  assert masked_names(lottery.dense_masks(params)) == CONV_KERNELS
  assert masked_names(lottery.dense_masks(params, layers=('conv', 'dense'))) == CONV_KERNELS | {
    'head/kernel'
  }
  every = lottery.dense_masks(params, layers=('conv', 'dense', 'embed'))
  assert masked_names(every) == CONV_KERNELS | {'head/kernel', 'embed/embedding'}
  assert masked_names(lottery.dense_masks(params, exclude=('^up/',))) == CONV_KERNELS - {
    'up/kernel'
  }
  only_head = lottery.dense_masks(params, filter_fn=lambda path, leaf: path == 'head/kernel')
  assert masked_names(only_head) == {'head/kernel'}


def test_dcgan_generators_prune_their_convs_not_the_dense_projection():
  for size, convs in [
    (28, {'up1/kernel', 'up2/kernel'}),
    (32, {'up1/kernel', 'up2/kernel', 'up3/kernel', 'out/kernel'}),
    (64, {'project/kernel', 'up1/kernel', 'up2/kernel', 'up3/kernel', 'up4/kernel'}),
  ]:
    g, _ = models.get_models(f'dcgan{size}', image_shape=(size, size, 1), width=8)
    params = jax.eval_shape(lambda g=g: g.init(jax.random.PRNGKey(0), jnp.zeros((2, 4)), False))
    assert masked_names(lottery.dense_masks(params['params'])) == convs, size
  # The default search leaves G's Dense layer of the test net dense too.
  tickets = lottery.find_ticket(lambda p, m, r: p, {'g': make_params()}, 1)
  assert tickets[1].masks['g']['Dense_0']['kernel'] is None
  assert alive(tickets[1].masks['g']) == ref_alive(4500 + 3500, 1)[1]


def test_prunable_set_errors():
  params = convnet_params()
  with pytest.raises(ValueError, match="layers must be.*'conv'"):
    lottery.dense_masks(params, layers='conv')
  with pytest.raises(ValueError, match='layers must be'):
    lottery.dense_masks(params, layers=('linear',))
  with pytest.raises(ValueError, match='not both'):
    lottery.dense_masks(params, layers=('conv',), filter_fn=lambda p, x: True)
  dense_only = {'Dense_0': {'kernel': jnp.ones((3, 4))}}
  with pytest.raises(ValueError, match=r"no prunable leaf.*layers=\('conv', 'dense'\)"):
    lottery.find_ticket(lambda p, m, r: p, {'g': dense_only}, 1)


def test_kernel_density_counts_dense_kernels_as_alive():
  params = make_params()
  masks = lottery.imp_round(params, lottery.dense_masks(params))  # 1600 of 8000 conv weights go
  assert lottery.kernel_density(params, masks) == pytest.approx(1.0 - 1600 / 10000)
  assert float(sparse.global_density(masks)) == pytest.approx(0.8)


# ----------------------------------------------------------------------------
# How close a round comes to pruning at initialisation
# ----------------------------------------------------------------------------


def lowest(values, k):
  return set(np.argsort(np.abs(values), kind='stable')[:k].tolist())


def test_init_agreement_against_scipy_and_an_argsort():
  theta0 = make_params(seed=1)
  masks = lottery.imp_round(make_params(seed=4), lottery.dense_masks(theta0), rate=0.5)
  rng = np.random.default_rng(0)
  trained = jax.tree.map(lambda w: w * rng.uniform(0.2, 1.8, w.shape), theta0)  # correlated
  got = lottery.init_agreement(theta0, trained, masks)

  alive_of = lambda tree: np.concatenate(
    [np.asarray(tree[k]['kernel'])[np.asarray(masks[k]['kernel'])] for k in ('Conv_0', 'Conv_1')]
  )
  a, b = alive_of(theta0), alive_of(trained)
  assert a.size == 4000
  want = scipy.stats.spearmanr(np.abs(a), np.abs(b)).statistic
  assert 0.3 < want < 0.99
  assert got['spearman'] == pytest.approx(want, abs=1e-12)
  k = round(0.2 * a.size)
  assert got['overlap'] == pytest.approx(len(lowest(a, k) & lowest(b, k)) / k)
  assert 0.2 < got['overlap'] < 1.0

  same = lottery.init_agreement(theta0, theta0, masks)
  assert same == pytest.approx({'spearman': 1.0, 'overlap': 1.0})
  # A ranking unrelated to theta0 overlaps about `rate` of the time.
  other = lottery.init_agreement(theta0, make_params(seed=9), masks)
  assert abs(other['spearman']) < 0.05 and other['overlap'] == pytest.approx(0.2, abs=0.05)


def test_find_ticket_records_each_rounds_agreement():
  theta0 = make_params(seed=1)
  trained = [make_params(seed=10 + r) for r in range(2)]
  train_fn = lambda params, masks, r: {'g': sparse.apply_masks(trained[r], masks['g'])}
  tickets = lottery.find_ticket(train_fn, {'g': theta0}, 2)
  assert tickets[0].agreement is None
  for r in range(2):
    want = lottery.init_agreement(
      theta0, sparse.apply_masks(trained[r], tickets[r].masks['g']), tickets[r].masks['g']
    )
    assert tickets[r + 1].agreement == {'g': want}


# ----------------------------------------------------------------------------
# The search program (experiments.lottery_mnist), its training faked
# ----------------------------------------------------------------------------


class FakeTraining:
  """Stands in for train.train_and_evaluate: raw G and EMA are theta0 * mask times random factors."""

  def __init__(self, theta0):
    self.theta0, self.rounds = theta0, []

  def __call__(self, cfg, workdir):
    with np.load(cfg.lottery.ticket) as f:
      masks = lottery.masks_from_arrays(dict(f), self.theta0)
    rng = np.random.default_rng(len(self.rounds))
    scaled = lambda: jax.tree.map(lambda w: w * rng.uniform(0.1, 3.0, w.shape), self.theta0)
    raw, ema = sparse.apply_masks(scaled(), masks), sparse.apply_masks(scaled(), masks)
    self.rounds.append((masks, raw, ema))
    return SimpleNamespace(g=SimpleNamespace(params=raw), ema_params=ema)


@pytest.fixture
def fake_search(monkeypatch):
  cfg = lottery_mnist.base_config(0.1, 8, 2, 0)
  theta0 = jax.device_get(run_setup.build_run(cfg).init_state(jax.random.PRNGKey(0)).g.params)
  fake = FakeTraining(theta0)
  monkeypatch.setattr(lottery_mnist.train, 'train_and_evaluate', fake)
  return theta0, fake


def conv_values(tree, masks):
  names = sorted(masked_names(masks))
  by_name = dict(leaves_with_paths(tree))
  mask_of = dict(leaves_with_paths(masks))
  return np.concatenate([np.asarray(by_name[n])[np.asarray(mask_of[n])] for n in names])


def test_search_prunes_convs_by_the_raw_g_and_logs_the_agreement(fake_search, tmp_path):
  theta0, fake = fake_search
  report = lottery_mnist.search(0.1, 2, 2, 0, 8, tmp_path)
  assert [row['round'] for row in report] == [0, 1, 2]
  sizes = {name: int(np.prod(w.shape)) for name, w in leaves_with_paths(theta0) if w.ndim >= 2}
  assert set(sizes) == {'project/kernel', 'up1/kernel', 'up2/kernel'}
  n_conv = sizes['up1/kernel'] + sizes['up2/kernel']
  for r in range(2):
    masks, raw, ema = fake.rounds[r]
    assert masked_names(masks) == {'up1/kernel', 'up2/kernel'}  # the Dense projection stays dense
    with np.load(lottery_mnist.ticket_path(tmp_path, r + 1)) as f:
      got = lottery.masks_from_arrays(dict(f), theta0)
    # Round r + 1 drops the smallest 20% of the alive conv weights of the RAW trained G.
    a, w, e = conv_values(theta0, masks), conv_values(raw, masks), conv_values(ema, masks)
    k = round(0.2 * w.size)
    assert len(lowest(w, k)) == k and len(lowest(w, k) & lowest(e, k)) < k  # raw != EMA choice
    kept = conv_values(got, masks)
    assert set(np.flatnonzero(~kept).tolist()) == lowest(w, k)
    row = report[r + 1]
    assert row['spearman_theta0'] == pytest.approx(
      scipy.stats.spearmanr(np.abs(a), np.abs(w)).statistic, abs=1e-9
    )
    assert row['overlap_theta0'] == pytest.approx(len(lowest(a, k) & lowest(w, k)) / k)
    alive_conv = w.size - k
    assert row['density'] == pytest.approx(alive_conv / n_conv)
    total = sum(sizes.values())
    assert row['g_kernel_density'] == pytest.approx((alive_conv + sizes['project/kernel']) / total)
  logged = json.loads((tmp_path / 'tickets.json').read_text())
  assert logged == report
  # A finished search is reused as it is, agreement included.
  assert lottery_mnist.search(0.1, 2, 2, 0, 8, tmp_path) == report and len(fake.rounds) == 2


def test_search_resumes_from_its_small_files_alone(fake_search, tmp_path, monkeypatch):
  """Tickets in one directory, round runs in another: a search whose runs are gone (another
  machine) resumes from the tickets, and each trained round reports the files it added."""
  theta0, fake = fake_search
  workdirs, added = [], []
  record = fake.__call__
  monkeypatch.setattr(
    lottery_mnist.train, 'train_and_evaluate', lambda cfg, w: workdirs.append(w) or record(cfg, w)
  )
  tickets, runs = tmp_path / 'tickets', tmp_path / 'runs'
  report = lottery_mnist.search(0.1, 1, 2, 0, 8, tickets, runs_dir=runs, on_round=added.append)
  assert workdirs == [runs / 'round0'] and len(fake.rounds) == 1
  assert added == [
    [
      tickets / 'search.json',
      lottery_mnist.ticket_path(tickets, 0),
      lottery_mnist.agreement_path(tickets, 1),
      lottery_mnist.ticket_path(tickets, 1),
    ]
  ]
  assert all(p.exists() for p in added[0])
  assert lottery_mnist.search(0.1, 2, 2, 0, 8, tickets, runs_dir=tmp_path / 'new')[:2] == report
  assert workdirs[1:] == [tmp_path / 'new' / 'round1']  # round 0 was not trained again
  with np.load(lottery_mnist.ticket_path(tickets, 1)) as f:
    masks = lottery.masks_from_arrays(dict(f), theta0)
  jax.tree.map(np.testing.assert_array_equal, masks, fake.rounds[1][0])


def test_search_ema_ranking_and_prunable_set_are_options(fake_search, tmp_path):
  theta0, fake = fake_search
  lottery_mnist.search(0.1, 1, 2, 0, 8, tmp_path / 'ema', rank='ema', layers=('conv', 'dense'))
  masks, _, ema = fake.rounds[0]
  assert masked_names(masks) == {'project/kernel', 'up1/kernel', 'up2/kernel'}
  with np.load(lottery_mnist.ticket_path(tmp_path / 'ema', 1)) as f:
    got = lottery.masks_from_arrays(dict(f), theta0)
  jax.tree.map(np.testing.assert_array_equal, got, lottery.imp_round(ema, masks))


def test_search_refuses_to_resume_other_settings(fake_search, tmp_path):
  lottery_mnist.search(0.1, 0, 2, 0, 8, tmp_path)
  with pytest.raises(ValueError, match="'rank': \\('raw', 'ema'\\).*another --workdir"):
    lottery_mnist.search(0.1, 0, 2, 0, 8, tmp_path, rank='ema')
  (tmp_path / 'search.json').unlink()  # tickets of a search from before the settings file
  with pytest.raises(ValueError, match='older search'):
    lottery_mnist.search(0.1, 0, 2, 0, 8, tmp_path)
  with pytest.raises(ValueError, match='rank must be'):
    lottery_mnist.search(0.1, 0, 2, 0, 8, tmp_path / 'x', rank='avg')
