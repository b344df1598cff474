"""BigGAN G/D, class-conditional BatchNorm, projection head, ortho reg, standing stats."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgan import losses, onestage
from jaxgan.game import Game, gaussian_latents, make_apply
from jaxgan.models import biggan
from jaxgan.models.biggan import BigGANDiscriminator, BigGANGenerator, SelfAttention
from jaxgan.models.conditional import (
  ConditionalBatchNorm,
  ProjectionHead,
  check_labels,
  class_grid_labels,
)
from jaxgan.models.registry import count_params
from jaxgan.state import GANState, Player
from jaxgan.steps import two_stage_step


def _param_count(module, *args):
  shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *args))
  return count_params(shapes['params'])


def test_cifar_param_counts_equal_reference():
  # Reference: the DDST BigGAN CIFAR-10 training log (Shiweiliuiiiiiii/BigGAN-PyTorch-master,
  # Biggan_c10.out, BigGAN-PyTorch with G_ch=D_ch=64, dim_z=128, G_shared=False, hier=False,
  # G_attn=D_attn=0 -- the settings of DiffAugment-biggan-cifar's scripts):
  # "Number of params in G: 4304387 D: 4207361" (PyTorch parameters(); SN vectors and BN
  # running statistics are buffers there and non-param collections here).
  cfg = biggan.REFERENCE_CONFIGS['cifar']
  g = BigGANGenerator(
    resolution=32, num_classes=10, width=cfg['width'], shared_dim=0, hier=False, attention=()
  )
  d = BigGANDiscriminator(resolution=32, num_classes=10, width=cfg['width'], attention=())
  y = jnp.zeros((2,), jnp.int32)
  assert _param_count(g, jnp.zeros((2, cfg['latent_dim'])), y) == 4_304_387
  assert _param_count(d, jnp.zeros((2, 32, 32, 3)), y) == 4_207_361


def test_conditional_bn_selects_class_gains():
  with jax.enable_x64(True):
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    x = jax.random.normal(k[0], (6, 3, 3, 5), jnp.float64) * 2.0 + 1.0
    y = jnp.array([0, 3, 1, 3, 2, 0], jnp.int32)
    bn = ConditionalBatchNorm(num_classes=4)
    v = bn.init(k[1], x, y, True)
    gains = jax.random.normal(k[2], (4, 5), jnp.float64)
    shifts = jax.random.normal(k[3], (4, 5), jnp.float64)
    v = {
      'params': {'gain_scale': {'embedding': gains}, 'gain_shift': {'embedding': shifts}},
      'batch_stats': v['batch_stats'],
    }
    out, new = bn.apply(v, x, y, True, mutable=['batch_stats'])
    xn = np.asarray(x)
    mean, var = xn.mean(axis=(0, 1, 2)), xn.var(axis=(0, 1, 2))
    g, s = np.asarray(gains)[np.asarray(y)], np.asarray(shifts)[np.asarray(y)]
    want = (xn - mean) / np.sqrt(var + 1e-5) * (1 + g[:, None, None]) + s[:, None, None]
    np.testing.assert_allclose(out, want, rtol=1e-10, atol=1e-12)
    # PyTorch's running average (momentum 0.1), biased variance as flax stores it.
    np.testing.assert_allclose(new['batch_stats']['norm']['mean'], 0.1 * mean, rtol=1e-10)
    # Eval mode: running statistics, same class gains.
    v_eval = {**v, 'batch_stats': {'norm': {'mean': jnp.full(5, 0.5), 'var': jnp.full(5, 4.0)}}}
    out_eval = bn.apply(v_eval, x, y, False)
    want_eval = (xn - 0.5) / np.sqrt(4.0 + 1e-5) * (1 + g[:, None, None]) + s[:, None, None]
    np.testing.assert_allclose(out_eval, want_eval, rtol=1e-10, atol=1e-12)


def test_conditional_bn_float_condition_and_plain_affine():
  with jax.enable_x64(True):
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 2, 2, 3), jnp.float64)
    cond = jax.random.normal(jax.random.PRNGKey(2), (4, 7), jnp.float64)
    bn = ConditionalBatchNorm(spectral=False)
    v = bn.init(jax.random.PRNGKey(3), x, cond, True)
    out = bn.apply(v, x, cond, True, mutable=['batch_stats'])[0]
    xn = np.asarray(x)
    xhat = (xn - xn.mean((0, 1, 2))) / np.sqrt(xn.var((0, 1, 2)) + 1e-5)
    gain = np.asarray(cond) @ np.asarray(v['params']['gain_scale']['kernel'])
    shift = np.asarray(cond) @ np.asarray(v['params']['gain_shift']['kernel'])
    np.testing.assert_allclose(
      out, xhat * (1 + gain[:, None, None]) + shift[:, None, None], rtol=1e-10
    )
    plain = ConditionalBatchNorm()
    vp = plain.init(jax.random.PRNGKey(3), x, None, True)
    assert set(vp['params']) == {'scale', 'bias'}
    np.testing.assert_allclose(
      plain.apply(vp, x, None, True, mutable=['batch_stats'])[0], xhat, rtol=1e-10
    )


def test_projection_head_matches_formula_and_depends_on_label():
  with jax.enable_x64(True):
    h = jax.random.normal(jax.random.PRNGKey(0), (5, 6), jnp.float64)
    y = jnp.array([0, 1, 2, 1, 0], jnp.int32)
    head = ProjectionHead(num_classes=3, spectral=False)
    v = head.init(jax.random.PRNGKey(1), h, y, False)
    out = head.apply(v, h, y, False)
    p = jax.tree.map(np.asarray, v['params'])
    want = np.asarray(h) @ p['linear']['kernel'][:, 0] + p['linear']['bias'][0]
    want = want + np.sum(p['embed']['embedding'][np.asarray(y)] * np.asarray(h), axis=1)
    assert out.dtype == jnp.float32  # logits are float32 by contract
    np.testing.assert_allclose(out, want, rtol=1e-6)


def init_vars(module, *args, seed=0):
  """Variables of ``module`` without compiling its init (slow on a CPU): shapes from
  ``jax.eval_shape``, values drawn with numpy (params N(0, 0.05^2), BatchNorm mean 0 and
  var 1, attention gamma 0.5). The AdvAug 'perturbations' are dropped (init-batch sized)."""
  shapes = dict(jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *args)))
  shapes.pop('perturbations', None)
  rng = np.random.default_rng(seed)

  def fill(path, s):
    name = jax.tree_util.keystr(path)
    if name.endswith("['var']"):
      return jnp.ones(s.shape, s.dtype)
    if name.endswith("['mean']"):
      return jnp.zeros(s.shape, s.dtype)
    if name.endswith("['gamma']"):
      return jnp.full(s.shape, 0.5, s.dtype)
    return jnp.asarray(rng.standard_normal(s.shape) * 0.05, s.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def make_state(g, d, tx, latent_dim, image_shape):
  """A fresh GANState like ``jaxgan.state.create_state``, with :func:`init_vars` values."""
  players = []
  for module, x in ((g, jnp.zeros((2, latent_dim))), (d, jnp.zeros((2, *image_shape)))):
    v = init_vars(module, x)
    params = v.pop('params')
    players.append(Player(params=params, model_state=v, opt_state=tx.init(params)))
  return GANState(
    step=jnp.zeros((), jnp.int32),
    rng=jax.random.PRNGKey(3),
    g=players[0],
    d=players[1],
    ema_params=jax.tree.map(jnp.copy, players[0].params),
    extra={},
  )


def tiny_d(num_classes=0, **kw):
  return BigGANDiscriminator(resolution=32, num_classes=num_classes, width=8, **kw)


def tiny_g(num_classes=0, **kw):
  return BigGANGenerator(resolution=32, num_classes=num_classes, width=8, **kw)


def test_projection_discriminator_output_changes_with_label():
  d = tiny_d(num_classes=3)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 32, 32, 3))
  xs = jnp.concatenate([x, x, x])  # D has no batch coupling: one call scores all labels
  ys = jnp.repeat(jnp.arange(3, dtype=jnp.int32), 2)
  v = init_vars(d, x, ys[:2])
  logits = d.apply(v, xs, ys).reshape(3, 2)
  for a in range(3):
    for b in range(a + 1, 3):
      assert float(jnp.max(jnp.abs(logits[a] - logits[b]))) > 1e-6
  # With a zero table the label has no effect: it enters only through the projection.
  v['params']['head']['embed']['embedding'] = jnp.zeros((3, 32))
  same = d.apply(v, xs, ys).reshape(3, 2)
  chex.assert_trees_all_close(same[0], same[1], same[2])


def test_conditional_generator_forward_and_label_errors():
  g = tiny_g(num_classes=4, shared_dim=16, hier=True, attention=(16,))
  z = jax.random.normal(jax.random.PRNGKey(0), (2, 20))
  y = jnp.array([0, 3], jnp.int32)
  v = init_vars(g, z, y)
  assert 'attention1' in v['params'] and 'shared' in v['params']
  assert v['params']['linear']['kernel'].shape == (5, 4 * 4 * 32)  # hier: z split in 4 chunks
  zz, yy = jnp.concatenate([z, z]), jnp.array([0, 3, 1, 1], jnp.int32)
  img, state = g.apply(v, zz, yy, train=True, mutable=['batch_stats', 'spectral'])
  assert img.shape == (4, 32, 32, 3) and float(jnp.max(jnp.abs(img))) <= 1.0
  assert set(state) == {'batch_stats', 'spectral'}
  # Eval mode (running statistics): samples are independent, so one call compares labels.
  both = g.apply(v, zz, yy)
  assert float(jnp.max(jnp.abs(both[:2] - both[2:]))) > 1e-6
  with pytest.raises(ValueError, match='pass int32 labels'):
    g.apply(v, z)
  with pytest.raises(ValueError, match='not divisible by 4'):
    g.init(jax.random.PRNGKey(1), jnp.zeros((2, 21)), y)  # raises before any layer
  with pytest.raises(ValueError, match='unconditional'):
    tiny_g().init(jax.random.PRNGKey(1), z, y)
  with pytest.raises(ValueError, match=r'in \[0, 4\)'):
    check_labels(np.array([0, 4]), 4, 2, 'G')
  with pytest.raises(ValueError, match='shared_dim > 0'):
    tiny_g(num_classes=4, hier=True).init(jax.random.PRNGKey(1), z, y)


def test_class_grid_labels_rows():
  np.testing.assert_array_equal(class_grid_labels(3, 2), [0, 0, 1, 1, 2, 2])
  with pytest.raises(ValueError):
    class_grid_labels(0, 2)


def _np_maxpool2(a):
  b, h, w, c = a.shape
  return a.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def test_self_attention_matches_numpy():
  with jax.enable_x64(True):
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 4, 16), jnp.float64)
    att = SelfAttention(spectral=False)
    v = att.init(jax.random.PRNGKey(1), x, False)
    np.testing.assert_allclose(att.apply(v, x, False), x)  # gamma starts at 0
    v['params']['gamma'] = jnp.asarray(0.7, jnp.float64)
    p = jax.tree.map(np.asarray, v['params'])
    xn = np.asarray(x)

    def conv1(a, name):
      return a @ p[name]['kernel'][0, 0]

    theta = conv1(xn, 'theta').reshape(2, 16, 2)
    phi = _np_maxpool2(conv1(xn, 'phi')).reshape(2, 4, 2)
    g = _np_maxpool2(conv1(xn, 'g')).reshape(2, 4, 8)
    logits = np.einsum('bqc,bkc->bqk', theta, phi)
    beta = np.exp(logits - logits.max(-1, keepdims=True))
    beta /= beta.sum(-1, keepdims=True)
    o = conv1(np.einsum('bqk,bkc->bqc', beta, g).reshape(2, 4, 4, 8), 'o')
    np.testing.assert_allclose(att.apply(v, x, False), xn + 0.7 * o, rtol=1e-10, atol=1e-12)


def test_orthogonal_penalty_gradient_equals_reference_update():
  with jax.enable_x64(True):
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    params = {
      'block0': {
        'conv1': {'kernel': jax.random.normal(k[0], (3, 3, 2, 4), jnp.float64), 'bias': jnp.ones(4)}
      },
      'bn': {'gain_scale': {'embedding': jax.random.normal(k[1], (5, 3), jnp.float64)}},
      'shared': {'embedding': jax.random.normal(k[2], (5, 6), jnp.float64)},
    }
    strength = 1e-3
    grads = jax.grad(biggan.orthogonal_penalty)(params, strength)

    def reference(w):  # BigGAN-PyTorch utils.ortho on W [rows, cols]
      return strength * 2 * ((w @ w.T) * (1 - np.eye(w.shape[0]))) @ w

    kern = np.asarray(params['block0']['conv1']['kernel'])
    w_torch = kern.reshape(-1, 4).T  # [out, kh*kw*in]
    want_kern = reference(w_torch).T.reshape(kern.shape)
    np.testing.assert_allclose(grads['block0']['conv1']['kernel'], want_kern, rtol=1e-10)
    emb = np.asarray(params['bn']['gain_scale']['embedding'])
    np.testing.assert_allclose(grads['bn']['gain_scale']['embedding'], reference(emb), rtol=1e-10)
    np.testing.assert_array_equal(grads['shared']['embedding'], 0.0)  # excluded as in the reference
    np.testing.assert_array_equal(grads['block0']['conv1']['bias'], 0.0)
    reg = biggan.ortho_g_regularizer(strength)
    assert float(reg({'params': params}, None, None, None)) == pytest.approx(
      float(biggan.orthogonal_penalty(params, strength))
    )


def test_standing_statistics_average_batch_statistics():
  g = tiny_g(num_classes=3)
  z = jnp.zeros((4, 16))
  v = init_vars(g, z, jnp.zeros((4,), jnp.int32))
  key = jax.random.PRNGKey(5)
  out = biggan.standing_statistics(g, v, key, latent_dim=16, num_batches=3, batch_size=6)
  # Independent: the input of the output BN (block2's output) per batch, averaged.
  means, variances = [], []
  for k in jax.random.split(key, 3):
    kz, ky = jax.random.split(k)
    zb = jax.random.normal(kz, (6, 16), jnp.float32)
    yb = jax.random.randint(ky, (6,), 0, 3, jnp.int32)
    _, inter = g.apply(
      v,
      zb,
      yb,
      train=True,
      mutable=['batch_stats', 'spectral', 'intermediates'],
      capture_intermediates=lambda mdl, _: mdl.name == 'block2',
    )
    feat = np.asarray(inter['intermediates']['block2']['__call__'][0], np.float64)
    means.append(feat.mean(axis=(0, 1, 2)))
    variances.append(feat.var(axis=(0, 1, 2)))
  stats = out['batch_stats']['out_bn']['norm']
  np.testing.assert_allclose(stats['mean'], np.mean(means, 0), rtol=2e-4, atol=1e-6)
  np.testing.assert_allclose(stats['var'], np.mean(variances, 0), rtol=2e-4, atol=1e-6)
  chex.assert_trees_all_equal(out['params'], v['params'])


# two_stage with -m slow: test_conditional_steps runs the conditional BigGAN two-stage step by default.
@pytest.mark.parametrize(
  'builder', [pytest.param('two_stage', marks=pytest.mark.slow), 'one_stage']
)
def test_steps_run_one_iteration(builder):
  # The one-stage run drops spectral norm (tested above) to halve its compile time on a CPU.
  sn = builder == 'two_stage'
  g, d = tiny_g(spectral=sn), tiny_d(spectral=sn)
  assert not d.batch_coupled
  game = Game(
    g_apply=make_apply(g),
    d_apply=make_apply(d),
    loss=losses.get_loss('hinge'),
    sample_latents=gaussian_latents(16),
    d_batch_coupled=d.batch_coupled,
    g_regularizers=(biggan.ortho_g_regularizer(1e-4),),
  )
  tx = optax.adam(2e-4, 0.0, 0.999)
  state = make_state(g, d, tx, 16, (32, 32, 3))
  batch = {
    'image': jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (4, 32, 32, 3)), jnp.float32)
  }
  if builder == 'two_stage':
    step = two_stage_step(game, tx, tx, ema_decay=0.999)
  else:
    step = onestage.one_stage_step(game, tx, tx, mode='exact', ema_decay=0.999)
  new_state, metrics = jax.jit(step)(state, batch)
  assert int(new_state.step) == 1
  assert all(np.isfinite(float(m)) for m in metrics.values())
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.g.params, new_state.g.params)
  assert any(jax.tree.leaves(changed))
  assert set(new_state.g.model_state) == ({'batch_stats', 'spectral'} if sn else {'batch_stats'})
