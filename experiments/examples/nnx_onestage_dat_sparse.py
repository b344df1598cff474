"""A Flax NNX GAN: one-stage training, DAT on D and a sparse G (30% of G's weights).

``jaxgan.from_nnx`` makes apply functions and variables of ``nnx.Module``s; the one-stage step
trains them with DAT (step size B / 64: the reference strength) and a masked optimizer for G;
``jaxgan.to_nnx`` gives G back with its EMA weights. Data: 8 Gaussians on a ring of radius 1.
Run: ``python -m experiments.examples.nnx_onestage_dat_sparse``
"""

import jax
import numpy as np
import optax
from flax import nnx

import jaxgan
from jaxgan import sparse


class MLP(nnx.Module):
  def __init__(self, d_in: int, d_out: int, rngs: nnx.Rngs):
    self.l1, self.l2 = nnx.Linear(d_in, 128, rngs=rngs), nnx.Linear(128, 128, rngs=rngs)
    self.out = nnx.Linear(128, d_out, rngs=rngs)

  def __call__(self, x):  # D returns [B, 1] logits: jaxgan squeezes them
    return self.out(nnx.relu(self.l2(nnx.relu(self.l1(x)))))


def main(steps: int = 300, batch: int = 64, density: float = 0.3) -> dict[str, float]:
  """Trains ``steps`` iterations; returns the last metrics, G's sparsity and sample quality."""
  g_apply, g_vars = jaxgan.from_nnx(MLP(8, 2, nnx.Rngs(0)))
  d_apply, d_vars = jaxgan.from_nnx(MLP(2, 1, nnx.Rngs(1)))
  game = jaxgan.Game(g_apply, d_apply, jaxgan.get_loss('ns'), jaxgan.gaussian_latents(8))
  game = game.replace(d_perturbation=jaxgan.make_dat_perturbation(step_size=batch / 64))
  d_tx = optax.adam(1e-3, b1=0.5)  # G: the same Adam, with random ERK masks of `density`
  g_tx = sparse.masked_optimizer(d_tx, sparse.mask_initializer(jax.random.PRNGKey(2), density))
  state = jaxgan.create_state_from_variables(
    jax.random.PRNGKey(3), g_variables=g_vars, d_variables=d_vars, g_tx=g_tx, d_tx=d_tx
  )
  state = sparse.sparsify_state(state)  # pruned weights start at exactly zero
  step = jaxgan.one_stage_step(game, g_tx, d_tx, ema_decay=0.99)  # checks inputs, then compiles
  rng, centres = np.random.default_rng(0), np.exp(1j * np.pi / 4 * np.arange(8))
  for _ in range(steps):
    mode = centres[rng.integers(0, 8, batch)]
    real = np.stack([mode.real, mode.imag], 1) + 0.05 * rng.normal(size=(batch, 2))
    state, metrics = step(state, {'image': real.astype(np.float32)})
  g_ema = jaxgan.to_nnx(g_apply, {'params': state.ema_params})  # an nnx.Module again
  x = np.asarray(g_ema(jax.random.normal(jax.random.PRNGKey(4), (1024, 8))))
  dist = np.abs(x[:, :1] + 1j * x[:, 1:] - centres)  # [1024, 8]: distance to each mode
  close, masks = dist.min(1) < 0.25, sparse.get_masks(state.g.opt_state)  # close: < 0.25 away
  zeroed = sparse.apply_masks(state.ema_params, masks)  # equals the EMA: pruned weights are 0
  return {
    **{k: float(v) for k, v in metrics.items()},
    'g_density': float(sparse.global_density(masks)),
    'pruned_zero': jax.tree.all(jax.tree.map(np.array_equal, zeroed, state.ema_params)),
    'modes': int((np.bincount(dist.argmin(1)[close], minlength=8) >= 10).sum()),  # of 8
  }


if __name__ == '__main__':
  print(main())
