"""Class labels through every step: two-stage, one-stage, CoopInit, DAT, DiffAugment, R1/GP."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import ddst_biggan_cifar10, lottery_biggan_cifar10, stylegan2_100shot
from jaxgan import augment, coopinit, dat, losses, onestage, regularizers, run_setup
from jaxgan.game import Game, gaussian_latents, make_apply, sample_labels
from jaxgan.models import get_models, num_classes_of
from jaxgan.models.biggan import BigGANDiscriminator, BigGANGenerator, ortho_g_regularizer
from jaxgan.models.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator
from jaxgan.state import GANState, Player, create_state
from jaxgan.steps import fake_labels, two_stage_step

K = 3
SHAPE = (4, 4, 1)


class TinyG(nn.Module):
  """``z [B, nz]`` (labels ``[B]``) -> ``[B, 4, 4, 1]``; the label adds a learned image."""

  num_classes: int = 0

  @nn.compact
  def __call__(self, z, y=None, train=False):
    h = nn.Dense(16)(z)
    if self.num_classes:
      h = h + nn.Embed(self.num_classes, 16)(y)
    return jnp.tanh(h).reshape(-1, *SHAPE)


class TinyD(nn.Module):
  """Images (labels) -> logits ``[B]``, a projection head on a small MLP."""

  num_classes: int = 0
  batch_coupled = False

  @nn.compact
  def __call__(self, x, y=None, train=False):
    h = nn.relu(nn.Dense(8)(x.reshape(x.shape[0], -1)))
    out = nn.Dense(1)(h)[:, 0]
    if self.num_classes:
      out = out + jnp.sum(nn.Embed(self.num_classes, 8)(y) * h, -1)
    return out


def tiny_game(num_classes=K, **kw):
  g, d = TinyG(num_classes), TinyD(num_classes)
  game = Game(
    g_apply=make_apply(g),
    d_apply=make_apply(d),
    loss=losses.get_loss('hinge'),
    sample_latents=gaussian_latents(4),
    num_classes=num_classes,
    **kw,
  )
  return g, d, game


TX = optax.adam(1e-3, 0.0, 0.99)


def tiny_state(g, d, num_classes=K):
  return create_state(
    jax.random.PRNGKey(0),
    g_module=g,
    d_module=d,
    g_tx=TX,
    d_tx=TX,
    latent_dim=4,
    image_shape=SHAPE,
    num_classes=num_classes,
  )


def tiny_batch(rows=6, seed=1):
  rng = np.random.default_rng(seed)
  return {
    'image': jnp.asarray(rng.uniform(-1, 1, (rows, *SHAPE)), jnp.float32),
    'label': jnp.asarray(rng.integers(0, K, rows), jnp.int32),
  }


def _steps(game):
  return {
    'two_stage': two_stage_step(game, TX, TX, n_dis=2, measure_balance=True),
    'one_stage': onestage.one_stage_step(game, TX, TX, mode='exact', measure_balance=True),
    'coop': coopinit.coop_step(
      game,
      TX,
      TX,
      langevin=coopinit.LangevinConfig(step_size=0.1, n_steps=2),
      use_d_regularizers=True,
      n_dis=2,
    ),
  }


def _full_game():
  d_apply = make_apply(TinyD(K))
  return tiny_game(
    d_regularizers=(
      regularizers.r1_penalty(d_apply, 0.5),
      regularizers.wgan_gp_penalty(d_apply, 0.5),
    ),
    d_input_transform=augment.make_diff_augment('translation'),
    d_perturbation=dat.make_dat_perturbation(),
  )


@pytest.mark.parametrize('kind', ['two_stage', 'one_stage', 'coop'])
def test_real_labels_reach_d(kind):
  g, d, game = _full_game()
  state = tiny_state(g, d)
  step = jax.jit(_steps(game)[kind])
  batch = tiny_batch()
  _, m1 = step(state, batch)
  _, m2 = step(state, {**batch, 'label': (batch['label'] + 1) % K})
  key = 'coop/ebm_loss' if kind == 'coop' else 'd_loss'
  assert float(m1['d_real']) != float(m2['d_real'])
  assert float(m1[key]) != float(m2[key])
  if kind == 'coop':  # the fakes and their labels do not depend on the real labels
    assert float(m1['d_fake']) == float(m2['d_fake'])
  assert all(np.isfinite(float(v)) for v in m1.values())


def test_regularizers_see_the_labels():
  d = TinyD(K)
  d_apply = make_apply(d)
  x = tiny_batch()['image']
  y = jnp.array([0, 1, 2, 0, 1, 2], jnp.int32)
  v = d.init(jax.random.PRNGKey(0), x, y)
  key = jax.random.PRNGKey(1)
  for reg in (regularizers.r1_penalty(d_apply, 1.0), regularizers.wgan_gp_penalty(d_apply, 1.0)):
    a = reg(v, x, x[::-1], key, real_label=y, fake_label=y)
    b = reg(v, x, x[::-1], key, real_label=(y + 1) % K, fake_label=y)
    assert float(a) != float(b)
  # Unconditional call: unchanged signature.
  d0 = TinyD(0)
  v0 = d0.init(jax.random.PRNGKey(0), x)
  assert np.isfinite(float(regularizers.r1_penalty(make_apply(d0), 1.0)(v0, x, x, key)))


def test_dat_pair_of_logits_fns():
  f = lambda x: jnp.sum(x.reshape(x.shape[0], -1) ** 2, -1)
  h = lambda x: -jnp.sum(x.reshape(x.shape[0], -1), -1)
  real, fake = tiny_batch()['image'], tiny_batch(seed=2)['image']
  single = dat.pgd_perturbation(f, real, fake)
  pair = dat.pgd_perturbation((f, f), real, fake)
  for a, b in zip(single, pair):
    np.testing.assert_array_equal(a, b)
  mixed = dat.pgd_perturbation((f, h), real, fake)
  assert not np.array_equal(mixed[1], single[1])  # fakes attacked under h
  with pytest.raises(ValueError, match='pair'):
    dat.pgd_perturbation((f, f, f), real, fake)


def test_fake_labels_uniform_and_from_key():
  _, _, game = tiny_game(num_classes=10)
  key = jax.random.PRNGKey(5)
  y = np.asarray(fake_labels(game, key, 20_000))
  assert y.dtype == np.int32 and y.min() >= 0 and y.max() < 10
  counts = np.bincount(y, minlength=10)
  chi2 = float(np.sum((counts - 2000.0) ** 2 / 2000.0))
  assert chi2 < 27.9  # 99.9% quantile of chi-square with 9 degrees of freedom
  np.testing.assert_array_equal(y, fake_labels(game, key, 20_000))
  assert not np.array_equal(y[:100], np.asarray(fake_labels(game, jax.random.PRNGKey(6), 100)))
  _, _, uncond = tiny_game(num_classes=0)
  assert fake_labels(uncond, key, 4) is None and sample_labels(uncond, key, 4) is None


def test_step_draws_fake_labels_from_step_key():
  # Same state and batch: identical; another run key: other fake labels, other D(fake).
  g, d, game = tiny_game()
  state = tiny_state(g, d)
  step = jax.jit(two_stage_step(game, TX, TX))
  batch = tiny_batch(3)
  _, m1 = step(state, batch)
  _, m2 = step(state, batch)
  assert float(m1['d_fake']) == float(m2['d_fake'])
  _, m3 = step(state.replace(rng=jax.random.PRNGKey(9)), batch)
  assert float(m1['d_fake']) != float(m3['d_fake'])


@pytest.mark.parametrize('kind', ['two_stage', 'one_stage', 'coop'])
def test_unconditional_path_ignores_labels(kind):
  # An unconditional game gives bit-identical results with or without batch['label'].
  g, d, game = tiny_game(
    num_classes=0,
    d_regularizers=(regularizers.r1_penalty(make_apply(TinyD(0)), 0.5),),
    d_input_transform=augment.make_diff_augment('translation'),
    d_perturbation=dat.make_dat_perturbation(),
  )
  state = tiny_state(g, d, num_classes=0)
  step = jax.jit(_steps(game)[kind])
  batch = tiny_batch()
  s1, m1 = step(state, batch)
  s2, m2 = step(state, {'image': batch['image']})
  for a, b in zip(jax.tree.leaves((s1, m1)), jax.tree.leaves((s2, m2))):
    np.testing.assert_array_equal(a, b)


def test_conditional_errors_before_tracing():
  g, d, game = tiny_game()
  state = tiny_state(g, d)
  with pytest.raises(ValueError, match='no "label" entry'):
    two_stage_step(game, TX, TX)(state, {'image': tiny_batch()['image']})
  bad = {**tiny_batch(), 'label': jnp.zeros((5,), jnp.int32)}
  with pytest.raises(ValueError, match=r'shape \[6\]'):
    two_stage_step(game, TX, TX)(state, bad)

  def plain(d_variables, real, fake, key):
    return jnp.zeros(())

  with pytest.raises(ValueError, match='does not take class labels'):
    two_stage_step(game.replace(d_regularizers=(plain,)), TX, TX)
  with pytest.raises(ValueError, match='does not take class labels'):
    onestage.one_stage_step(game.replace(g_regularizers=(plain,)), TX, TX)
  with pytest.raises(ValueError, match='num_classes'):
    tiny_game(num_classes=-1)
  # Label-aware G regularizer (BigGAN's orthogonal regularization) is accepted.
  two_stage_step(game.replace(g_regularizers=(ortho_g_regularizer(1e-4),)), TX, TX)


def _init(module, *args):
  """Variables without compiling init: shapes from eval_shape, small normal params."""
  shapes = dict(jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *args)))
  shapes.pop('perturbations', None)
  rng = np.random.default_rng(0)
  v = {k: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), t) for k, t in shapes.items()}
  v['params'] = jax.tree.map(
    lambda s: jnp.asarray(rng.standard_normal(s.shape) * 0.1, s.dtype), shapes['params']
  )
  if 'spectral' in v:  # power-iteration vectors must not be zero
    v['spectral'] = jax.tree.map(
      lambda s: jnp.asarray(rng.standard_normal(s.shape), s.dtype), shapes['spectral']
    )
  return v


def _state(g, d, nz, shape):
  y = jnp.zeros((4,), jnp.int32)
  players = []
  for module, x in ((g, jnp.zeros((4, nz))), (d, jnp.zeros((4, *shape)))):
    v = _init(module, x, y)
    params = v.pop('params')
    players.append(Player(params=params, model_state=v, opt_state=TX.init(params)))
  return GANState(
    step=jnp.zeros((), jnp.int32),
    rng=jax.random.PRNGKey(3),
    g=players[0],
    d=players[1],
    ema_params=None,
    extra={},
  )


NETWORKS = {
  # Spectral norm off keeps the compile time of the CPU test small (tested in test_biggan).
  'biggan32': lambda: (
    BigGANGenerator(resolution=32, num_classes=K, width=8, spectral=False),
    BigGANDiscriminator(resolution=32, num_classes=K, width=8, spectral=False),
    8,
    (32, 32, 3),
  ),
  'stylegan2': lambda: (
    StyleGAN2Generator(
      resolution=8, channel_base=64, channel_max=16, w_dim=16, mapping_layers=2, num_classes=K
    ),
    StyleGAN2Discriminator(
      resolution=8, channel_base=64, channel_max=16, mbstd_group_size=2, num_classes=K
    ),
    8,
    (8, 8, 3),
  ),
}


# StyleGAN2's one-stage and CoopInit cases compile for ~35 s each on a loaded 2-core CPU:
# they run with -m slow; its two-stage case and every BigGAN case run by default.
_SLOW = pytest.mark.slow


@pytest.mark.parametrize(
  'net, kind',
  [
    ('biggan32', 'two_stage'),
    ('biggan32', 'one_stage'),
    ('biggan32', 'coop'),
    ('stylegan2', 'two_stage'),
    pytest.param('stylegan2', 'one_stage', marks=_SLOW),
    pytest.param('stylegan2', 'coop', marks=_SLOW),
  ],
)
def test_networks_run_each_step_conditionally(net, kind):
  g, d, nz, shape = NETWORKS[net]()
  game = Game(
    g_apply=make_apply(g),
    d_apply=make_apply(d),
    loss=losses.get_loss('hinge'),
    sample_latents=gaussian_latents(nz),
    d_input_transform=augment.make_diff_augment('color,translation'),
    d_perturbation=dat.make_dat_perturbation(),
    d_batch_coupled=bool(getattr(d, 'batch_coupled', False)),
    num_classes=K,
  )
  if kind == 'two_stage':
    step = two_stage_step(game, TX, TX)
  elif kind == 'one_stage':
    step = onestage.one_stage_step(game, TX, TX, mode='exact')
  else:
    step = coopinit.coop_step(game, TX, TX, langevin=coopinit.LangevinConfig(0.05, n_steps=1))
  rng = np.random.default_rng(0)
  batch = {
    'image': jnp.asarray(rng.uniform(-1, 1, (4, *shape)), jnp.float32),
    'label': jnp.array([0, 1, 2, 1], jnp.int32),
  }
  new_state, metrics = jax.jit(step)(_state(g, d, nz, shape), batch)
  assert int(new_state.step) == 1
  assert all(np.isfinite(float(v)) for v in metrics.values()), metrics


def test_registry_names_and_num_classes():
  g, d = get_models('biggan32', image_shape=(32, 32, 1), num_classes=10, width=8)
  assert (g.resolution, g.channels, g.num_classes, g.width) == (32, 1, 10, 8)
  assert (d.resolution, d.num_classes) == (32, 10) and num_classes_of(g, d) == 10
  g, d = get_models('biggan128', image_shape=(128, 128, 3))
  assert g.resolution == d.resolution == 128 and num_classes_of(g, d) == 0
  g, d = get_models('stylegan2', image_shape=(64, 64, 3), num_classes=5, channel_base=256)
  assert (g.resolution, d.resolution, g.num_classes, d.channel_base) == (64, 64, 5, 256)
  with pytest.raises(ValueError, match='image_shape'):
    get_models('biggan64', image_shape=(32, 32, 3))
  with pytest.raises(ValueError, match='power of two'):
    get_models('stylegan2', image_shape=(48, 48, 3))
  with pytest.raises(ValueError, match='num_classes=3 but D'):
    get_models('biggan32', g_num_classes=3)


@pytest.mark.parametrize(
  'module, variant',
  [
    (lottery_biggan_cifar10, '10'),
    (lottery_biggan_cifar10, '20'),
    (ddst_biggan_cifar10, 'relax:0.1'),
    (ddst_biggan_cifar10, 'strict:0.3'),
    (stylegan2_100shot, '256'),
  ],
)
def test_new_configs_build(module, variant):
  config = module.get_config(variant)
  run_setup.validate_config(config)
  kw = dict(config.model_kwargs)
  size = config.get('image_folder', {}).get('resolution', 32)
  shape = (size, size, 3)
  g, d = get_models(config.model, latent_dim=config.latent_dim, image_shape=shape, **kw)
  k = num_classes_of(g, d)
  # Tiny width (init shapes only, no compilation): the same structure as the reference.
  small = {'width': 8} if config.model.startswith('biggan') else {'channel_base': 512}
  g, d = get_models(
    config.model, latent_dim=config.latent_dim, image_shape=shape, **{**kw, **small}
  )
  y = jnp.zeros((2,), jnp.int32) if k else None
  args_g = (jnp.zeros((2, config.latent_dim)),) + ((y,) if k else ())
  args_d = (jnp.zeros((2, *shape)),) + ((y,) if k else ())
  assert jax.eval_shape(lambda: g.apply(_init(g, *args_g), *args_g)).shape == (2, *shape)
  assert jax.eval_shape(lambda: d.apply(_init(d, *args_d), *args_d)).shape == (2,)
  with pytest.raises(ValueError):
    module.get_config('nope')


def test_build_run_conditional_sampler_and_refusals():
  from experiments.configs import default

  c = default.get_config()
  c.dataset = 'digits8x8'
  c.model = 'mlp'
  c.batch_size = 8
  c.eval_samples = 0
  run = run_setup.build_run(c)
  assert run.game.num_classes == 0
  generate, sample = run.eval_functions()
  assert generate == run.generate
  c.model = 'biggan32'
  c.pad_to = 32
  c.model_kwargs.num_classes = 3  # digits have 10 classes: refused
  with pytest.raises(ValueError, match='labels in'):
    run_setup.build_run(c)
  c.model_kwargs.num_classes = 10
  c.model_kwargs.width = 8
  run = run_setup.build_run(c)
  assert run.game.num_classes == 10
  _, sample = run.eval_functions()
  z, y = sample(jax.random.PRNGKey(0), 50)
  assert z.shape == (50, c.latent_dim) and y.shape == (50,) and int(y.max()) < 10
  assert len(np.unique(np.asarray(y))) > 5
  with pytest.raises(ValueError, match='pass label='):
    run.generate(None, z)
  c.advaug.enabled = True
  with pytest.raises(ValueError, match='advaug does not take class labels'):
    run_setup.build_run(c)
