"""StyleGAN2: reference parameter counts, modulation, equalized lr, resampling, regularizers."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgan import losses, onestage
from jaxgan.game import Game, gaussian_latents, make_apply
from jaxgan.models import stylegan2 as sg
from jaxgan.models.registry import count_params
from jaxgan.state import GANState, Player
from jaxgan.steps import two_stage_step

# 8x8 exercises both block kinds (the 4x4 constant block and an upsampling block) cheaply.
TINY = dict(resolution=8, channel_base=64, channel_max=16)  # channels 16 (4x4), 8 (8x8)


def tiny_g(**kw):
  return sg.StyleGAN2Generator(**{**TINY, 'w_dim': 16, 'mapping_layers': 2, **kw})


def tiny_d(**kw):
  return sg.StyleGAN2Discriminator(**{**TINY, 'mbstd_group_size': 2, **kw})


def init_vars(module, *args, seed=0):
  """Variables of ``module`` without compiling its init (slow on a CPU): shapes from
  ``jax.eval_shape``, params drawn N(0, 0.5^2) with numpy (mapping kernels N(0, 50^2), as
  the reference's N(0, 1/lr_mul^2) storage), ``w_avg`` 0. The AdvAug 'perturbations' are
  dropped (sized for the init batch only)."""
  shapes = dict(jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *args)))
  shapes.pop('perturbations', None)
  rng = np.random.default_rng(seed)
  v = {k: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), t) for k, t in shapes.items()}

  def fill(path, s):
    name = jax.tree_util.keystr(path)
    std = 50.0 if ("['mapping']['fc" in name and name.endswith("['kernel']")) else 0.5
    return jnp.asarray(rng.standard_normal(s.shape) * std, s.dtype)

  v['params'] = jax.tree_util.tree_map_with_path(fill, shapes['params'])
  return v


def make_state(g, d, tx, latent_dim, image_shape):
  """A fresh GANState like ``jaxgan.state.create_state``, with :func:`init_vars` values."""
  players = []
  for module, x in ((g, jnp.zeros((4, latent_dim))), (d, jnp.zeros((4, *image_shape)))):
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


def _count(tree):
  return count_params(tree)


def test_config_f_256_param_counts_equal_reference():
  # Reference: stylegan2-ada-pytorch training/networks.py with cfg=stylegan2 (config F:
  # channel_base 32768, channel_max 512, 8 mapping layers, z = w = 512), unconditional, 256x256.
  # Totals computed from that definition; the per-layer values below are printed by its
  # misc.print_module_summary in NVlabs/stylegan2-ada-pytorch issues #181/#182 and
  # open-mmlab/mmgeneration issue #394 (G ~30.0M, D ~28.9M).
  g = sg.StyleGAN2Generator(resolution=256)
  d = sg.StyleGAN2Discriminator(resolution=256)
  gp = jax.eval_shape(lambda: g.init(jax.random.PRNGKey(0), jnp.zeros((4, 512))))['params']
  dp = jax.eval_shape(lambda: d.init(jax.random.PRNGKey(0), jnp.zeros((4, 256, 256, 3))))['params']
  assert _count(gp) == 30_034_338
  assert _count(dp) == 28_864_129
  assert _count(gp['mapping']) == 8 * 262_656
  syn = gp['synthesis']
  printed_g = {
    'b4_conv1': 2_622_465,
    'b4_torgb': 264_195,
    'b8_conv0': 2_622_465,
    'b128_conv0': 1_442_561,
    'b128_conv1': 721_409,
    'b128_torgb': 132_099,
    'b256_conv0': 426_369,
    'b256_conv1': 213_249,
    'b256_torgb': 66_051,
  }
  for name, n in printed_g.items():
    assert _count(syn[name]) == n, name
  assert _count(syn['const']) == 8192
  printed_d = {
    'b256_skip': 32_768,
    'b256_conv0': 147_584,
    'b256_conv1': 295_168,
    'b128_skip': 131_072,
    'b128_conv0': 590_080,
    'b128_conv1': 1_180_160,
    'b64_skip': 262_144,
    'b64_conv0': 2_359_808,
    'b64_conv1': 2_359_808,
  }
  for name, n in printed_d.items():
    assert _count(dp[name]) == n, name
  assert sg.num_styles(256) == 14 and sg.num_styles(1024) == 18

  def out_shape(module, x):
    return jax.eval_shape(lambda: module.init_with_output(jax.random.PRNGKey(0), x)[0]).shape

  for r in (32, 64, 128):  # every supported size traces to the right shapes
    img = out_shape(sg.StyleGAN2Generator(resolution=r), jnp.zeros((4, 512)))
    assert img == (4, r, r, 3)
    assert out_shape(sg.StyleGAN2Discriminator(resolution=r), jnp.zeros((4, r, r, 3))) == (4,)


def test_demodulated_weights_have_unit_norm_per_output_channel():
  k = jax.random.split(jax.random.PRNGKey(0), 2)
  weight = jax.random.normal(k[0], (3, 3, 5, 7))
  styles = jax.random.normal(k[1], (4, 5)) * 3.0
  w = sg.modulate_weights(weight, styles)
  norms = jnp.sqrt(jnp.sum(jnp.square(w), axis=(1, 2, 3)))
  np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
  raw = sg.modulate_weights(weight, styles, demodulate=False)
  np.testing.assert_allclose(raw, weight[None] * styles[:, None, None, :, None], rtol=1e-6)


@pytest.mark.parametrize('up', [1, 2])
def test_modulated_conv_equals_per_sample_conv_with_modulated_weights(up):
  with jax.enable_x64(True):
    k = jax.random.split(jax.random.PRNGKey(1), 3)
    x = jax.random.normal(k[0], (3, 4, 4, 5), jnp.float64)
    weight = jax.random.normal(k[1], (3, 3, 5, 6), jnp.float64)
    styles = jax.random.normal(k[2], (3, 5), jnp.float64)
    got = sg.modulated_conv(x, weight, styles, up=up)
    per_sample = jax.vmap(lambda xi, wi: sg._conv(xi[None], wi, up=up)[0])
    want = per_sample(x, sg.modulate_weights(weight, styles))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def _np_upfirdn(x, up, down, p0, p1, gain):
  x = np.asarray(x, np.float64)
  b, h, w, c = x.shape
  u = np.zeros((b, h * up, w * up, c))
  u[:, ::up, ::up] = x
  u = np.pad(u, ((0, 0), (p0, p1), (p0, p1), (0, 0)))
  f = np.outer([1, 3, 3, 1], [1, 3, 3, 1]).astype(np.float64)
  f = f / f.sum() * gain
  oh, ow = u.shape[1] - 3, u.shape[2] - 3
  y = np.zeros((b, oh, ow, c))
  for i in range(4):
    for j in range(4):
      y += f[i, j] * u[:, i : i + oh, j : j + ow]
  return y[:, ::down, ::down]


@pytest.mark.parametrize(
  'up,down,pad,gain', [(2, 1, (2, 1), 4.0), (1, 2, (1, 1), 1.0), (1, 1, (2, 2), 1.0)]
)
def test_upfirdn2d_matches_direct_2d_filter(up, down, pad, gain):
  with jax.enable_x64(True):
    x = jax.random.normal(jax.random.PRNGKey(2), (2, 6, 6, 3), jnp.float64)
    got = sg.upfirdn2d(x, up=up, down=down, pad=pad, gain=gain)
    np.testing.assert_allclose(got, _np_upfirdn(x, up, down, *pad, gain), rtol=1e-12, atol=1e-12)
  ones = sg.upsample2d(jnp.ones((1, 6, 6, 1)))
  assert ones.shape == (1, 12, 12, 1)
  np.testing.assert_allclose(ones[0, 2:-2, 2:-2, 0], 1.0, rtol=1e-6)  # unit DC gain


def test_upsampling_conv_is_transposed_conv_then_filter():
  with jax.enable_x64(True):
    x = jax.random.normal(jax.random.PRNGKey(3), (2, 5, 5, 3), jnp.float64)
    kernel = jax.random.normal(jax.random.PRNGKey(4), (3, 3, 3, 4), jnp.float64)
    tconv = jax.lax.conv_transpose(x, kernel, (2, 2), 'VALID', dimension_numbers=sg._DN)
    assert tconv.shape == (2, 11, 11, 4)
    want = _np_upfirdn(tconv, 1, 1, 1, 1, 4.0)
    np.testing.assert_allclose(sg._conv(x, kernel, up=2), want, rtol=1e-10, atol=1e-12)


def test_equalized_learning_rate_scales_as_reference():
  with jax.enable_x64(True):
    layer = sg.EqualizedDense(4, lr_mul=0.01, bias_init=1.0, activation='lrelu')
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 6), jnp.float64)
    v = layer.init(jax.random.PRNGKey(1), x)
    kern, bias = (np.asarray(v['params'][n], np.float64) for n in ('kernel', 'bias'))
    np.testing.assert_allclose(bias * 0.01, 1.0)  # effective bias starts at bias_init
    pre = np.asarray(x) @ (kern * 0.01 / math.sqrt(6)) + bias * 0.01
    want = np.where(pre > 0, pre, 0.2 * pre) * math.sqrt(2)
    np.testing.assert_allclose(layer.apply(v, x), want, rtol=1e-6)
    # The gradient reaching the stored kernel is the effective kernel's times lr_mul/sqrt(fan_in).
    lin = sg.EqualizedDense(4, lr_mul=0.01)
    gk = jax.grad(lambda p: jnp.sum(lin.apply({'params': p}, x)))(v['params'])['kernel']
    np.testing.assert_allclose(
      gk, np.tile(np.asarray(x).sum(0)[:, None], (1, 4)) * 0.01 / math.sqrt(6), rtol=1e-6
    )
  big = sg.EqualizedDense(256, lr_mul=0.01).init(jax.random.PRNGKey(2), jnp.zeros((1, 256)))
  assert abs(float(jnp.std(big['params']['kernel'])) - 100.0) < 3.0  # stored ~ N(0, 1/lr_mul^2)
  conv = sg.EqualizedConv(3, kernel_size=3, activation='linear')
  xc = jax.random.normal(jax.random.PRNGKey(3), (2, 5, 5, 4))
  vc = conv.init(jax.random.PRNGKey(4), xc)
  w = vc['params']['weight']
  want = jax.lax.conv_general_dilated(xc, w, (1, 1), 'SAME', dimension_numbers=sg._DN) / math.sqrt(
    36
  )
  np.testing.assert_allclose(conv.apply(vc, xc, gain=0.5), 0.5 * want, rtol=1e-5, atol=1e-6)


def test_minibatch_stddev_matches_numpy():
  x = jax.random.normal(jax.random.PRNGKey(0), (6, 3, 3, 4))
  out = sg.minibatch_stddev(x, group_size=3)
  xn = np.asarray(x, np.float64)
  n = 2  # 6 samples in groups of 3: group j holds samples j, j + 2, j + 4
  stds = [np.mean(np.sqrt(xn[j::n].var(axis=0) + 1e-8)) for j in range(n)]
  assert out.shape == (6, 3, 3, 5)
  np.testing.assert_allclose(out[..., :4], x)
  for i in range(6):
    np.testing.assert_allclose(out[i, :, :, 4], stds[i % n], rtol=1e-5)
  with pytest.raises(ValueError, match='divisible by the group size'):
    sg.minibatch_stddev(x[:5], group_size=3)
  assert tiny_d().batch_coupled and not tiny_d(mbstd_num_channels=0).batch_coupled


def test_w_avg_tracked_in_train_mode_and_truncation():
  g = tiny_g(noise_mode='none')
  z = jax.random.normal(jax.random.PRNGKey(0), (4, 8))
  v = init_vars(g, z)
  np.testing.assert_array_equal(v['w_avg']['w_avg'], 0.0)
  ws = g.apply(v, z, method='mapping')
  assert ws.shape == (4, g.num_ws, 16)
  _, new = g.apply(v, z, train=True, mutable=['w_avg'])
  want = (1 - 0.995) * np.mean(np.asarray(ws[:, 0]), axis=0)  # lerp from 0 with beta 0.995
  np.testing.assert_allclose(new['w_avg']['w_avg'], want, rtol=1e-5, atol=1e-8)
  _, unchanged = g.apply(v, z, method='mapping', mutable=['w_avg'])
  np.testing.assert_array_equal(unchanged['w_avg']['w_avg'], 0.0)  # only train mode updates

  avg = jax.random.normal(jax.random.PRNGKey(1), (16,))
  v2 = {**v, 'w_avg': {'w_avg': avg}}
  trunc = g.apply(v2, z, method='mapping', truncation_psi=0.5, truncation_cutoff=3)
  np.testing.assert_allclose(trunc[:, :3], avg + 0.5 * (ws[:, :3] - avg), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(trunc[:, 3:], ws[:, 3:])
  # psi = 0 maps every z to w_avg: two latents give the same image.
  img = g.apply(v2, jnp.concatenate([z[:1], -z[:1]]), method='sample', truncation_psi=0.0)
  np.testing.assert_allclose(img[0], img[1], rtol=1e-5, atol=1e-6)
  eval_g = tiny_g(noise_mode='none', truncation_psi=0.0)
  np.testing.assert_allclose(
    eval_g.apply(v2, z[:2]), jnp.concatenate([img[:1], img[:1]]), atol=1e-5
  )


def test_style_mixing_crossover():
  z = jax.random.normal(jax.random.PRNGKey(0), (3, 8))
  g = tiny_g(style_mixing_prob=1.0)
  v = init_vars(g, z)
  ws = g.apply(v, z, method='mapping')
  for seed in range(3):
    mixed = np.asarray(g.apply(v, ws, z, None, jax.random.PRNGKey(seed), method='mix_styles'))
    same = np.all(np.isclose(mixed, np.asarray(ws)), axis=(0, 2))
    cut = int(np.argmin(same))
    assert 1 <= cut < g.num_ws and same[:cut].all() and not same[cut:].any()
    np.testing.assert_allclose(
      mixed[:, cut:], np.broadcast_to(mixed[:, cut : cut + 1], mixed[:, cut:].shape)
    )
  off = tiny_g(style_mixing_prob=0.0)
  np.testing.assert_array_equal(
    off.apply(v, ws, z, None, jax.random.PRNGKey(0), method='mix_styles'), ws
  )


def test_r1_penalty_against_closed_form():
  a = jax.random.normal(jax.random.PRNGKey(0), (4, 4, 3))
  real = jax.random.normal(jax.random.PRNGKey(1), (5, 4, 4, 3))

  def d_logits(x):  # grad_x = a + x
    return jnp.sum(a * x, axis=(1, 2, 3)) + 0.5 * jnp.sum(x * x, axis=(1, 2, 3))

  got = sg.r1_penalty(d_logits, real, gamma=10.0, interval=16)
  per = np.sum(np.square(np.asarray(a)[None] + np.asarray(real)), axis=(1, 2, 3))
  np.testing.assert_allclose(got, 0.5 * 10.0 * 16 * per.mean(), rtol=1e-5)
  assert sg.auto_r1_gamma(256, 64) == pytest.approx(0.0002 * 256**2 / 64)


def test_path_length_penalty_against_full_jacobian():
  g = tiny_g(noise_mode='none', style_mixing_prob=0.0)
  z = jax.random.normal(jax.random.PRNGKey(0), (4, 8))
  v = init_vars(g, z)
  key, pl_mean = jax.random.PRNGKey(7), jnp.asarray(0.3)
  loss, new_mean = jax.jit(lambda v: sg.path_length_penalty(g, v, z, key, pl_mean, interval=4))(v)
  # Independent: the full Jacobian d img / d ws for the first B / 2 samples.
  _, _, k_proj = jax.random.split(key, 3)
  ws = g.apply(v, z[:2], method='mapping')
  synth = lambda w: g.apply(v, w, None, method='synthesis')  # noqa: E731
  img = synth(ws)
  jac = jax.jit(jax.jacfwd(synth))(ws)  # [2, 8, 8, 3, 2, num_ws, w_dim]
  u = jax.random.normal(k_proj, img.shape) / 8.0
  grads = np.tensordot(np.asarray(u, np.float64), np.asarray(jac, np.float64), axes=4)  # [2, S, W]
  lengths = np.sqrt(np.mean(np.sum(grads**2, axis=2), axis=1))
  want_mean = 0.3 + 0.01 * (lengths.mean() - 0.3)
  np.testing.assert_allclose(new_mean, want_mean, rtol=1e-4)
  np.testing.assert_allclose(
    loss, 2.0 * 4 * np.mean((lengths - want_mean) ** 2), rtol=1e-3, atol=1e-9
  )
  grad = jax.jit(
    jax.grad(lambda p: sg.path_length_penalty(g, {**v, 'params': p}, z, key, pl_mean)[0])
  )(v['params'])
  assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(grad))


def test_lazy_term_and_adam_hparams():
  fn = lambda: jnp.asarray(3.0)  # noqa: E731
  assert [float(sg.lazy_term(s, 4, fn)) for s in range(6)] == [3.0, 0, 0, 0, 3.0, 0]
  assert float(jax.jit(lambda s: sg.lazy_term(s, 16, fn))(jnp.asarray(32))) == 3.0
  lr, b1, b2 = sg.lazy_adam_hparams(0.002, 0.0, 0.99, 16)
  assert (
    lr == pytest.approx(0.002 * 16 / 17) and b1 == 0.0 and b2 == pytest.approx(0.99 ** (16 / 17))
  )


def test_conditional_forward_and_label_dependence():
  g, d = tiny_g(num_classes=3), tiny_d(num_classes=3)
  z = jax.random.normal(jax.random.PRNGKey(0), (2, 8))
  y = jnp.array([0, 2], jnp.int32)
  vg = init_vars(g, z, y)
  img = g.apply(vg, z, y)
  assert img.shape == (2, 8, 8, 3)
  with pytest.raises(ValueError, match='pass int32 labels'):
    g.apply(vg, z)
  vd = init_vars(d, img, y)
  assert 'mapping' in vd['params']
  xs = jnp.concatenate([img, img, img])
  logits = d.apply(vd, xs, jnp.repeat(jnp.arange(3, dtype=jnp.int32), 2)).reshape(3, 2)
  assert (
    float(jnp.min(jnp.abs(logits[0] - logits[1]))) > 0
    and float(jnp.min(jnp.abs(logits[1] - logits[2]))) > 0
  )


# two_stage with -m slow: test_conditional_steps runs the conditional StyleGAN2 two-stage step by default.
@pytest.mark.parametrize(
  'builder', [pytest.param('two_stage', marks=pytest.mark.slow), 'one_stage']
)
def test_steps_run_one_iteration(builder):
  # 8x8 keeps the compile time of the whole step small; 32..256 differ only in block count.
  g, d = tiny_g(), tiny_d()
  game = Game(
    g_apply=make_apply(g),
    d_apply=make_apply(d),
    loss=losses.get_loss('ns'),
    sample_latents=gaussian_latents(8),
    d_batch_coupled=d.batch_coupled,
  )
  tx = optax.adam(0.002, 0.0, 0.99)
  state = make_state(g, d, tx, 8, (8, 8, 3))
  assert set(state.g.model_state) == {'w_avg'}
  batch = {'image': jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (4, 8, 8, 3)), jnp.float32)}
  if builder == 'two_stage':
    step = two_stage_step(game, tx, tx, ema_decay=0.999)
  else:
    with pytest.raises(ValueError, match='batch-coupled'):
      onestage.one_stage_step(game, tx, tx, mode='asymmetric')
    step = onestage.one_stage_step(game, tx, tx, mode='exact', ema_decay=0.999)
  new_state, metrics = jax.jit(step)(state, batch)
  assert int(new_state.step) == 1
  assert all(np.isfinite(float(m)) for m in metrics.values())
  assert float(jnp.max(jnp.abs(new_state.g.model_state['w_avg']['w_avg']))) > 0
  chex.assert_trees_all_equal_shapes(state.d.params, new_state.d.params)
