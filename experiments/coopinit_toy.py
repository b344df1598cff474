"""CoopInit on the 25-Gaussian grid: a plain GAN against CoopInit + the same GAN.

``python -m experiments.coopinit_toy [--iters 3000 --t-init 300 --seeds 0 1 ...]``

Both runs use the same MLP G/D, non-saturating loss, Adam, batch size and
number of iterations (CoopInit's ``t_init`` cooperative iterations count
towards the total). Each run prints the modes covered (out of 25) and the
percentage of high-quality samples (within 3 std of the nearest mode) of
``--eval-samples`` G samples, the protocol of ``jaxgan.metrics.mode_coverage``,
and wall time (CPU, includes compilation).

Toy Langevin defaults (chosen by a short sweep of the cooperative phase alone,
500 iterations, one seed): K = 10 steps of delta = 0.3 (drift 0.045 grad f) with
noise 0.03, i.e. a low-temperature chain, no clipping (the grid spans [-4, 4]).
With delta = 0.1 or 0.03 and noise = delta the chain hardly moved G's samples
towards the modes (revision distance 0.1-0.4, noise-dominated); delta = 0.3
moved them by about 1.4 per iteration. ``t_init`` is 10% of the run here,
above the notes' 1-5%, because the whole budget is small.
"""

from __future__ import annotations

import argparse
import time

import flax.linen as nn
import jax
import numpy as np
import optax

from jaxgan import coopinit, losses
from jaxgan.data.toy2d import gaussian_mixture, mixture_spec
from jaxgan.game import Game, gaussian_latents, make_apply
from jaxgan.metrics.mode_coverage import gaussian_mixture_quality
from jaxgan.state import create_state
from jaxgan.steps import two_stage_step

SHAPE = (1, 1, 2)  # a 2-D point as a 1x1 "image" with 2 channels


class MLPG(nn.Module):
  width: int = 128

  @nn.compact
  def __call__(self, z, train: bool):
    h = nn.relu(nn.Dense(self.width)(z))
    h = nn.relu(nn.Dense(self.width)(h))
    return nn.Dense(2)(h).reshape(z.shape[0], *SHAPE)


class MLPD(nn.Module):
  width: int = 128

  @nn.compact
  def __call__(self, x, train: bool):
    h = nn.relu(nn.Dense(self.width)(x.reshape(x.shape[0], -1)))
    h = nn.relu(nn.Dense(self.width)(h))
    return nn.Dense(1)(h)[:, 0]


def run(args, seed: int, use_coop: bool) -> dict:
  g_mod, d_mod = MLPG(), MLPD()
  game = Game(
    g_apply=make_apply(g_mod),
    d_apply=make_apply(d_mod),
    loss=losses.get_loss('ns'),
    sample_latents=gaussian_latents(args.nz),
  )
  tx = optax.adam(args.lr, b1=0.5, b2=0.999)
  state = create_state(
    jax.random.PRNGKey(seed),
    g_module=g_mod,
    d_module=d_mod,
    g_tx=tx,
    d_tx=tx,
    latent_dim=args.nz,
    image_shape=SHAPE,
    use_ema=False,
    extra={'coopinit': coopinit.init_coop_state()},
  )
  adversarial = two_stage_step(game, tx, tx)
  if use_coop:
    langevin = coopinit.LangevinConfig(
      step_size=args.step_size,
      n_steps=args.langevin_steps,
      noise_scale=args.noise_scale,
      clip=None,  # the grid spans [-4, 4]: no image range to keep
    )
    coop = coopinit.coop_step(
      game,
      tx,
      tx,
      langevin=langevin,
      teach_sigma=args.teach_sigma,
      logit_penalty=args.logit_penalty,
    )
    step = coopinit.make_phased_step(
      coop, adversarial, args.t_init, g_tx=tx, d_tx=tx, reset_moments=args.reset_moments
    )
  else:
    step = jax.jit(adversarial)

  pool = gaussian_mixture('25grid', 200_000, seed=10_000 + seed)
  rng = np.random.default_rng(seed)
  start = time.time()
  coop_metrics = {}
  for t in range(args.iters):
    batch = {'image': pool[rng.integers(0, len(pool), args.batch)].reshape(-1, *SHAPE)}
    state, metrics = step(state, batch)
    if use_coop and t == args.t_init - 1:
      coop_metrics = {k: float(v) for k, v in metrics.items()}
  samples = jax.jit(
    lambda params, key: game.g_apply(
      {'params': params}, game.sample_latents(key, args.eval_samples), train=False
    )[0]
  )(state.g.params, jax.random.PRNGKey(123 + seed))
  samples = np.asarray(samples).reshape(-1, 2)
  wall = time.time() - start
  spec = mixture_spec('25grid')
  q = gaussian_mixture_quality(samples, spec.centers, spec.std)
  return {
    'modes': q['modes_covered'],
    'hq': 100.0 * q['high_quality_fraction'],
    'wall': wall,
    'coop_end': coop_metrics,
  }


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--iters', type=int, default=3000)
  p.add_argument('--t-init', type=int, default=300)
  p.add_argument('--seeds', type=int, nargs='+', default=[0])
  p.add_argument('--batch', type=int, default=256)
  p.add_argument('--nz', type=int, default=16)
  p.add_argument('--lr', type=float, default=1e-3)
  p.add_argument('--step-size', type=float, default=0.3)
  p.add_argument('--noise-scale', type=float, default=0.03)
  p.add_argument('--langevin-steps', type=int, default=10)
  p.add_argument('--teach-sigma', type=float, default=0.3)
  p.add_argument('--reset-moments', action='store_true')
  p.add_argument('--logit-penalty', type=float, default=0.0)
  p.add_argument('--eval-samples', type=int, default=2500)
  p.add_argument('--only', choices=['gan', 'coop'], default=None)
  args = p.parse_args()
  print(f'jax {jax.__version__}, devices {jax.devices()}, args {vars(args)}')
  for seed in args.seeds:
    for use_coop in (False, True):
      if args.only and args.only != ('coop' if use_coop else 'gan'):
        continue
      r = run(args, seed, use_coop)
      name = f'CoopInit(t_init={args.t_init})+GAN' if use_coop else 'GAN'
      print(
        f'seed {seed} {name:24s} modes {r["modes"]:2d}/25  high-quality {r["hq"]:5.1f}%  '
        f'wall {r["wall"]:.0f}s',
        flush=True,
      )
      if r['coop_end']:
        m = r['coop_end']
        print(
          '    end of coop phase: '
          + ', '.join(
            f'{k}={m[k]:.3g}'
            for k in ('coop/revision_dist', 'coop/f_init', 'coop/f_revised', 'd_real', 'd_fake')
          ),
          flush=True,
        )


if __name__ == '__main__':
  main()
