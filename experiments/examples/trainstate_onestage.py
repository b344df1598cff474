"""One-stage GAN training with plain optax and flax's TrainState (no GANState): the gradients
come from ``jaxgan.onestage.gradients``, two TrainStates apply them. G and D take no ``train``
argument; D returns [B, 1] logits (both fine). Data: a ring of 8 Gaussians.
Run: ``python -m experiments.examples.trainstate_onestage``
"""

import flax.linen as nn
import jax
import numpy as np
import optax
from flax.training.train_state import TrainState

from jaxgan import Game, gaussian_latents, get_loss, make_apply, onestage


def main(steps: int = 400, batch: int = 64, seed: int = 0) -> dict[str, float]:
  G = nn.Sequential([nn.Dense(64), nn.relu, nn.Dense(2)])  # latents [B, 8] -> points [B, 2]
  D = nn.Sequential([nn.Dense(64), nn.relu, nn.Dense(1)])  # points -> logits [B, 1]
  game = Game(make_apply(G), make_apply(D), get_loss('ns'), gaussian_latents(8))
  init = lambda net, n, k: net.init(jax.random.PRNGKey(k), np.zeros((1, n), np.float32))['params']
  g = TrainState.create(apply_fn=G.apply, params=init(G, 8, 1), tx=optax.adam(1e-3, b1=0.5))
  d = TrainState.create(apply_fn=D.apply, params=init(D, 2, 2), tx=optax.adam(1e-3, b1=0.5))

  @jax.jit
  def train_step(g, d, real, key):
    batch, g_vars, d_vars = {'image': real}, {'params': g.params}, {'params': d.params}
    g_grads, d_grads, _, metrics = onestage.gradients(game, g_vars, d_vars, batch, key)
    return g.apply_gradients(grads=g_grads), d.apply_gradients(grads=d_grads), metrics

  rng, key = np.random.default_rng(seed), jax.random.PRNGKey(seed)
  for t in range(steps):
    angle = rng.integers(0, 8, batch) * np.pi / 4
    real = np.stack([np.cos(angle), np.sin(angle)], 1) + 0.05 * rng.standard_normal((batch, 2))
    g, d, metrics = train_step(g, d, real.astype(np.float32), jax.random.fold_in(key, t))
  return {'step': int(g.step), **{k: float(v) for k, v in metrics.items()}}


if __name__ == '__main__':
  print(main())
