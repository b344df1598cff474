"""CUT on jaxgan: PatchNCE, the translation networks, the 'latent' batch path, the MNIST task."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tiny_models as tm

from jaxgan import coopinit, dat, steps
from jaxgan import translation as tr
from jaxgan.data import mnist_translation as mt
from jaxgan.game import check_logits, logits_apply
from jaxgan.onestage import one_stage_step
from jaxgan.steps import two_stage_step

SMALL = (8, 8, 1)


def _numpy_patch_nce(q, k, t):
  q, k = np.asarray(q, np.float64), np.asarray(k, np.float64)
  total, count = 0.0, 0
  for b in range(q.shape[0]):
    for i in range(q.shape[1]):
      logits = np.array([q[b, i] @ k[b, j] for j in range(k.shape[1])]) / t
      total += -logits[i] + np.log(np.sum(np.exp(logits)))
      count += 1
  return total / count


def _unit(x):
  return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


def test_patch_nce_equals_direct_numpy_computation():
  with jax.enable_x64(True):
    kq, kk = jax.random.split(jax.random.PRNGKey(0))
    q = _unit(jax.random.normal(kq, (2, 5, 3), jnp.float64))
    k = _unit(jax.random.normal(kk, (2, 5, 3), jnp.float64))
    for t in (0.07, 0.5):
      got = tr.patch_nce_loss(q, k, t)
      assert got.dtype == jnp.float64
      np.testing.assert_allclose(float(got), _numpy_patch_nce(q, k, t), rtol=1e-12)


def test_patch_nce_keys_get_no_gradient():
  q = _unit(jax.random.normal(jax.random.PRNGKey(1), (2, 4, 3)))
  k = _unit(jax.random.normal(jax.random.PRNGKey(2), (2, 4, 3)))
  gq, gk = jax.grad(tr.patch_nce_loss, argnums=(0, 1))(q, k)
  assert float(jnp.max(jnp.abs(gk))) == 0.0 and float(jnp.max(jnp.abs(gq))) > 0


def test_patch_nce_is_minimal_when_queries_equal_their_positives():
  """With simplex-arranged keys (sum_j k_j = 0, equal angles), q_i = k_i is each query's
  unique minimizer over unit vectors (Jensen on the negatives), so any perturbation costs."""
  with jax.enable_x64(True):
    p, c = 6, 8
    simplex = jnp.eye(c, dtype=jnp.float64)[:p] - 1.0 / p * jnp.pad(
      jnp.ones((p, p), jnp.float64), ((0, 0), (0, c - p))
    )
    rotation, _ = jnp.linalg.qr(jax.random.normal(jax.random.PRNGKey(3), (c, c), jnp.float64))
    keys = _unit(simplex @ rotation)[None]  # [1, P, C]
    best = tr.patch_nce_loss(keys, keys, 0.07)
    for i in range(20):
      noise = jax.random.normal(jax.random.PRNGKey(10 + i), keys.shape, jnp.float64)
      perturbed = _unit(keys + 0.05 * (i % 4 + 1) * noise)
      assert float(tr.patch_nce_loss(perturbed, keys, 0.07)) > float(best)


@pytest.mark.parametrize('shape', [(28, 28, 1), (32, 32, 1), (8, 12, 1)])
def test_generator_keeps_the_image_shape(shape):
  g = tr.ResnetGenerator(width=4, n_blocks=1, mlp_units=8)
  x = jax.ShapeDtypeStruct((2, *shape), jnp.float32)
  variables = jax.eval_shape(g.init, jax.random.PRNGKey(1), x)  # shapes only: no compile
  assert jax.eval_shape(g.apply, variables, x).shape == x.shape
  feats = jax.eval_shape(lambda v, x: g.apply(v, x, method='encode'), variables, x)
  h, w = shape[:2]
  assert [f.shape for f in feats] == [
    (2, h, w, 1),
    (2, h // 2, w // 2, 8),
    (2, h // 4, w // 4, 16),
    (2, h // 4, w // 4, 16),
    (2, h // 4, w // 4, 16),
  ]
  # The projection heads are G's params.
  assert {f'heads_{i}_{j}' for i in range(5) for j in range(2)} <= set(variables['params'])


def test_generator_output_is_an_image():
  g = tr.ResnetGenerator(width=4, n_blocks=1, mlp_units=8, nce_layers=('input',))
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, *SMALL), minval=-1, maxval=1)
  y = jax.jit(lambda x: g.apply(g.init(jax.random.PRNGKey(1), x), x))(x)
  assert y.shape == x.shape and bool(jnp.all(jnp.abs(y) <= 1.0))


def test_bad_shapes_and_layers_are_rejected():
  g = tr.ResnetGenerator(width=4, n_blocks=1)
  with pytest.raises(ValueError, match='divisible by 4'):
    g.init(jax.random.PRNGKey(0), jnp.zeros((1, 30, 30, 1)))
  with pytest.raises(ValueError, match='block3'):
    tr.ResnetGenerator(n_blocks=2, nce_layers=('input', 'block3')).init(
      jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1))
    )
  with pytest.raises(ValueError, match='n_layers=3'):
    tr.PatchDiscriminator(n_layers=3).init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)))
  with pytest.raises(ValueError, match='num_patches'):
    tr.patch_nce_regularizer(g, num_patches=1)
  with pytest.raises(ValueError, match='temperature'):
    tr.patch_nce_regularizer(g, temperature=0.0)


def test_kernels_start_from_cuts_scaled_xavier_normal():
  # CUT: --init_type xavier --init_gain 0.02, std = 0.02 sqrt(2 / (fan_in + fan_out)).
  x = jnp.zeros((1, 28, 28, 1))
  g = tr.ResnetGenerator(width=16, n_blocks=2, mlp_units=64)
  params = g.init(jax.random.PRNGKey(0), x)['params']
  k = params['down2']['kernel']  # 3x3, 32 -> 64
  np.testing.assert_allclose(np.std(k), 0.02 * np.sqrt(2 / (9 * 32 + 9 * 64)), rtol=0.05)
  np.testing.assert_allclose(
    np.std(params['heads_3_0']['kernel']), 0.02 * np.sqrt(2 / 128), rtol=0.1
  )
  d_params = tr.PatchDiscriminator(width=16).init(jax.random.PRNGKey(0), x)['params']
  np.testing.assert_allclose(
    np.std(d_params['Conv_1']['kernel']), 0.02 * np.sqrt(2 / 768), rtol=0.05
  )
  flax_default = tr.ResnetGenerator(width=16, n_blocks=2, init_gain=None).init(
    jax.random.PRNGKey(0), x
  )
  np.testing.assert_allclose(
    np.std(flax_default['params']['down2']['kernel']), 1 / np.sqrt(288), rtol=0.1
  )
  with pytest.raises(ValueError, match='init_gain'):
    tr.PatchDiscriminator(init_gain=0.0).init(jax.random.PRNGKey(0), x)


def test_patch_discriminator_map_and_game_reduction():
  d = tr.PatchDiscriminator(width=4, n_layers=2)
  x28 = jax.ShapeDtypeStruct((3, 28, 28, 1), jnp.float32)
  shape = jax.eval_shape(d.apply, jax.eval_shape(d.init, jax.random.PRNGKey(1), x28), x28).shape
  assert shape == (3, 5, 5) == (3, tr.patch_map_size(28, 2), tr.patch_map_size(28, 2))
  x = jax.random.uniform(jax.random.PRNGKey(0), (3, *SMALL), minval=-1, maxval=1)
  d = tr.PatchDiscriminator(width=4, n_layers=1)  # 8x8 -> 2x2 patches

  @jax.jit
  def both(x):
    variables = d.init(jax.random.PRNGKey(1), x)
    return d.apply(variables, x), tr.patch_d_apply(d)(variables, x, train=True)[0]

  patches, logits = both(x)
  assert patches.shape == (3, 2, 2)
  np.testing.assert_allclose(logits, jnp.mean(patches, axis=(1, 2)), rtol=1e-6)


# ----------------------------------------------------------------------------
# The 'latent' batch path
# ----------------------------------------------------------------------------


def _z_regularizer(game):
  return lambda gv, dv, z, key: 0.1 * jnp.mean(jnp.square(game.g_apply(gv, z, train=True)[0]))


def _latent_pair(n=4):
  """The same game twice: z from a fixed sampler vs. from batch['latent']."""
  z = jax.random.normal(jax.random.PRNGKey(5), (n, tm.LATENT_DIM))
  sampled, g_mod, d_mod = tm.make_game('lsgan', z=z)
  sampled = sampled.replace(g_regularizers=(_z_regularizer(sampled),))

  def refuse(key, n):
    raise AssertionError('sample_latents must not be called when the batch has latents')

  fed = sampled.replace(sample_latents=refuse)
  return sampled, fed, g_mod, d_mod, z


@pytest.mark.parametrize('builder', ['two_stage', 'one_stage', 'coop'])
def test_batch_latents_replace_sampled_latents(builder):
  """A fixed sampler returning z and batch['latent'] = z give the same step, G's regularizer
  included (two-stage with n_dis=1: D and G use the batch's z, as the sampler does here)."""
  sampled, fed, g_mod, d_mod, z = _latent_pair()
  sgd = optax.sgd(0.05)
  make = {
    'two_stage': lambda g: two_stage_step(g, sgd, sgd),
    'one_stage': lambda g: one_stage_step(g, sgd, sgd),
    'coop': lambda g: coopinit.coop_step(
      g, sgd, sgd, langevin=coopinit.LangevinConfig(step_size=0.1, n_steps=2)
    ),
  }[builder]
  state = tm.make_state(g_mod, d_mod, g_tx=sgd, d_tx=sgd)
  real = tm.real_batch(4)
  ref, ref_m = make(sampled)(state, real)
  got, got_m = jax.jit(make(fed))(state, {**real, 'latent': z})
  chex.assert_trees_all_close(got.g.params, ref.g.params, rtol=1e-6, atol=1e-7)
  chex.assert_trees_all_close(got.d.params, ref.d.params, rtol=1e-6, atol=1e-7)
  chex.assert_trees_all_close(got_m, ref_m, rtol=1e-6, atol=1e-7)


def test_two_stage_splits_latents_like_the_images():
  sampled, fed, g_mod, d_mod, z = _latent_pair(8)
  sgd = optax.sgd(0.05)
  state = tm.make_state(g_mod, d_mod, g_tx=sgd, d_tx=sgd)
  real = tm.real_batch(8)
  new, _ = two_stage_step(fed, sgd, sgd, n_dis=2)(state, {**real, 'latent': z})
  # By hand: D on (real[:4], G(z[:4])) then (real[4:], G(z[4:])); G on z[4:].
  loss = fed.loss
  d_out = lambda dp, x: fed.d_apply({'params': dp}, x, train=True)[0]
  fake = lambda gp, zz: fed.g_apply({'params': gp}, zz, train=True)[0]
  dp = state.d.params
  for rows in (slice(0, 4), slice(4, 8)):
    f = fake(state.g.params, z[rows])
    g = jax.grad(lambda p, r=rows, f=f: loss.d_loss(d_out(p, real['image'][r]), d_out(p, f)))(dp)
    dp = jax.tree.map(lambda w, gw: w - 0.05 * gw, dp, g)
  reg = _z_regularizer(fed)
  g_grad = jax.grad(
    lambda gp: (
      loss.g_loss(d_out(dp, fake(gp, z[4:])))
      + reg({'params': gp}, None, z[4:], jax.random.PRNGKey(0))
    )
  )(state.g.params)
  gp = jax.tree.map(lambda w, gw: w - 0.05 * gw, state.g.params, g_grad)
  chex.assert_trees_all_close(new.d.params, dp, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(new.g.params, gp, rtol=1e-5, atol=1e-6)


def test_latents_with_the_wrong_leading_size_are_rejected():
  _, fed, g_mod, d_mod, z = _latent_pair(4)
  state = tm.make_state(g_mod, d_mod)
  step = jax.jit(two_stage_step(fed, optax.identity(), optax.identity()))
  with pytest.raises(ValueError, match=r'batch\["latent"\].*3 rows|has 4 rows'):
    step(state, {**tm.real_batch(4), 'latent': z[:3]})


def _tiny_cut(init_gain=0.02):
  # Two NCE layers (pixels and the bottleneck) keep the compiled step small.
  g = tr.ResnetGenerator(
    width=4, n_blocks=1, mlp_units=8, nce_layers=('input', 'block0'), init_gain=init_gain
  )
  d = tr.PatchDiscriminator(width=4, n_layers=1, init_gain=init_gain)
  tx = tr.cut_optimizer()
  game = tr.cut_game(g, d, num_patches=8)
  state = tr.create_translation_state(
    jax.random.PRNGKey(0), g_module=g, d_module=d, g_tx=tx, d_tx=tx, image_shape=SMALL
  )
  ka, kb = jax.random.split(jax.random.PRNGKey(1))
  a = jax.random.uniform(ka, (4, *SMALL), minval=-1, maxval=1)
  b = jax.random.uniform(kb, (4, *SMALL), minval=-1, maxval=1)
  return game, tx, state, {'image': b, 'latent': {'source': a, 'target': b}}


# The latent path of every builder is checked on tiny models above; compiling CUT with each
# builder takes about 35 s here, so one builder runs by default and the others with -m slow.
@pytest.mark.parametrize(
  'builder',
  [
    'two_stage',
    pytest.param('one_stage', marks=pytest.mark.slow),
    pytest.param('coop', marks=pytest.mark.slow),
  ],
)
def test_one_cut_step_with_each_builder(builder):
  game, tx, state, batch = _tiny_cut()
  if builder == 'two_stage':
    step = two_stage_step(game, tx, tx)
  elif builder == 'one_stage':
    step = one_stage_step(game, tx, tx, mode='auto')  # 'exact': CUT's D gives patch logits
  else:
    step = coopinit.coop_step(game, tx, tx, langevin=coopinit.LangevinConfig(step_size=0.5))
  new, metrics = jax.jit(step)(state, batch)
  assert all(np.isfinite(float(v)) for v in metrics.values()), metrics
  if builder != 'coop':  # the teaching loss does not use g_regularizers
    assert float(metrics['g_reg']) > 0
  assert not jnp.allclose(new.g.params['stem']['kernel'], state.g.params['stem']['kernel'])
  assert int(new.step) == 1


def _per_patch_setup(per_patch):
  # Flax's larger initial kernels: CUT's 0.02-scaled ones give patch logits of nearly one value.
  game, _, state, batch = _tiny_cut(init_gain=None)
  game = tr.cut_game(
    tr.ResnetGenerator(width=4, n_blocks=1, mlp_units=8, nce_layers=('input', 'block0')),
    tr.PatchDiscriminator(width=4, n_layers=1),
    num_patches=8,
    per_patch=per_patch,
  )
  return game, tm.to_f64(state), tm.to_f64(batch)


@pytest.mark.parametrize('per_patch', [True, False])
def test_cut_adversarial_losses_against_cuts_mse(per_patch):
  # CUT: L_D = (MSE(D(y), 1) + MSE(D(G(x)), 0)) / 2 and L_G = MSE(D(G(x)), 1) over the patch
  # map; jaxgan's lsgan G term is half of it. per_patch=False scores each image's mean patch.
  with jax.enable_x64(True):
    game, state, batch = _per_patch_setup(per_patch)
    d = tr.PatchDiscriminator(width=4, n_layers=1)
    d_map = lambda x: d.apply(state.d.variables, x)  # noqa: E731
    fake = game.g_apply(state.g.variables, batch['latent'], train=True)[0]
    real = batch['image']
    assert d_map(real).shape == (4, 2, 2)
    reduce = (lambda m: m) if per_patch else (lambda m: jnp.mean(m, axis=(1, 2)))
    mse = lambda m, t: jnp.mean(jnp.square(reduce(m) - t))  # noqa: E731
    key = jax.random.PRNGKey(0)
    _, (_, m_d) = steps.d_player_loss(game, state.d.params, {}, real, fake, key)
    np.testing.assert_allclose(
      m_d['d_loss'], (mse(d_map(real), 1) + mse(d_map(fake), 0)) / 2, rtol=1e-12
    )
    _, (_, m_g) = steps.g_player_loss(
      game, state.g.params, {}, state.d.variables, batch['latent'], key
    )
    np.testing.assert_allclose(m_g['g_loss'], mse(d_map(fake), 1) / 2, rtol=1e-12)
    if per_patch:  # the two reductions differ by the patch variance of the logits
      assert (
        abs(
          float(m_g['g_loss']) - float(jnp.mean(jnp.square(jnp.mean(d_map(fake), (1, 2)) - 1)) / 2)
        )
        > 1e-6
      )


def test_coopinit_energy_of_patch_logits_is_their_mean():
  with jax.enable_x64(True):
    game, state, batch = _per_patch_setup(True)
    d = tr.PatchDiscriminator(width=4, n_layers=1)
    for stats in coopinit.LANGEVIN_STATS:
      f = coopinit.energy_fn(game, state.d.variables, stats)(batch['image'])
      np.testing.assert_allclose(
        f, jnp.mean(d.apply(state.d.variables, batch['image']), axis=(1, 2)), rtol=1e-12
      )


def test_patch_logits_refuse_dat_and_wrong_shapes():
  game, _, state, batch = _tiny_cut()  # CUT's default: per-patch
  with pytest.raises(ValueError, match='one logit per sample'):
    game.replace(d_perturbation=dat.make_dat_perturbation(step_size=0.5))
  with pytest.raises(ValueError, match=r'patch logits \[B, \.\.\.\]'):
    check_logits(jnp.zeros((3, 2, 2)), 4, patches=True)
  with pytest.raises(ValueError, match='d_patch_logits=True'):
    game.replace(d_patch_logits=False).d_apply(state.d.variables, batch['image'], train=True)
  with pytest.raises(ValueError, match='per_patch'):
    tr.cut_game(tr.ResnetGenerator(), tr.PatchDiscriminator(), per_patch=1)


def test_logits_check_wraps_once_per_kind():
  def raw(variables, x, **kwargs):
    return x[..., 0], {}

  per_sample = logits_apply(raw)
  assert logits_apply(per_sample) is per_sample  # a Game.replace keeps the wrapped function
  per_patch = logits_apply(per_sample, patches=True)
  assert per_patch.unchecked is raw and logits_apply(per_patch, patches=True) is per_patch
  x = jnp.zeros((2, 3, 3, 1))
  assert per_patch({}, x)[0].shape == (2, 3, 3)
  with pytest.raises(ValueError, match='one logit per sample'):
    per_sample({}, x)


def test_cut_game_refuses_batches_without_latents():
  game, tx, state, batch = _tiny_cut()
  with pytest.raises(ValueError, match='latent'):
    jax.jit(two_stage_step(game, tx, tx))(state, {'image': batch['image']})


# ----------------------------------------------------------------------------
# The MNIST task and its content metric
# ----------------------------------------------------------------------------


def test_dilation_of_one_pixel_is_a_3x3_square():
  x = np.zeros((1, 5, 5, 1), np.uint8)
  x[0, 0, 0, 0], x[0, 2, 3, 0] = 200, 100
  d = mt.dilate3x3(x)[0, ..., 0]
  want = np.zeros((5, 5), np.uint8)
  want[1:4, 2:5] = 100
  want[0:2, 0:2] = 200
  np.testing.assert_array_equal(d, want)
  np.testing.assert_array_equal(mt.appearance_b(x)[0, ..., 0], 255 - want)


@pytest.fixture(scope='module')
def task():
  return {split: mt.load_task(split) for split in ('train', 'test')}


def test_domains_are_disjoint_balanced_halves(task):
  from jaxgan import data as data_lib

  for split, n in (('train', 4000), ('test', 1000)):
    t = task[split]
    ia, ib = t['source_index'], t['target_index']
    assert not set(ia) & set(ib) and len(ia) + len(ib) == n
    assert np.bincount(t['source_label']).tolist() == [n // 20] * 10
    assert np.bincount(t['target_label']).tolist() == [n // 20] * 10
    plain = data_lib.load_arrays('mnist5k', split)
    np.testing.assert_array_equal(t['target_plain'], plain['image'][ib])
    np.testing.assert_array_equal(t['source'], data_lib.to_float(plain['image'][ia]))
    np.testing.assert_array_equal(
      t['target'], data_lib.to_float(mt.appearance_b(plain['image'][ib]))
    )
    np.testing.assert_array_equal(t['source_label'], plain['label'][ia])


def test_batches_follow_the_latent_contract(task):
  batches = mt.translation_batches(task['test'], 100, seed=0)
  seen = []
  for _ in range(5):  # one epoch of each domain's 500 images
    b = next(batches)
    assert b['image'].shape == b['latent']['source'].shape == (100, 28, 28, 1)
    assert b['latent']['target'] is b['image']
    assert b['source_label'].shape == (100,)
    seen.append(np.asarray(b['latent']['source']).reshape(100, -1))
  # Without replacement within an epoch: every A image exactly once.
  np.testing.assert_array_equal(
    np.unique(np.concatenate(seen), axis=0),
    np.unique(task['test']['source'].reshape(500, -1), axis=0),
  )
  with pytest.raises(ValueError, match='batch_size'):
    next(mt.translation_batches(task['test'], 501))


def test_content_accuracy_counts_label_agreement():
  from jaxgan.metrics.features import FeatureExtractor
  from jaxgan.models.classifier import LeNet5
  from jaxgan.translation import metrics as tr_metrics

  x = jax.random.uniform(jax.random.PRNGKey(0), (40, 28, 28, 1), minval=-1, maxval=1)
  params = LeNet5().init(jax.random.PRNGKey(1), x[:1], train=False)['params']
  ex = FeatureExtractor('b', tr_metrics._negated_lenet, params, (28, 28, 1), batch_size=16)
  logits = LeNet5().apply({'params': params}, -x, train=False)  # the B classifier is lenet(-x)
  labels = np.asarray(jnp.argmax(logits, -1))
  assert tr_metrics.content_accuracy(ex, x, labels) == 1.0
  assert tr_metrics.content_accuracy(ex, x, (labels + 1) % 10) == 0.0


@pytest.mark.slow
def test_domain_b_classifier_scores_the_oracle_and_not_the_identity(task):
  """Trains the domain-B classifier (about a minute) in the test data directory."""
  from jaxgan import data as data_lib
  from jaxgan.translation import metrics as tr_metrics

  ex = tr_metrics.domain_b_classifier()
  t = task['test']
  plain = data_lib.load_arrays('mnist5k', 'test')['image'][t['source_index']]
  oracle = data_lib.to_float(mt.appearance_b(plain))
  assert tr_metrics.content_accuracy(ex, oracle, t['source_label']) > 0.95
  assert tr_metrics.content_accuracy(ex, t['source'], t['source_label']) < 0.5


def test_cut_schedule_is_constant_then_linear_to_zero_like_cuts_linear_policy():
  base, total = 2e-4, 10
  # Adam's bias-corrected moment ratio is 1 for a constant gradient of 1 (eps aside),
  # so each update is minus the step's learning rate.
  expected = [base if c < 5 else base * (total - c) / (total - 5) for c in range(total)]
  for decay_from, want in ((0.5, expected), (1.0, [base] * total)):
    tx = tr.cut_optimizer(base, total_steps=total, decay_from=decay_from)
    params = jnp.zeros(3)
    state = tx.init(params)
    got = []
    for _ in range(total):
      updates, state = tx.update(jnp.ones(3), state, params)
      got.append(-float(updates[0]))
    np.testing.assert_allclose(got, want, rtol=1e-4)  # float32 bias corrections
  assert tr.cut_optimizer(base).init(jnp.zeros(1))[0].count == 0  # constant without a length


@pytest.mark.parametrize(
  'kwargs, match',
  [
    (dict(total_steps=0), r'total_steps must be an int >= 1.*got 0'),
    (dict(total_steps=10, decay_from=1.5), r'decay_from must be in \[0, 1\].*got 1.5'),
  ],
)
def test_cut_schedule_rejects_bad_lengths(kwargs, match):
  with pytest.raises(ValueError, match=match):
    tr.cut_optimizer(**kwargs)


def test_translate_script_rejects_a_decay_fraction_outside_0_1():
  from experiments import translate_mnist

  with pytest.raises(SystemExit, match=r'--lr-decay-from must be in \[0, 1\].*got 2.0'):
    translate_mnist.parse_args(['--lr-decay-from', '2'])
  assert translate_mnist.parse_args([]).lr_decay_from == 0.5


def test_translate_script_resumes_from_its_checkpoint_on_the_same_batches(tmp_path, monkeypatch):
  from experiments import translate_mnist

  args = translate_mnist.parse_args(
    '--steps 6 --eval-every 2 --batch-size 4 --width 4 --n-blocks 1 --d-width 4 --d-layers 1 '
    '--num-patches 8 --coopinit 1 --t_init 1 --log-every 6'.split()
  )

  def score_of(g_module):
    del g_module
    return lambda params: {'fid_b': float(sum(jnp.abs(x).sum() for x in jax.tree.leaves(params)))}

  g, step, fresh = translate_mnist.build(args, 0)  # compiled once, shared by the runs

  def run(name, crash_at=None):
    calls = []

    def counting_build(args, seed):
      del args, seed
      state = fresh

      def counted(state, batch):
        calls.append(1)
        if len(calls) == crash_at:
          raise KeyboardInterrupt('killed')
        return step(state, batch)

      return g, counted, state

    monkeypatch.setattr(translate_mnist, 'build', counting_build)
    try:
      return translate_mnist.train_and_score(args, 0, score_of, tmp_path / name), len(calls)
    except KeyboardInterrupt:
      return None, len(calls)

  straight, n = run('a')
  assert n == 6 and not (tmp_path / 'a').exists()  # checkpoints removed at the end
  assert run('b', crash_at=5) == (None, 5)  # killed after the checkpoint at iteration 4
  resumed, n = run('b')
  assert n == 2  # iterations 5 and 6 only
  assert [c['step'] for c in resumed['curve']] == [2, 4, 6]
  assert resumed['curve'] == straight['curve']
  assert resumed['fid_b'] == straight['fid_b']
