"""Tests of jaxgan.advaug (feature-level adversarial augmentation)."""

from __future__ import annotations

import dataclasses
import functools
import importlib
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import configs
from experiments.configs import default
from jaxgan import advaug, losses, models, run_setup
from jaxgan.advaug import AdvAugConfig
from jaxgan.game import make_apply

KEY = jax.random.PRNGKey(0)
B = 6


class PG(nn.Module):
  """z [B, 3] -> images [B, 2, 2, 1]; the feature is the first Dense's output."""

  @nn.compact
  def __call__(self, z, train: bool = False):
    h = self.perturb('features', nn.Dense(4)(z))
    return jnp.tanh(nn.Dense(4)(jnp.tanh(h))).reshape(z.shape[0], 2, 2, 1)


class PD(nn.Module):
  """images -> logits [B]; the feature is the input of the last (linear) layer."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    f = jnp.tanh(nn.Dense(5)(x.reshape(x.shape[0], -1)))
    f = self.perturb('features', f)
    return nn.Dense(1, use_bias=False, name='head')(f)[:, 0]


class SmoothHeadD(nn.Module):
  """A D whose part after the feature is non-linear (for ascent tests)."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    f = jnp.tanh(nn.Dense(5)(x.reshape(x.shape[0], -1)))
    f = self.perturb('features', f)
    return nn.Dense(1)(jnp.tanh(nn.Dense(4)(f)))[:, 0]


