"""Learning-rate schedules of the training program against Adam written out in numpy."""

import jax
import ml_collections
import numpy as np

from experiments.configs import default
from jaxgan import run_setup


def numpy_adam(grads, lrs, b1=0.5, b2=0.999, eps=1e-8):
  """Adam's updates for a sequence of gradients, the t-th with learning rate ``lrs[t]``."""
  m = v = np.zeros_like(grads[0])
  out = []
  for t, (g, lr) in enumerate(zip(grads, lrs, strict=True), start=1):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    out.append(-lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps))
  return out


def updates(tx, grads):
  params = np.zeros_like(grads[0])
  state = tx.init(params)
  out = []
  for g in grads:
    u, state = tx.update(g, state, params)
    out.append(np.asarray(u))
  return out


def test_linear_decay_keeps_the_rate_then_lowers_it_to_zero_at_the_last_update():
  with jax.enable_x64(True):
    grads = list(np.random.default_rng(0).normal(size=(10, 3)))
    opt = default.optimizer(lr=1e-3, schedule='linear_decay', decay_from=0.4)
    got = updates(run_setup.make_optimizer(opt, False, total_updates=10), grads)
    # updates 0-3 at 1e-3, then 1e-3 * (1 - k / 6) for the k-th of the last six
    lrs = [1e-3] * 4 + [1e-3 * (1 - k / 6) for k in range(6)]
    for a, b in zip(got, numpy_adam(grads, lrs), strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-16)
    constant = updates(run_setup.make_optimizer(default.optimizer(lr=1e-3), False, 10), grads)
    for a, b in zip(constant, numpy_adam(grads, [1e-3] * 10), strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-16)


def test_the_decay_spans_each_players_updates_of_the_run():
  c = ml_collections.ConfigDict(dict(trainer='two_stage', n_dis=5))
  assert run_setup.updates_per_step(c) == (1, 5)
  c.trainer, c.n_dis = 'one_stage', 1
  assert run_setup.updates_per_step(c) == (1, 1)
