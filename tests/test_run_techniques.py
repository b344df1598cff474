"""The techniques inside the training program: what their per-step work computes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import toy2d
from jaxgan import augment, run_setup, sparse, train
from jaxgan import data as jdata


def _shift_and_swap(x, key):
  """A deterministic stand-in for DiffAugment (so the expected gradients need no key)."""
  del key
  return 0.5 * x[..., ::-1] + 0.25


class _Seen(Exception):
  """Stops a run once a spy has seen what it needs."""


def test_rigl_growth_gradients_are_those_of_the_loss_the_step_trains(tmp_path, monkeypatch):
  """A sparse run with DiffAugment: G's and D's growth gradients see the augmented inputs."""
  monkeypatch.setattr(augment, 'make_diff_augment', lambda policy, **kw: _shift_and_swap)
  seen = {}
  batch_next = jdata.Batches.next

  def spy(state, metrics, step, config, *, g_grads_fn=None, d_grads_fn=None):
    seen.update(state=state, g=g_grads_fn(state), d=d_grads_fn(state), real=seen['batch'])
    raise _Seen

  def next_batch(self):
    seen['batch'] = batch = batch_next(self)
    return batch

  monkeypatch.setattr(sparse, 'sparse_after_step', spy)
  monkeypatch.setattr(jdata.Batches, 'next', next_batch)
  c = toy2d.get_config('8ring')
  c.update(num_steps=1, batch_size=16, toy_points=256, log_every=1, diffaugment='color')
  c.update(eval_samples=0, sample_every=0, checkpoint_every=1)
  c.model_kwargs.hidden = (8,)
  c.sparse.update(enabled=True, variant='relax', g_density=0.5)
  with pytest.raises(_Seen):
    train.train_and_evaluate(c, tmp_path)

  state, b = seen['state'], c.batch_size
  game = run_setup.build_run(c).game
  key = jax.random.fold_in(state.rng, state.step)
  ns = lambda x: jnp.mean(jax.nn.softplus(x))

  def d_out(d_params, x):
    return game.d_apply({'params': d_params, **state.d.model_state}, x, train=True)[0]

  def g_out(g_params, z):
    return game.g_apply({'params': g_params, **state.g.model_state}, z, train=True)[0]

  z_g = jax.random.normal(jax.random.fold_in(key, 101), (b, c.latent_dim))
  want_g = jax.grad(lambda gp: ns(-d_out(state.d.params, _shift_and_swap(g_out(gp, z_g), None))))(
    state.g.params
  )
  real = jnp.asarray(seen['real']['image'][:b])
  z_d = jax.random.normal(jax.random.fold_in(key, 102), (b, c.latent_dim))
  fake = _shift_and_swap(g_out(state.g.params, z_d), None)
  want_d = jax.grad(lambda dp: ns(-d_out(dp, _shift_and_swap(real, None))) + ns(d_out(dp, fake)))(
    state.d.params
  )
  for got, want in ((seen['g'], want_g), (seen['d'], want_d)):
    for a, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
      np.testing.assert_allclose(a, w, rtol=1e-5, atol=1e-6)
