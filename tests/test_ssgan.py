"""Tests of SSGAN rotation self-supervision (jaxgan.ssgan, jaxgan.models.selfsup).

Also the training program with the SSGAN and InfoMax terms on (one tiny run) and
the config checks of both sections.
"""

from __future__ import annotations

import json
import math

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from tiny_models import init_d

from experiments.configs import infomax as infomax_configs
from experiments.configs import ssgan as ssgan_configs
from jaxgan import dat, losses, models, run_setup, ssgan, train
from jaxgan.game import Game, gaussian_latents, make_apply
from jaxgan.models import selfsup
from jaxgan.state import create_state
from jaxgan.steps import two_stage_step


def images(seed, shape):
  return jnp.asarray(np.random.default_rng(seed).uniform(-1.0, 1.0, shape), jnp.float32)


class RotD(nn.Module):
  """A tiny D on 4x4x1 images with a rotation head, following the ``output`` protocol."""

  aux_head: str = 'rotation'

  @nn.compact
  def __call__(self, x, train: bool, output: str = 'logits'):
    h = jnp.tanh(nn.Dense(6, name='body')(x.reshape(x.shape[0], -1)))
    rot = nn.Dense(4, name='l_y')(h)
    if output == 'rotation':
      return rot
    return nn.Dense(1, name='head')(h)[:, 0]


class TinyG(nn.Module):
  @nn.compact
  def __call__(self, z, train: bool):
    return jnp.tanh(nn.Dense(16)(z)).reshape(z.shape[0], 4, 4, 1)


# --------------------------------------------------------------------------- rotations


def test_quarter_turn_matches_hand_example():
  x = jnp.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]).reshape(1, 2, 3, 1)
  want = np.array([[3.0, 6.0], [2.0, 5.0], [1.0, 4.0]])  # 90 degrees counter-clockwise
  np.testing.assert_array_equal(np.asarray(ssgan.rotate(x, 1))[0, :, :, 0], want)
  half = np.array([[6.0, 5.0, 4.0], [3.0, 2.0, 1.0]])
  np.testing.assert_array_equal(np.asarray(ssgan.rotate(x, 2))[0, :, :, 0], half)


def test_rotations_are_exact_permutations():
  x = images(0, (3, 5, 5, 2))
  np.testing.assert_array_equal(np.asarray(ssgan.rotate(ssgan.rotate(x, 1), 3)), np.asarray(x))
  four = x
  for _ in range(4):
    four = ssgan.rotate(four, 1)
  np.testing.assert_array_equal(np.asarray(four), np.asarray(x))
  rot, labels = ssgan.rotate_batch(x)
  assert rot.shape == (12, 5, 5, 2)
  np.testing.assert_array_equal(np.asarray(labels), np.repeat(np.arange(4), 3))
  for k in range(4):
    want = np.rot90(np.asarray(x), k, axes=(1, 2))
    np.testing.assert_array_equal(np.asarray(rot[3 * k : 3 * k + 3]), want)


