"""One-stage vs two-stage: median time per iteration, same model, batch and machine.

  python -m experiments.bench_onestage [--batch 64] [--repeats 20] [--models dcgan28,dcgan32]

For each model and setting (symmetric: minimax loss, BatchNorm D; asymmetric:
non-saturating loss, GroupNorm D), both steps are compiled, warmed up, then timed
interleaved (two-stage, one-stage, two-stage, ...) so machine noise hits both
alike. Prints the medians, the measured ratio, and two analytic cost ratios from
the forward costs g (G) and d (D per batch) that XLA's FLOP counts give, with a
full backward costing twice its forward:

* ``autograd``: osgan.md §2.5, two-stage 2F_G + 3F_D + 3B_D + B_G against
  one-stage F_G + 2F_D + 2B_D + B_G, i.e. (4g + 9d) / (3g + 6d). This is the
  cost of the reference PyTorch scripts, whose G step also computes D's weight
  gradients (D's parameters keep ``requires_grad``).
* ``jit``: the same, except that the G step's D backward needs only input
  gradients (G's loss is differentiated with respect to G's params alone, so
  XLA never computes D's weight gradients there): about half a backward, i.e.
  (4g + 8d) / (3g + 6d) = 4/3 whatever g and d are. This is the bound for
  jaxgan's two-stage step, which does no wasted work.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgan import losses, models, onestage
from jaxgan.game import Game, gaussian_latents, make_apply
from jaxgan.state import create_state
from jaxgan.steps import two_stage_step

SETTINGS = {
  'symmetric': dict(loss='minimax', d_norm='batch', mode='symmetric'),
  'asymmetric': dict(loss='ns', d_norm='group', mode='asymmetric'),
}
IMAGE_SHAPES = {'dcgan28': (28, 28, 1), 'dcgan32': (32, 32, 3), 'dcgan64': (64, 64, 3)}
LATENT = 100


def forward_flops(apply, variables, x) -> float:
  cost = (
    jax.jit(lambda v, x: apply(v, x, train=True)[0]).lower(variables, x).compile().cost_analysis()
  )
  cost = cost[0] if isinstance(cost, list) else cost
  return float(cost.get('flops', float('nan')))


def build(model: str, setting: dict, batch: int):
  g, d = models.get_models(model, latent_dim=LATENT, d_norm=setting['d_norm'])
  game = Game(
    g_apply=make_apply(g),
    d_apply=make_apply(d),
    loss=losses.get_loss(setting['loss']),
    sample_latents=gaussian_latents(LATENT),
    d_batch_coupled=models.d_is_batch_coupled(d),
  )
  tx = optax.adam(2e-4, b1=0.5)
  state = create_state(
    jax.random.PRNGKey(0),
    g_module=g,
    d_module=d,
    g_tx=tx,
    d_tx=tx,
    latent_dim=LATENT,
    image_shape=IMAGE_SHAPES[model],
    use_ema=False,
  )
  real = {
    'image': jax.random.uniform(
      jax.random.PRNGKey(1), (batch, *IMAGE_SHAPES[model]), minval=-1, maxval=1
    )
  }
  two = jax.jit(two_stage_step(game, tx, tx))
  one = jax.jit(onestage.one_stage_step(game, tx, tx, mode=setting['mode']))
  z = jnp.zeros((batch, LATENT))
  g_vars = state.g.variables
  f_g = forward_flops(game.g_apply, g_vars, z)
  f_d = forward_flops(game.d_apply, state.d.variables, real['image'])
  return state, real, two, one, f_g, f_d


def timed(fn, state, batch):
  t = time.perf_counter()
  state, metrics = fn(state, batch)
  jax.block_until_ready((state, metrics))
  return state, time.perf_counter() - t


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--batch', type=int, default=64)
  ap.add_argument('--repeats', type=int, default=20)
  ap.add_argument('--models', default='dcgan28,dcgan32')
  args = ap.parse_args()
  print(
    f'# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, '
    f'jax {jax.__version__}, backend {jax.default_backend()}, batch {args.batch}, '
    f'median of {args.repeats} interleaved runs after warm-up'
  )
  print(
    '| model | setting | two-stage ms | one-stage ms | speed-up | analytic jit | analytic autograd |'
  )
  print('|---|---|---|---|---|---|---|')
  for model in args.models.split(','):
    for name, setting in SETTINGS.items():
      state, real, two, one, f_g, f_d = build(model, setting, args.batch)
      s_two, s_one = state, state
      for _ in range(3):  # compile + warm up
        s_two, _ = timed(two, s_two, real)
        s_one, _ = timed(one, s_one, real)
      t_two, t_one = [], []
      for _ in range(args.repeats):
        s_two, dt = timed(two, s_two, real)
        t_two.append(dt)
        s_one, dt = timed(one, s_one, real)
        t_one.append(dt)
      m_two, m_one = np.median(t_two) * 1e3, np.median(t_one) * 1e3
      jit_bound = (4 * f_g + 8 * f_d) / (3 * f_g + 6 * f_d)
      autograd = (4 * f_g + 9 * f_d) / (3 * f_g + 6 * f_d)
      print(
        f'| {model} | {name} | {m_two:.1f} | {m_one:.1f} | {m_two / m_one:.2f}x '
        f'| {jit_bound:.2f}x | {autograd:.2f}x |',
        flush=True,
      )


if __name__ == '__main__':
  main()
