"""Langevin revision of your own G's samples under your own energy, and a CoopNets update.

``jaxgan.coopinit.langevin_revise(f, x0, key, ...)`` moves ``x0`` up any negative energy
``f: [B, ...] -> [B]``: an analytic bump at (0.5, 0.5), then a tiny D in a user-written
cooperative step (D descends ``ebm_d_loss``, G ``teaching_g_loss`` towards the revised
samples). ``noise_scale=0`` (default) makes the chain gradient ascent: the mean f rises.

Run: ``python -m experiments.examples.langevin_revision``
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgan.coopinit import ebm_d_loss, langevin_revise, teaching_g_loss


def main(steps: int = 20, noise_scale: float = 0.0, batch: int = 64) -> dict[str, float]:
  """Revises G's samples, then runs ``steps`` cooperative updates; returns mean f values."""
  g = nn.Sequential([nn.Dense(32), nn.tanh, nn.Dense(2)])  # the user's G and D: tiny MLPs
  d = nn.Sequential([nn.Dense(32), nn.tanh, nn.Dense(1)])
  tx, rng = optax.adam(1e-2), np.random.default_rng(0)
  params = {'g': g.init(jax.random.PRNGKey(0), np.zeros((1, 4), np.float32))['params']}
  params['d'] = d.init(jax.random.PRNGKey(1), np.zeros((1, 2), np.float32))['params']
  G = lambda p, z: g.apply({'params': p['g']}, z)  # latents [B, 4] -> points [B, 2]
  D = lambda p, x: d.apply({'params': p['d']}, x)[:, 0]  # points -> f [B]
  chain = dict(n_steps=10, step_size=0.3, noise_scale=noise_scale, clip=(-1.0, 1.0))
  bump = lambda x: -jnp.sum(jnp.square(x - 0.5), axis=-1)
  x0 = G(params, rng.standard_normal((batch, 4)).astype(np.float32))
  x1 = langevin_revise(bump, x0, jax.random.PRNGKey(2), **chain)
  out = {'bump_init': float(bump(x0).mean()), 'bump_revised': float(bump(x1).mean())}

  @jax.jit
  def coop_step(params, opt_state, real, z, key):
    f = lambda x: D(params, x)  # the chain is under stop_gradient: nothing flows back
    x_hat = G(params, z)
    x_tilde = langevin_revise(f, x_hat, key, **chain)
    ebm = lambda p: ebm_d_loss(D(p, real), D(p, x_tilde))  # D's loss
    teach = lambda p: teaching_g_loss(G(p, z), x_tilde)  # G's loss
    grads = jax.grad(lambda p: ebm(p) + teach(p))(params)  # no shared params: one grad, both
    metrics = dict(ebm=ebm(params), teach=teach(params), f_init=f(x_hat), f_revised=f(x_tilde))
    updates, opt_state = tx.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, metrics

  opt_state = tx.init(params)
  for t in range(steps):
    real = np.clip(0.5 + 0.1 * rng.standard_normal((batch, 2)), -1, 1).astype(np.float32)
    z = rng.standard_normal((batch, 4)).astype(np.float32)
    params, opt_state, m = coop_step(params, opt_state, real, z, jax.random.PRNGKey(t))
  return {**out, **{k: float(np.mean(v)) for k, v in m.items()}}


if __name__ == '__main__':
  print(main())
