"""One-stage GAN training of your own Flax G and D.

Shows how to wrap user-written Linen modules (``__call__(x, train)``) with
``jaxgan.game.make_apply``, describe the problem as a ``jaxgan.game.Game`` and
train with a jitted ``jaxgan.onestage.one_stage_step``: one G forward, one D
forward on real and fake, one backward for both players. Data: 2-D points on a
ring of 8 Gaussians.

Run: ``python -m experiments.examples.onestage_own_models``
"""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np
import optax

from jaxgan import losses
from jaxgan.game import Game, gaussian_latents, make_apply
from jaxgan.onestage import one_stage_step
from jaxgan.state import create_state


class PointG(nn.Module):
  @nn.compact
  def __call__(self, z, train: bool):
    return nn.Dense(2)(nn.relu(nn.Dense(32)(z)))  # [B, nz] -> points [B, 2]


class PointD(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool):
    return nn.Dense(1)(nn.relu(nn.Dense(32)(x)))[:, 0]  # logits [B]


def main(steps: int = 30, mode: str = 'auto', batch: int = 64) -> dict[str, float]:
  """Trains ``steps`` one-stage iterations; returns the last metrics as floats."""
  g, d = PointG(), PointD()
  g_tx, d_tx = optax.adam(1e-3, b1=0.5), optax.adam(1e-3, b1=0.5)
  game = Game(make_apply(g), make_apply(d), losses.get_loss('ns'), gaussian_latents(8))
  state = create_state(
    jax.random.PRNGKey(0), g_module=g, d_module=d, g_tx=g_tx, d_tx=d_tx,
    latent_dim=8, image_shape=(2,), use_ema=False,
  )  # fmt: skip
  step = jax.jit(one_stage_step(game, g_tx, d_tx, mode=mode))  # 'auto' -> 'asymmetric' for ns
  rng = np.random.default_rng(0)
  for t in range(steps):
    angle = rng.integers(0, 8, batch) * np.pi / 4
    real = np.stack([np.cos(angle), np.sin(angle)], 1) + 0.05 * rng.standard_normal((batch, 2))
    state, metrics = step(state, {'image': real.astype(np.float32)})
    if t % 10 == 0 or t == steps - 1:
      print(f'step {t:3d}  d_loss {metrics["d_loss"]:.4f}  g_loss {metrics["g_loss"]:.4f}')
  return {'step': int(state.step), **{k: float(v) for k, v in metrics.items()}}


if __name__ == '__main__':
  main()