class BND(nn.Module):
  """A D with BatchNorm before the feature."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    f = nn.Dense(5)(x.reshape(x.shape[0], -1))
    f = nn.BatchNorm(use_running_average=not train)(f)
    f = self.perturb('features', jnp.tanh(f))
    return nn.Dense(1)(f)[:, 0]


class Inner(nn.Module):
  @nn.compact
  def __call__(self, x):
    return self.perturb('features', nn.Dense(3)(x))


class NestedD(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = False):
    return nn.Dense(1)(Inner()(x.reshape(x.shape[0], -1)))[:, 0]


class NoHook(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = False):
    return nn.Dense(1)(x.reshape(x.shape[0], -1))[:, 0]


def setup(d_module=None, dtype=jnp.float32):
  """Params, data and templates of the tiny G and D (cached per D class and dtype)."""
  return _setup(type(d_module or PD()), jnp.dtype(dtype).name)


def numpy_init(module, x, rng, dtype):
  """Variables of ``module`` filled from numpy (no init compile): params ~ N(0, 0.6^2)."""
  shapes = jax.eval_shape(lambda x: module.init(KEY, x), x)
  fill = {
    'params': lambda s: 0.6 * rng.normal(size=s.shape),
    'batch_stats': lambda s: np.ones(s.shape),
  }
  return {
    name: jax.tree.map(lambda s, f=fill[name]: jnp.asarray(f(s), dtype), shapes[name])
    for name in shapes
    if name != 'perturbations'
  }


@functools.cache
def _setup(d_class, dtype_name):
  dtype = jnp.dtype(dtype_name)
  g_mod, d_mod = PG(), d_class()
  rng = np.random.default_rng(0)
  z = jnp.asarray(rng.normal(size=(B, 3)), dtype)
  real = jnp.asarray(rng.uniform(-1, 1, (B, 2, 2, 1)), dtype)
  fake = jnp.asarray(rng.uniform(-1, 1, (B, 2, 2, 1)), dtype)
  return dict(
    g_apply=make_apply(g_mod),
    d_apply=make_apply(d_mod),
    g_vars=numpy_init(g_mod, z, rng, dtype),
    d_vars=numpy_init(d_mod, real, rng, dtype),
    z=z,
    real=real,
    fake=fake,
    g_tmpl=advaug.perturbation_template(g_mod, z),
    d_tmpl=advaug.perturbation_template(d_mod, real),
  )


def clean_d_loss(s, loss, d_vars=None):
  d_vars = s['d_vars'] if d_vars is None else d_vars
  q, _ = s['d_apply'](d_vars, s['real'], train=True)
  p, _ = s['d_apply'](d_vars, s['fake'], train=True)
  return loss.d_loss(q, p)


def clean_g_loss(s, loss, g_vars=None):
  g_vars = s['g_vars'] if g_vars is None else g_vars
  images, _ = s['g_apply'](g_vars, s['z'], train=True)
  p, _ = s['d_apply'](s['d_vars'], images, train=True)
  return loss.g_loss(p)


def d_attack(s, loss, cfg, d_vars=None, key=KEY):
  d_vars = s['d_vars'] if d_vars is None else d_vars
  return advaug.attack_d_features(
    s['d_apply'], d_vars, s['real'], s['fake'], loss, key, cfg, s['d_tmpl']
  )


def g_attack(s, loss, cfg, g_vars=None):
  g_vars = s['g_vars'] if g_vars is None else g_vars
  return advaug.attack_g_feature(
    s['g_apply'], s['d_apply'], g_vars, s['d_vars'], s['z'], loss, KEY, cfg, s['g_tmpl']
  )


def d_adv(s, loss, cfg, d_vars=None):
  d_vars = s['d_vars'] if d_vars is None else d_vars
  return advaug.d_adversarial_loss(
    s['d_apply'], d_vars, s['real'], s['fake'], loss, KEY, cfg, s['d_tmpl']
  )


def g_adv(s, loss, cfg, g_vars=None, key=KEY):
  g_vars = s['g_vars'] if g_vars is None else g_vars
  return advaug.g_adversarial_loss(
    s['g_apply'], s['d_apply'], g_vars, s['d_vars'], s['z'], loss, key, cfg, s['g_tmpl']
  )


def d_whole(s, loss, cfg, d_vars=None):
  d_vars = s['d_vars'] if d_vars is None else d_vars
  return advaug.advaug_d_loss(
    s['d_apply'], d_vars, s['real'], s['fake'], loss, KEY, cfg, s['d_tmpl']
  )


def g_whole(s, loss, cfg, g_vars=None, **kw):
  g_vars = s['g_vars'] if g_vars is None else g_vars
  return advaug.advaug_g_loss(
    s['g_apply'], s['d_apply'], g_vars, s['d_vars'], s['z'], loss, KEY, cfg, s['g_tmpl'], **kw
  )


def assert_trees_close(a, b, **kw):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, **kw), a, b)


# ----------------------------------------------------------------------------
# The Flax hook and templates
# ----------------------------------------------------------------------------


def test_perturb_path_template_and_addition():
  s = setup()
  shapes = jax.eval_shape(lambda x: PD().init(KEY, x), s['real'])
  assert set(shapes['perturbations']) == {'features'}
  assert shapes['perturbations']['features'].shape == (B, 5)
  assert s['d_tmpl'] == {'features': jax.ShapeDtypeStruct((5,), jnp.float32)}
  assert s['g_tmpl'] == {'features': jax.ShapeDtypeStruct((4,), jnp.float32)}
  nested = advaug.perturbation_template(NestedD(), s['real'])
  assert nested == {'Inner_0': {'features': jax.ShapeDtypeStruct((3,), jnp.float32)}}
  # Passing the collection adds delta to the feature: compare with the layers by hand.
  delta = np.random.default_rng(3).normal(size=(B, 5)).astype(np.float32)
  out = jax.jit(
    lambda v, d: s['d_apply']({**v, 'perturbations': {'features': d}}, s['real'], train=False)[0]
  )(s['d_vars'], delta)
  p = jax.tree.map(np.asarray, s['d_vars']['params'])
  f = np.tanh(np.asarray(s['real']).reshape(B, -1) @ p['Dense_0']['kernel'] + p['Dense_0']['bias'])
  np.testing.assert_allclose(out, ((f + delta) @ p['head']['kernel'])[:, 0], rtol=1e-5, atol=1e-6)
  zero = advaug.zero_perturbation(s['d_tmpl'], 7)
  assert zero['features'].shape == (7, 5) and not np.any(zero['features'])


def test_template_errors():
  x = jnp.zeros((2, 2, 2, 1))
  with pytest.raises(ValueError, match='never calls\\s+self.perturb'):
    advaug.perturbation_template(NoHook(), x)

  class Global(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
      w = self.perturb('features', jnp.ones((3,)))
      return jnp.sum(x.reshape(x.shape[0], -1), 1) * jnp.sum(w)

  with pytest.raises(ValueError, match='does not start with the batch size'):
    advaug.perturbation_template(Global(), x)
  s = setup()
  with pytest.raises(ValueError, match='perturbation_template'):
    advaug.make_d_regularizer(s['d_apply'], losses.get_loss('hinge'), AdvAugConfig(), {})


# ----------------------------------------------------------------------------
# PGD
# ----------------------------------------------------------------------------


A = np.array([[1.0, -2.0, 0.0, 0.5], [0.0, 0.0, 3.0, -4.0], [0.0, 0.0, 0.0, 0.0]])


def linear_loss(delta):
  return jnp.sum(jnp.asarray(A, delta['f'].dtype) * delta['f'])


def zeros():
  return {'f': jnp.zeros(A.shape)}


def pgd(loss_fn=linear_loss, delta0=None, **kw):
  return advaug.pgd_feature_perturbation(loss_fn, zeros() if delta0 is None else delta0, **kw)


def test_pgd_linf_steps_are_signs():
  with jax.enable_x64(True):
    run = jax.jit(
      lambda: [
        pgd(steps=1, step_size=0.01)['f'],
        pgd(steps=3, step_size=0.01)['f'],
        pgd(steps=1, step_size=0.01, ascend=False)['f'],
        pgd(steps=3, step_size=0.01, eps=0.015)['f'],
        pgd(delta0={'f': jnp.full(A.shape, 0.5)}, steps=0, step_size=0.01)['f'],
      ]
    )
    one, three, down, clipped, start = run()
    np.testing.assert_array_equal(one, 0.01 * np.sign(A))  # |delta| = gamma where grad != 0
    np.testing.assert_allclose(three, 0.03 * np.sign(A), rtol=1e-15)
    np.testing.assert_array_equal(down, -0.01 * np.sign(A))
    np.testing.assert_allclose(clipped, 0.015 * np.sign(A), rtol=1e-15)
    np.testing.assert_array_equal(start, 0.5)


def test_pgd_l2_unit_steps_per_sample():
  w = {'f': np.array([[3.0, 0.0], [0.0, 1.0]]), 'g': np.array([[4.0, 0.0, 0.0], [0.0, 0.0, 0.0]])}
  both = lambda d: jnp.sum(d['f'] * w['f']) + jnp.sum(d['g'] * w['g'])
  with jax.enable_x64(True):
    two = {'f': jnp.zeros((2, 2)), 'g': jnp.zeros((2, 3))}
    run = jax.jit(
      lambda: [
        pgd(steps=1, step_size=0.1, norm='l2')['f'],
        pgd(steps=5, step_size=0.1, norm='l2', eps=0.25)['f'],
        advaug.pgd_feature_perturbation(both, two, steps=1, step_size=1.0, norm='l2'),
      ]
    )
    one, proj, out = run()
  norms = np.linalg.norm(A, axis=1, keepdims=True)
  expected = 0.1 * np.divide(A, norms, out=np.zeros_like(A), where=norms > 0)
  np.testing.assert_allclose(one, expected, rtol=1e-14)
  np.testing.assert_allclose(np.linalg.norm(proj, axis=1), [0.25, 0.25, 0.0], rtol=1e-12)
  # The per-sample norm spans all leaves of the pytree: row 0 is (3, 4) / 5.
  np.testing.assert_allclose(out['f'], [[0.6, 0.0], [0.0, 1.0]], rtol=1e-14)
  np.testing.assert_allclose(out['g'], [[0.8, 0.0, 0.0], [0.0, 0.0, 0.0]], rtol=1e-14)


def test_pgd_result_carries_no_gradient():
  def attack(c):
    return pgd(lambda d: jnp.sum(c * d['f'] ** 2 + c * d['f']), steps=2, step_size=0.1, norm='l2')

  c = jnp.asarray(A + 1.0, jnp.float32)
  g, delta = jax.jit(lambda c: (jax.grad(lambda c: jnp.sum(attack(c)['f'] * c))(c), attack(c)))(c)
  # Only the explicit factor c of the outer sum contributes: d/dc sum(delta c) = delta.
  np.testing.assert_allclose(g, delta['f'], rtol=1e-6)


def test_random_start_stays_in_the_ball():
  s = setup(SmoothHeadD())
  loss = losses.get_loss('ns')
  cfg = AdvAugConfig(steps=1, step_size=0.01, eps=0.05, random_start=True)

  @jax.jit
  def run():
    return (
      advaug.random_start(KEY, zeros(), 'linf', 0.2)['f'],
      advaug.random_start(KEY, zeros(), 'l2', 0.2)['f'],
      d_attack(s, loss, cfg)[0]['features'],
      d_attack(s, loss, cfg, key=jax.random.PRNGKey(1))[0]['features'],
    )

  box, ball, dr1, dr2 = run()
  assert np.abs(box).max() <= 0.2 and np.abs(box).min() > 0
  assert np.linalg.norm(ball, axis=1).max() <= 0.2 + 1e-6
  assert np.abs(dr1).max() <= 0.05 + 1e-7
  assert not np.array_equal(dr1, dr2)


# ----------------------------------------------------------------------------
# The properties: zero step == clean; one step ascends the attacked loss
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('cfg', [AdvAugConfig(steps=0), AdvAugConfig(step_size=0.0)])
def test_zero_attack_is_the_clean_loss(cfg):
  loss = losses.get_loss('hinge')
  with jax.enable_x64(True):
    s = setup(SmoothHeadD(), jnp.float64)

    @jax.jit
    def run():
      gd, gg = s['d_vars'], s['g_vars']
      return (
        (d_whole(s, loss, cfg), clean_d_loss(s, loss)),
        (g_whole(s, loss, cfg), clean_g_loss(s, loss)),
        (
          jax.grad(lambda v: d_whole(s, loss, cfg, v))(gd),
          jax.grad(lambda v: clean_d_loss(s, loss, v))(gd),
        ),
        (
          jax.grad(lambda v: g_whole(s, loss, cfg, v))(gg),
          jax.grad(lambda v: clean_g_loss(s, loss, v))(gg),
        ),
      )

    (d, d_clean), (g, g_clean), (gd, gd_clean), (gg, gg_clean) = run()
  np.testing.assert_array_equal(d, d_clean)
  np.testing.assert_array_equal(g, g_clean)
  # And the gradients are the clean gradients ('mean' of two equal branches).
  assert_trees_close(gd, gd_clean, rtol=1e-13, atol=1e-15)
  assert_trees_close(gg, gg_clean, rtol=1e-13, atol=1e-15)


def branch_logits(s, loss, cfg):
  """D's logits at delta = 0 and at the attack, for real, fake and G's side."""
  da, dv = s['d_apply'], s['d_vars']
  dr, df = d_attack(s, loss, cfg)
  dg = g_attack(s, loss, cfg)
  with_d = lambda x, d: da({**dv, 'perturbations': d}, x, train=True)[0]

  def g_logits(d):
    images = s['g_apply']({**s['g_vars'], 'perturbations': d}, s['z'], train=True)[0]
    return da(dv, images, train=True)[0]

  zd = advaug.zero_perturbation(s['d_tmpl'], B)
  return {
    'real': (with_d(s['real'], zd), with_d(s['real'], dr)),
    'fake': (with_d(s['fake'], zd), with_d(s['fake'], df)),
    'g': (g_logits(advaug.zero_perturbation(s['g_tmpl'], B)), g_logits(dg)),
  }


@pytest.mark.parametrize('loss_name', ['ns', 'hinge', 'lsgan'])
def test_one_step_increases_each_players_loss_paper(loss_name):
  loss = losses.get_loss(loss_name)
  cfg = AdvAugConfig(steps=1, step_size=1e-3, direction='paper')
  with jax.enable_x64(True):
    s = setup(SmoothHeadD(), jnp.float64)

    @jax.jit
    def run():
      return (
        branch_logits(s, loss, cfg),
        (d_whole(s, loss, cfg), clean_d_loss(s, loss)),
        (g_whole(s, loss, cfg), clean_g_loss(s, loss)),
      )

    v, (d, d_clean), (g, g_clean) = run()
    own = {'real': loss.d_real, 'fake': loss.d_fake, 'g': loss.g_fake}
    for role, (clean, adv) in v.items():
      assert jnp.mean(own[role](adv)) > jnp.mean(own[role](clean)), role
  # And the whole losses are then above the clean ones.
  assert d > d_clean and g > g_clean


def test_paper_literal_lowers_ds_loss_and_reference_raises_the_score():
  loss = losses.get_loss('ns')
  cfgs = {
    d: AdvAugConfig(steps=1, step_size=1e-3, direction=d)
    for d in ('paper', 'paper_literal', 'reference')
  }
  with jax.enable_x64(True):
    s = setup(SmoothHeadD(), jnp.float64)
    out = jax.jit(lambda: {d: branch_logits(s, loss, c) for d, c in cfgs.items()})()
    out = jax.tree.map(np.asarray, out)
  softplus = lambda x: np.mean(
    np.logaddexp(0.0, x)
  )  # ns: d_real = sp(-q), d_fake = sp(p), g = sp(-p)
  v = out['paper_literal']
  assert softplus(-v['real'][1]) < softplus(-v['real'][0])  # D's real term goes down
  assert softplus(v['fake'][1]) < softplus(v['fake'][0])  # D's fake term goes down
  assert softplus(-v['g'][1]) > softplus(-v['g'][0])  # G's term (ns: sp(-p)) goes up
  for role, (clean, adv) in out['reference'].items():
    assert np.mean(adv) > np.mean(clean), role
  # 'paper' with ns: real score down, fake score up, G-side score down.
  v = out['paper']
  assert np.mean(v['real'][1]) < np.mean(v['real'][0])
  assert np.mean(v['fake'][1]) > np.mean(v['fake'][0])
  assert np.mean(v['g'][1]) < np.mean(v['g'][0])


def test_reference_linear_head_gives_sign_of_the_head_weight():
  s = setup()
  cfg = AdvAugConfig(steps=1, step_size=0.01, direction='reference')
  dr, df = jax.jit(lambda: d_attack(s, losses.get_loss('hinge'), cfg))()
  w = np.asarray(s['d_vars']['params']['head']['kernel'][:, 0])
  expected = np.broadcast_to(np.float32(0.01) * np.sign(w), (B, 5))
  np.testing.assert_array_equal(dr['features'], expected)  # same for every sample
  np.testing.assert_array_equal(df['features'], expected)  # real and fake alike


def test_reference_biggan_skips_hinge_saturated_samples():
  s = setup()
  d_vars = {**s['d_vars'], 'params': dict(s['d_vars']['params'])}
  d_vars['params']['head'] = {'kernel': s['d_vars']['params']['head']['kernel'] * 4.0}
  cfg = AdvAugConfig(steps=1, step_size=0.01, direction='reference_biggan')
  q, (dr, _) = jax.jit(
    lambda v: (
      s['d_apply'](v, s['real'], train=True)[0],
      d_attack(s, losses.get_loss('hinge'), cfg, v),
    )
  )(d_vars)
  saturated = np.asarray(q >= 1.0)
  assert saturated.any() and not saturated.all()
  w = np.asarray(d_vars['params']['head']['kernel'][:, 0])
  np.testing.assert_array_equal(dr['features'][saturated], 0.0)
  expected = np.broadcast_to(np.float32(0.01) * np.sign(w), (int((~saturated).sum()), 5))
  np.testing.assert_array_equal(dr['features'][~saturated], expected)


def test_norm_bound_of_the_feature_perturbation():
  s = setup(SmoothHeadD())
  loss = losses.get_loss('ns')
  cases = [
    (AdvAugConfig(steps=1, step_size=0.01), 0.01),
    (AdvAugConfig(steps=4, step_size=0.01), 0.04),
    (AdvAugConfig(steps=4, step_size=0.01, eps=0.025), 0.025),
  ]
  l2 = AdvAugConfig(steps=3, step_size=0.02, norm='l2', eps=0.03)
  deltas, dg = jax.jit(lambda: ([d_attack(s, loss, c) for c, _ in cases], g_attack(s, loss, l2)))()
  for (dr, df), (_, bound) in zip(deltas, cases):
    assert float(np.max(np.abs(dr['features']))) == pytest.approx(bound, rel=1e-6)
    assert float(np.max(np.abs(df['features']))) <= bound * (1 + 1e-6)
  np.testing.assert_allclose(np.linalg.norm(dg['features'], axis=1), 0.03, rtol=1e-5)


# ----------------------------------------------------------------------------
# Gradients: only through the branches' forward passes, never the attack
# ----------------------------------------------------------------------------


def test_no_gradient_through_the_attack():
  loss = losses.get_loss('ns')
  cfg = AdvAugConfig(steps=2, step_size=0.05, norm='l2')  # delta depends smoothly on params
  with jax.enable_x64(True):
    s = setup(SmoothHeadD(), jnp.float64)
    da = s['d_apply']

    def fixed_d(v, dr, df):  # delta precomputed: a constant for the gradient
      q = da({**v, 'perturbations': dr}, s['real'], train=True)[0]
      p = da({**v, 'perturbations': df}, s['fake'], train=True)[0]
      return loss.d_loss(q, p)

    def fixed_g(v, delta):
      images = s['g_apply']({**v, 'perturbations': delta}, s['z'], train=True)[0]
      return loss.g_loss(da(s['d_vars'], images, train=True)[0])

    def leaky_d(v):  # control: the same attack, differentiated through
      obj = advaug.attack_objective('paper', 'real', loss)
      zero = advaug.zero_perturbation(s['d_tmpl'], B)
      step = jax.grad(lambda d: obj(da({**v, 'perturbations': d}, s['real'], train=True)[0]))(zero)
      n = jnp.linalg.norm(step['features'], axis=1, keepdims=True)
      return fixed_d(v, {'features': 0.05 * step['features'] / n}, d_attack(s, loss, cfg, v)[1])

    @jax.jit
    def run():
      dv, gv = s['d_vars'], s['g_vars']
      dr, df = d_attack(s, loss, cfg)
      return (
        jax.grad(lambda v: d_adv(s, loss, cfg, v))(dv),
        jax.grad(fixed_d)(dv, dr, df),
        jax.grad(lambda v: g_adv(s, loss, cfg, v))(gv),
        jax.grad(fixed_g)(gv, g_attack(s, loss, cfg)),
        jax.grad(leaky_d)(dv),
      )

    got_d, want_d, got_g, want_g, leak = run()
  assert_trees_close(got_d, want_d, rtol=1e-12, atol=1e-15)
  assert_trees_close(got_g, want_g, rtol=1e-12, atol=1e-15)
  kernel = lambda t: t['params']['Dense_0']['kernel']
  assert not np.allclose(kernel(leak), kernel(got_d), rtol=1e-6)  # the check could fail


# ----------------------------------------------------------------------------
# Combination, hooks, transforms, state, config
# ----------------------------------------------------------------------------


def test_combination_mean_and_sum():
  loss = losses.get_loss('hinge')
  base = AdvAugConfig(steps=1, step_size=0.05)
  paper = dataclasses.replace(base, combine='sum', weight=0.7)
  with jax.enable_x64(True):
    s = setup(SmoothHeadD(), jnp.float64)
    r = jax.jit(
      lambda: dict(
        adv_d=d_adv(s, loss, base),
        clean_d=clean_d_loss(s, loss),
        mean_d=d_whole(s, loss, base),
        sum_d=d_whole(s, loss, paper),
        adv_g=g_adv(s, loss, base, key=jax.random.split(KEY)[1]),  # advaug_g_loss's adv key
        clean_g=clean_g_loss(s, loss),
        mean_g=g_whole(s, loss, base),
      )
    )()
    r = jax.tree.map(np.asarray, r)
  assert r['adv_d'] != r['clean_d']
  np.testing.assert_allclose(r['mean_d'], 0.5 * (r['clean_d'] + r['adv_d']), rtol=1e-14)
  np.testing.assert_allclose(r['sum_d'], r['clean_d'] + 0.7 * r['adv_d'], rtol=1e-14)
  np.testing.assert_allclose(r['mean_g'], 0.5 * (r['clean_g'] + r['adv_g']), rtol=1e-14)


def test_game_hooks_return_the_weighted_adversarial_term():
  loss = losses.get_loss('ns')
  cfg = AdvAugConfig(steps=1, step_size=0.05, weight=0.3)
  with jax.enable_x64(True):
    s = setup(SmoothHeadD(), jnp.float64)
    d_reg = advaug.make_d_regularizer(s['d_apply'], loss, cfg, s['d_tmpl'])
    g_reg = advaug.make_g_regularizer(s['g_apply'], s['d_apply'], loss, cfg, s['g_tmpl'])
    r = jax.jit(
      lambda: dict(
        d=d_reg(s['d_vars'], s['real'], s['fake'], KEY),
        d_want=d_adv(s, loss, cfg),
        g=g_reg(s['g_vars'], s['d_vars'], s['z'], KEY),
        g_want=g_adv(s, loss, cfg),
      )
    )()
    r = jax.tree.map(np.asarray, r)
  np.testing.assert_allclose(r['d'], 0.3 * r['d_want'], rtol=1e-14)
  np.testing.assert_allclose(r['g'], 0.3 * r['g_want'], rtol=1e-14)


def test_diffaugment_placement_on_gs_side():
  s = setup()
  loss = losses.get_loss('hinge')
  cfg = AdvAugConfig(steps=1, step_size=0.01)
  calls = []

  def spy(x, key):
    calls.append('clean')
    return -x

  traced = jax.jit(lambda **kw: g_whole(s, loss, cfg, **kw), static_argnames=('input_transform',))
  flipped = traced(input_transform=spy)
  assert calls == ['clean']  # the reference: the perturbed branch sees raw images
  assert traced() != flipped  # the transform reaches the clean branch


def test_training_programs_advaug_leaves_gs_adversarial_branch_unaugmented():
  """run_setup's G entry is g_adversarial_loss on raw images, though DiffAugment is on."""
  config = default.get_config()
  config.model_kwargs.width = 8
  config.diffaugment = 'color,translation,cutout'
  config.advaug.enabled = True
  config.advaug.weight = 0.5
  g_mod, d_mod = models.get_models(
    config.model, latent_dim=config.latent_dim, **config.model_kwargs
  )
  game = run_setup.build_game(config, g_mod, d_mod, (28, 28, 1))
  assert game.d_input_transform is not None and len(game.g_regularizers) == 1
  loss = losses.get_loss(config.loss)
  z = jax.random.normal(KEY, (4, config.latent_dim))
  g_vars, d_vars = jax.jit(
    lambda: tuple(
      {k: v for k, v in vs.items() if k != 'perturbations'}
      for vs in (g_mod.init(KEY, z, False), d_mod.init(KEY, jnp.zeros((4, 28, 28, 1)), False))
    )
  )()
  cfg = AdvAugConfig(weight=0.5)  # the config's steps, step_size, norm and direction
  g_tmpl = advaug.perturbation_template(g_mod, z)
  key = jax.random.PRNGKey(3)

  @jax.jit
  def run():
    got = game.g_regularizers[0](g_vars, d_vars, z, key)
    want = advaug.g_adversarial_loss(
      game.g_apply, game.d_apply, g_vars, d_vars, z, loss, key, cfg, g_tmpl
    )
    # Control: the same perturbed images, augmented before D, give another loss.
    delta = advaug.attack_g_feature(
      game.g_apply, game.d_apply, g_vars, d_vars, z, loss, key, cfg, g_tmpl
    )
    images = game.g_apply({**g_vars, 'perturbations': delta}, z, train=True)[0]
    augmented = game.d_input_transform(images, jax.random.split(key)[1])
    control = loss.g_loss(game.d_apply(d_vars, augmented, train=True)[0])
    return got, want, control

  got, want, control = run()
  np.testing.assert_allclose(got, 0.5 * want, rtol=1e-6)
  assert abs(float(control) - float(want)) > 1e-3


