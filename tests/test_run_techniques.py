"""The techniques inside the training program: what their per-step work computes."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import toy2d
from jaxgan import augment, run_setup, sparse, train, wiring
from jaxgan import data as jdata
from jaxgan.wiring import Technique

ROOT = Path(__file__).resolve().parents[1]


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


class _Recorder(Technique):
  """Appends ``(name, step, adversarial)`` to ``calls`` and adds one to the state."""

  def __init__(self, name, calls, warmup=0):
    super().__init__(config=None)
    self.name, self.calls, self.warmup = name, calls, warmup

  def warmup_steps(self):
    return self.warmup

  def after_step(self, state, info):
    self.calls.append((self.name, info.step, info.adversarial))
    return state + 1, {self.name: info.metrics['loss']}


def test_after_step_calls_the_techniques_in_order_after_their_warmup():
  calls = []
  techniques = (_Recorder('a', calls), _Recorder('b', calls, warmup=2), _Recorder('c', calls))
  run = types.SimpleNamespace(techniques=techniques, warmup_steps=2)
  for step in range(3):
    state, logs = train.after_step(run, 10 * step, {'loss': step}, step, {'image': None})
    assert state == 10 * step + 3 and logs == {'a': step, 'b': step, 'c': step}
  assert calls == [(n, s, s >= 2) for s in range(3) for n in 'abc']


_CHECK_ALL = """
import sys
from jaxgan import config_checks, wiring
from experiments.configs import default

c = default.get_config()
c.update(diffaugment='color', r1_weight=1.0, gp_weight=1.0, monitor_lipschitz=True)
c.model_kwargs.aux_head = 'rotation+infomax'
for section in ('advaug', 'ssgan', 'infomax', 'dat', 'coopinit', 'sparse'):
  c[section].enabled = True
c.lottery.ticket = '/nonexistent/ticket.npz'  # the last technique of the registry refuses it
try:
  config_checks.validate_config(c)
except config_checks.ConfigError as err:
  print(err)
print(sum(t.enabled(c) for t in wiring.TECHNIQUES), len(wiring.TECHNIQUES))
print(sorted(m for m in ('jax', 'flax', 'optax', 'numpy') if m in sys.modules))
"""


def test_every_technique_is_checked_without_jax():
  """The config checks of all registered techniques run before JAX (the CLI's fast errors)."""
  out = subprocess.run(
    [sys.executable, '-c', _CHECK_ALL], cwd=ROOT, capture_output=True, text=True, timeout=120
  )
  error, counts, modules = out.stdout.splitlines()
  assert error.startswith("config.lottery.ticket='/nonexistent/ticket.npz' is invalid"), out
  assert counts == f'{len(wiring.TECHNIQUES)} {len(wiring.TECHNIQUES)}'
  assert modules == '[]'


@pytest.mark.parametrize('penalty', [0.0, 0.5])
def test_coopinit_logit_penalty_of_the_config_reaches_d_loss(tmp_path, penalty):
  """``coopinit.logit_penalty`` adds ``lambda (mean f(x)^2 + mean f(x_tilde)^2)`` to D's EBM
  loss in the training program: by Jensen at least ``lambda`` times the squared mean logits."""
  c = toy2d.get_config('8ring')
  c.update(num_steps=3, batch_size=16, toy_points=256, log_every=1)
  c.update(eval_samples=0, sample_every=0, checkpoint_every=3)
  c.model_kwargs.hidden = (8,)
  c.coopinit.update(enabled=True, t_init=2, n_steps=2, logit_penalty=penalty)
  train.train_and_evaluate(c, tmp_path)
  rows = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  coop = [r for r in rows if 'coop/d_reg' in r]
  assert len(coop) == 2
  for r in coop:
    floor = penalty * (r['d_real'] ** 2 + r['d_fake'] ** 2)
    assert r['coop/d_reg'] >= floor - 1e-6
    assert (r['coop/d_reg'] > 0) == (penalty > 0)
