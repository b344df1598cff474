"""Input checks before compilation: batch coupling from D, loss properties, bad inputs."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tiny_models as tm

from jaxgan import checks, coopinit, losses, onestage
from jaxgan.game import Game, make_apply
from jaxgan.steps import two_stage_step


class MinibatchStdD(nn.Module):
  """Appends the batch's feature std (ProGAN/StyleGAN minibatch-stddev)."""

  @nn.compact
  def __call__(self, x, train: bool):
    h = jnp.tanh(nn.Dense(6)(x.reshape(x.shape[0], -1)))
    std = jnp.broadcast_to(jnp.mean(jnp.std(h, axis=0)), (h.shape[0], 1))
    return nn.Dense(1)(jnp.concatenate([h, std], -1))[:, 0]


class PairNormD(nn.Module):
  """Centres each consecutive pair of samples: coupled within pairs only."""

  @nn.compact
  def __call__(self, x, train: bool):
    h = nn.Dense(6)(x.reshape(x.shape[0], -1)).reshape(-1, 2, 6)
    h = (h - h.mean(axis=1, keepdims=True)).reshape(-1, 6)
    return nn.Dense(1)(jnp.tanh(h))[:, 0]


class LayerNormD(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool):
    h = nn.LayerNorm()(nn.Dense(6)(x.reshape(x.shape[0], -1)))
    return nn.Dense(1)(jnp.tanh(h))[:, 0]


D_MODULES = {
  'batchnorm': (tm.TinyBND, True),
  'mean_subtracting': (lambda: tm.TinyD(coupled=True), True),
  'minibatch_std': (MinibatchStdD, True),
  'pair_norm': (PairNormD, True),
  'layernorm': (LayerNormD, False),
  'per_sample': (tm.TinyD, False),
}


@pytest.mark.parametrize('name', sorted(D_MODULES))
def test_batch_coupling_found_from_d_concrete_and_traced(name):
  make, coupled = D_MODULES[name]
  d = make()
  variables = tm.init_d(d, tm.IMAGE_SHAPE)
  real = tm.real_batch()['image']
  game = Game(None, make_apply(d), losses.get_loss('ns'), None)
  assert checks.detect_batch_coupling(game.d_apply, variables, real) is coupled
  traced = jax.jit(lambda v, x: jnp.asarray(checks.detect_batch_coupling(game.d_apply, v, x)))
  assert bool(traced(variables, real)) is coupled  # random stand-ins, found before compiling
  assert checks.d_batch_coupled(game, variables, real) is coupled
  assert checks.d_batch_coupled(game.replace(d_batch_coupled=not coupled), variables, real) is (
    not coupled
  )  # the flag overrides the detection
  assert checks.detect_batch_coupling(game.d_apply, variables, real[:1]) is False


def test_undeclared_coupled_d_refused_under_jit_and_overridable():
  game, g_mod, d_mod = tm.make_game('ns', d_module=tm.TinyBND(), d_batch_coupled=None)
  state = tm.make_state(g_mod, d_mod)
  ident = optax.identity()
  step = jax.jit(onestage.one_stage_step(game, ident, ident, mode='asymmetric'))
  with pytest.raises(ValueError, match=r'batch-coupled D.*d_batch_coupled=False'):
    step(state, tm.real_batch())
  declared = game.replace(d_batch_coupled=False)  # the user's word wins (the rule is then wrong)
  jax.jit(onestage.one_stage_step(declared, ident, ident, mode='asymmetric'))(
    state, tm.real_batch()
  )
  with pytest.raises(ValueError, match='d_coupled='):
    onestage.resolve_mode(game, 'auto')
  assert onestage.resolve_mode(game, 'auto', d_coupled=True) == 'exact'
  assert onestage.resolve_mode(game, 'exact') == 'exact'  # no D needed
  with pytest.raises(ValueError, match='d_batch_coupled must be None'):
    game.replace(d_batch_coupled='yes')


def test_coop_batch_statistics_chain_refused_for_an_undeclared_coupled_d():
  game, g_mod, d_mod = tm.make_game('ns', d_module=tm.TinyBND(), d_batch_coupled=None)
  state = tm.make_state(g_mod, d_mod)
  step = coopinit.coop_step(
    game,
    optax.identity(),
    optax.identity(),
    langevin=coopinit.LangevinConfig(step_size=0.1, n_steps=2),
    langevin_stats='batch',
  )
  with pytest.raises(ValueError, match='couples the chains'):
    step(state, tm.real_batch())