def test_default_direction_is_the_reference_pgd():
  """The default ascends D's mean score (the authors' PGD): delta = step * sign(w) on a linear head."""
  assert AdvAugConfig().direction == 'reference'
  s = setup()
  loss = losses.get_loss('hinge')
  dr, df = jax.jit(lambda: d_attack(s, loss, AdvAugConfig()))()
  w = np.asarray(s['d_vars']['params']['head']['kernel'][:, 0])
  expected = np.broadcast_to(np.float32(0.01) * np.sign(w), (B, 5))
  np.testing.assert_array_equal(dr['features'], expected)  # 'paper' would lower the real score
  np.testing.assert_array_equal(df['features'], expected)
  for name in sorted(p.stem for p in (Path(configs.__file__).parent).glob('*.py')):
    module = importlib.import_module(f'experiments.configs.{name}')
    if hasattr(module, 'get_config'):
      assert module.get_config().advaug.direction == 'reference', name


def test_batchnorm_d_state_is_dropped_and_zero_step_is_clean():
  s = setup(BND())
  assert 'batch_stats' in s['d_vars']
  loss = losses.get_loss('hinge')
  zero, clean, val = jax.jit(
    lambda: (
      d_whole(s, loss, AdvAugConfig(steps=0)),
      clean_d_loss(s, loss),
      d_whole(s, loss, AdvAugConfig()),
    )
  )()
  np.testing.assert_allclose(zero, clean, rtol=1e-6)
  assert np.isfinite(val) and val != clean


def test_config_errors():
  with pytest.raises(ValueError, match='steps'):
    AdvAugConfig(steps=-1)
  with pytest.raises(ValueError, match='steps'):
    AdvAugConfig(steps=1.0)
  with pytest.raises(ValueError, match='step_size'):
    AdvAugConfig(step_size=-0.1)
  with pytest.raises(ValueError, match='norm'):
    AdvAugConfig(norm='l1')
  with pytest.raises(ValueError, match='eps'):
    AdvAugConfig(eps=0.0)
  with pytest.raises(ValueError, match='random_start'):
    AdvAugConfig(random_start=True)
  with pytest.raises(ValueError, match="direction.*'paper'"):
    AdvAugConfig(direction='code')
  with pytest.raises(ValueError, match='combine'):
    AdvAugConfig(combine='avg')
  with pytest.raises(ValueError, match='weight'):
    AdvAugConfig(weight=-1.0)
  with pytest.raises(ValueError, match='norm'):
    advaug.pgd_feature_perturbation(linear_loss, zeros(), steps=1, step_size=0.1, norm='linf2')
  with pytest.raises(ValueError, match='role'):
    advaug.attack_objective('paper', 'both', losses.get_loss('ns'))