def test_quarter_rotations_follow_mimicry():
  x = images(8, (6, 3, 3, 2))
  rot, labels = ssgan.rotate_batch(x, 'quarter')
  want = [i * 4 // 6 for i in range(6)]  # image i turned floor(4 i / B) times
  assert rot.shape == x.shape and np.asarray(labels).tolist() == want == [0, 0, 1, 2, 2, 3]
  for i, k in enumerate(want):
    np.testing.assert_array_equal(np.asarray(rot[i]), np.rot90(np.asarray(x[i]), k, axes=(0, 1)))


def test_rotation_loss_is_cross_entropy():
  logits = np.random.default_rng(1).standard_normal((8, 4))
  labels = np.array([0, 1, 2, 3, 3, 2, 1, 0])
  logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
  want = -np.mean(logp[np.arange(8), labels])
  with jax.enable_x64(True):
    got = ssgan.rotation_loss(jnp.asarray(logits), jnp.asarray(labels))
    np.testing.assert_allclose(float(got), want, rtol=1e-6)


def test_d_ignoring_its_input_has_loss_log4():
  x = images(2, (5, 4, 4, 1))
  reg = ssgan.make_d_regularizer(lambda v, x: jnp.full((x.shape[0], 4), 3.0), weight=1.0)
  np.testing.assert_allclose(float(reg({}, x, x, None)), math.log(4.0), rtol=1e-6)
  # A jaxgan D whose rotation head is zeroed: logits 0 for every rotation.
  _, d = models.get_models('dcgan28', width=4, aux_head='rotation', d_norm='spectral')
  variables = init_d(d, (28, 28, 1))
  variables['params']['l_y'] = jax.tree.map(jnp.zeros_like, variables['params']['l_y'])
  rot = selfsup.rotation_apply(d)
  real = images(3, (3, 28, 28, 1))
  np.testing.assert_array_equal(np.asarray(rot(variables, real)), np.zeros((3, 4)))
  reg = ssgan.make_d_regularizer(rot, weight=0.5)
  np.testing.assert_allclose(float(reg(variables, real, real, None)), 0.5 * math.log(4), rtol=1e-6)


# --------------------------------------------------------------------------- models


@pytest.mark.parametrize('name', ['dcgan28', 'sngan32'])
def test_heads_leave_the_plain_d_unchanged(name):
  shape = (28, 28, 1) if name == 'dcgan28' else (8, 8, 3)
  size = dict(width=4) if name == 'dcgan28' else dict(ngf=4, ndf=4)
  _, plain = models.get_models(name, image_shape=shape, **size)
  _, headed = models.get_models(
    name, image_shape=shape, aux_head='rotation+infomax', infomax_dim=8, **size
  )
  v_head = init_d(headed, shape)
  plain_shapes = init_d(plain, shape)
  extra = set(v_head['params']) - set(plain_shapes['params'])
  assert extra == {
    'l_y',
    *(f'{s}_nrkhs_{p}' for s in ('local', 'global') for p in ('a', 'b', 'sc')),
  }
  v_plain = {c: {k: v_head[c][k] for k in plain_shapes[c]} for c in plain_shapes}
  chex.assert_trees_all_equal_shapes(v_plain, plain_shapes)
  x = images(4, (2, *shape))
  np.testing.assert_array_equal(
    np.asarray(plain.apply(v_plain, x, train=False)),
    np.asarray(headed.apply(v_head, x, train=False)),
  )
  assert selfsup.rotation_apply(headed)(v_head, x).shape == (2, 4)
  local, glob = selfsup.infomax_apply(headed)(v_head, x)
  assert local.shape == (2, shape[0] // 2 if name == 'dcgan28' else 2, local.shape[2], 8)
  assert glob.shape == (2, 8)


def test_model_head_errors():
  _, plain = models.get_models('dcgan28', width=4)
  with pytest.raises(ValueError, match="has no rotation head; build it with aux_head='rotation'"):
    selfsup.rotation_apply(plain)
  x = jnp.zeros((2, 28, 28, 1))
  v = init_d(plain, (28, 28, 1))
  with pytest.raises(ValueError, match="output='rotation' needs aux_head"):
    plain.apply(v, x, train=True, output='rotation', mutable=['batch_stats'])
  _, bad = models.get_models('dcgan28', width=4, aux_head='rot')
  with pytest.raises(ValueError, match=r"aux_head must be one of \['none'"):
    jax.eval_shape(lambda: bad.init(jax.random.PRNGKey(0), x, train=False))


# --------------------------------------------------------------------------- gradients


def test_d_regularizer_gradients_reach_the_head():
  _, d = models.get_models('dcgan28', width=4, aux_head='rotation', d_norm='spectral')
  variables = init_d(d, (28, 28, 1))
  reg = ssgan.make_d_regularizer(selfsup.rotation_apply(d), weight=1.0)
  real = images(5, (3, 28, 28, 1))
  grads = jax.jit(jax.grad(lambda p: reg({**variables, 'params': p}, real, real, None)))(
    variables['params']
  )
  norm = {k: float(optax.tree.norm(g)) for k, g in grads.items()}
  assert norm['l_y'] > 0 and norm['conv1'] > 0 and norm['conv2'] > 0
  assert norm['head'] == 0.0  # the GAN head is not part of the rotation loss


def test_g_regularizer_is_ce_of_rotated_fakes_and_reaches_g():
  g, d = TinyG(), RotD()
  z = jnp.asarray(np.random.default_rng(6).standard_normal((3, 2)), jnp.float32)
  g_vars = {'params': {'Dense_0': {'kernel': 0.3 * jnp.ones((2, 16)), 'bias': jnp.zeros(16)}}}
  d_vars = init_d(d, (4, 4, 1))
  rot = selfsup.rotation_apply(d)
  reg = ssgan.make_g_regularizer(make_apply(g), rot, weight=0.2)
  fake = g.apply(g_vars, z, train=True)
  x_rot, labels = ssgan.rotate_batch(fake)
  want = 0.2 * ssgan.rotation_loss(d.apply(d_vars, x_rot, train=True, output='rotation'), labels)
  np.testing.assert_allclose(float(reg(g_vars, d_vars, z, None)), float(want), rtol=1e-6)
  grads = jax.jit(jax.grad(lambda p: reg({'params': p}, d_vars, z, None)))(g_vars['params'])
  assert float(optax.tree.norm(grads)) > 0


def test_with_dat_the_rotation_loss_sees_clean_reals():
  g, d = TinyG(), RotD()
  rot = selfsup.rotation_apply(d)
  game = Game(
    g_apply=make_apply(g),
    d_apply=make_apply(d),
    loss=losses.get_loss('hinge'),
    sample_latents=gaussian_latents(2),
    d_regularizers=(ssgan.make_d_regularizer(rot, 1.0),),
    d_perturbation=dat.make_dat_perturbation(step_size=50.0, clip=None, clamp_real=False),
  )
  tx = optax.sgd(0.0)
  state = create_state(
    jax.random.PRNGKey(0),
    g_module=g,
    d_module=d,
    g_tx=tx,
    d_tx=tx,
    latent_dim=2,
    image_shape=(4, 4, 1),
  )
  real = images(7, (4, 4, 4, 1))
  _, metrics = jax.jit(two_stage_step(game, tx, tx))(state, {'image': real})
  clean = ssgan.rotation_ce(rot, state.d.variables, real)
  np.testing.assert_allclose(float(metrics['d_reg']), float(clean), rtol=1e-5)


def test_regularizer_argument_errors():
  with pytest.raises(ValueError, match='ssgan d_weight must be a finite number >= 0'):
    ssgan.make_d_regularizer(lambda v, x: x, weight=-1.0)
  with pytest.raises(ValueError, match='ssgan g_weight must be a finite number >= 0'):
    ssgan.make_g_regularizer(lambda *a, **k: None, lambda v, x: x, weight=float('nan'))
  with pytest.raises(ValueError, match="ssgan rotations must be one of \\['all', 'quarter'\\]"):
    ssgan.rotate_batch(jnp.zeros((2, 4, 4, 1)), 'half')
  with pytest.raises(ValueError, match='rotations need square NHWC images'):
    ssgan.rotate_batch(jnp.zeros((2, 4, 6, 1)))
  with pytest.raises(ValueError, match=r'rot_logits must be \[N, 4\]'):
    ssgan.rotation_loss(jnp.zeros((4, 3)), jnp.zeros((4,), jnp.int32))


# --------------------------------------------------------------------------- the program


def test_all_variants_are_valid_configs():
  for module in (ssgan_configs, infomax_configs):
    for variant in ('cifar10', 'cifar100', 'stl10', 'mnist'):
      for v in (variant, f'{variant}_dat'):
        c = module.get_config(v)
        run_setup.validate_config(c)
        assert c.dat.enabled == v.endswith('_dat')
  c = ssgan_configs.get_config('cifar10')
  assert (c.dataset, c.model, c.n_dis, c.batch_size, c.num_steps) == (
    'cifar10',
    'sngan32',
    5,
    64,
    100_000,
  )
  assert (c.d_optimizer.lr, c.d_optimizer.b1, c.d_optimizer.b2) == (2e-4, 0.0, 0.9)
  assert (c.ssgan.d_weight, c.ssgan.g_weight, c.ssgan.rotations) == (1.0, 0.2, 'quarter')
  m = infomax_configs.get_config('mnist')
  assert (m.dataset, m.model, m.model_kwargs.aux_head, m.infomax.weight) == (
    'mnist5k',
    'dcgan28',
    'infomax',
    0.2,
  )
  with pytest.raises(ValueError, match="unknown ssgan variant 'cifar'"):
    ssgan_configs.get_config('cifar')


def test_config_errors():
  c = ssgan_configs.get_config('mnist')
  c.model_kwargs.aux_head = 'infomax'
  with pytest.raises(ValueError, match=r'aux_head=rotation\.'):
    run_setup.validate_config(c)
  c = ssgan_configs.get_config('mnist')
  c.ssgan.g_weight = -0.2
  with pytest.raises(ValueError, match=r'config.ssgan.g_weight=-0.2 is invalid: use a value >= 0'):
    run_setup.validate_config(c)
  c = ssgan_configs.get_config('mnist')
  c.ssgan.rotations = 'half'
  with pytest.raises(ValueError, match="config.ssgan.rotations='half' is invalid: choose one of"):
    run_setup.validate_config(c)
  c = ssgan_configs.get_config('mnist')
  c.model = 'mlp'
  with pytest.raises(ValueError, match="config.model='mlp' is invalid: ssgan.enabled needs a D"):
    run_setup.validate_config(c)
  c = infomax_configs.get_config('mnist')
  c.ssgan.enabled = True
  with pytest.raises(ValueError, match=r'aux_head=rotation\+infomax\.'):
    run_setup.validate_config(c)
  c.infomax.negatives = 'everywhere'
  with pytest.raises(ValueError, match="config.infomax.negatives='everywhere' is invalid"):
    run_setup.validate_config(c)


def test_training_program_with_ssgan_and_infomax(tmp_path):
  c = ssgan_configs.get_config('mnist')
  c.infomax.enabled = True
  c.model_kwargs.aux_head = 'rotation+infomax'
  c.model_kwargs.width = 4
  c.model_kwargs.infomax_dim = 8
  c.batch_size = 8
  c.num_steps = 2
  c.log_every = 1
  c.sample_every = 0
  c.eval_samples = 0
  c.checkpoint_every = 2
  run = run_setup.build_run(c)
  assert len(run.game.d_regularizers) == 2 and len(run.game.g_regularizers) == 2
  train.train_and_evaluate(c, tmp_path)
  rows = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert [r['step'] for r in rows] == [1, 2]
  for r in rows:
    assert np.isfinite(r['d_reg']) and np.isfinite(r['g_reg']) and r['d_reg'] > 0