def hinge_like(name, margin=1.0):
  """A hand-written hinge under another name, without gamma_singular."""
  return losses.GANLoss(
    name=name,
    d_real=lambda q: jax.nn.relu(margin - q),
    d_fake=lambda p: jax.nn.relu(margin + p),
    g_fake=lambda p: -p,
    gamma=lambda p: -jnp.ones_like(p),
    symmetric=False,
  )


@pytest.mark.parametrize(
  'loss,vanishes',
  [
    (losses.get_loss('hinge'), True),
    (dataclasses.replace(losses.get_loss('hinge'), name='my_hinge', gamma_singular=None), True),
    (hinge_like('margin_hinge', 10.0), True),
    (losses.get_loss('ns'), False),
    (losses.get_loss('lsgan'), False),  # f'(p) = p - a: one zero, not a region
    (losses.get_loss('minimax'), False),
    (losses.get_loss('wgan'), False),
  ],
)
def test_slope_vanishing_is_a_property_of_the_loss(loss, vanishes):
  assert losses.slope_vanishes(loss) is vanishes
  game, _, _ = tm.make_game('ns')
  game = game.replace(loss=loss)
  if vanishes:
    with pytest.raises(ValueError, match=r"f'\(p\) = 0 on a range.*mode='exact'"):
      onestage.one_stage_step(game, optax.identity(), optax.identity(), mode='asymmetric')
    assert onestage.resolve_mode(game, 'auto') == 'exact'


def bad(images, **extra):
  return {'image': images, **extra}


X = np.asarray(tm.real_batch()['image'])
BAD_BATCHES = [
  (bad(X[:0]), r'is empty \(shape \(0, 2, 2, 1\)\)'),
  (bad((X + 1) * 127.5), r'spans \[.*\], outside \[-1, 1\].*to_float'),
  (bad(np.round((X + 1) * 127.5).astype(np.uint8)), 'dtype uint8.*to_float'),
  ({'images': X}, 'must be a dict with an "image" entry'),
  (X, 'must be a dict with an "image" entry'),
  (bad(X[..., 0]), r'\[N, H, W, C\] images'),
]


@pytest.mark.parametrize('batch,message', BAD_BATCHES)
@pytest.mark.parametrize('kind', ['two_stage', 'one_stage', 'gradients'])
def test_bad_batches_refused_before_compiling(batch, message, kind):
  game, g_mod, d_mod = tm.make_game('ns')
  state = tm.make_state(g_mod, d_mod)
  ident = optax.identity()
  with pytest.raises(ValueError, match=message):
    if kind == 'gradients':
      onestage.gradients(game, state.g.variables, state.d.variables, batch, state.rng)
    else:
      make = two_stage_step if kind == 'two_stage' else onestage.one_stage_step
      make(game, ident, ident)(state, batch)


def test_images_in_0_1_warn():
  game, g_mod, d_mod = tm.make_game('ns')
  state = tm.make_state(g_mod, d_mod)
  with pytest.warns(UserWarning, match=r'x \* 2 - 1'):
    two_stage_step(game, optax.identity(), optax.identity())(state, bad((X + 1) / 2))


def test_optimizer_that_does_not_match_the_state():
  game, g_mod, d_mod = tm.make_game('ns')
  state = tm.make_state(g_mod, d_mod)  # optax.identity() states
  adam = optax.adam(1e-3)
  with pytest.raises(ValueError, match=r"G's optimizer state does not match g_tx.*EmptyState.*"):
    jax.jit(two_stage_step(game, adam, optax.identity()))(state, tm.real_batch())
  with pytest.raises(ValueError, match=r"D's optimizer.*ScaleByAdamState.*d_tx.init"):
    onestage.one_stage_step(game, optax.identity(), adam)(state, tm.real_batch())


def test_g_output_shape_must_match_the_data():
  game, g_mod, d_mod = tm.make_game('ns')
  state = tm.make_state(g_mod, d_mod)
  images = np.full((8, 4, 1, 1), -0.5, np.float32)
  with pytest.raises(ValueError, match=r'G returns samples of shape \(2, 2, 1\).*\(4, 1, 1\)'):
    onestage.one_stage_step(game, optax.identity(), optax.identity())(state, bad(images))


def test_labels_out_of_range_and_variables_without_params():
  game, g_mod, d_mod = tm.make_game('ns')
  state = tm.make_state(g_mod, d_mod)
  cond = game.replace(num_classes=3)
  with pytest.raises(ValueError, match=r'batch\["label"\] spans \[0, 7\], outside \[0, 3\)'):
    checks.check_batch_values(bad(X, label=np.arange(8)), cond, where='t')
  with pytest.raises(ValueError, match=r"variables must be a dict \{'params'"):
    onestage.gradients(game, state.g.params, state.d.variables, bad(X), state.rng)
