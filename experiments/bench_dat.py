"""Cost of DAT against the plain step: median time per iteration and compile time.

  python -m experiments.bench_dat [--batch 64] [--rounds 20] [--model dcgan28]

Times the DCGAN-28 two-stage step (non-saturating loss, Adam) without and with DAT
(:func:`jaxgan.dat.make_dat_perturbation`, one attack step, clip 1), and the one-stage
asymmetric step (GroupNorm D) without and with DAT. DAT adds, per D update, one input
gradient of D on the real and on the fake batch (a D forward and an input-only backward
on ``2B`` images) before D's own loss; G's update is unchanged. Steps are compiled
(``first call``: compile + one run), warmed up, then timed interleaved.
"""

from __future__ import annotations

import argparse

import jax
import numpy as np
import optax

from experiments.timing import machine, timed
from jaxgan import dat, losses, onestage
from jaxgan.game import Game, gaussian_latents, make_apply
from jaxgan.models import get_models
from jaxgan.state import create_state
from jaxgan.steps import two_stage_step

LATENT = 100


def build(model: str, batch: int) -> dict:
  """``{name: (jitted step, state, batch)}`` for the four variants."""
  shape = (28, 28, 1) if model == 'dcgan28' else (32, 32, 3)
  perturb = dat.make_dat_perturbation(steps=1, step_size=1.0, clip=1.0)
  images = jax.random.uniform(jax.random.PRNGKey(2), (batch, *shape), minval=-1.0, maxval=1.0)
  adam = optax.adam(2e-4, b1=0.5, b2=0.999)
  cases = {}
  for trainer, d_norm in (('two-stage', 'batch'), ('one-stage', 'group')):
    g_mod, d_mod = get_models(model, latent_dim=LATENT, image_shape=shape, d_norm=d_norm)
    state = create_state(
      jax.random.PRNGKey(0),
      g_module=g_mod,
      d_module=d_mod,
      g_tx=adam,
      d_tx=adam,
      latent_dim=LATENT,
      image_shape=shape,
      use_ema=False,
    )
    for with_dat in (False, True):
      game = Game(
        g_apply=make_apply(g_mod),
        d_apply=make_apply(d_mod),
        loss=losses.get_loss('ns'),
        sample_latents=gaussian_latents(LATENT),
        d_perturbation=perturb if with_dat else None,
        d_batch_coupled=d_norm == 'batch',
      )
      if trainer == 'two-stage':
        step = two_stage_step(game, adam, adam)
      else:
        step = onestage.one_stage_step(game, adam, adam, mode='asymmetric')
      cases[f'{trainer}{" + DAT" if with_dat else ""}'] = (jax.jit(step), state, {'image': images})
  return cases


def main(argv=None) -> dict:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--batch', type=int, default=64)
  ap.add_argument('--rounds', type=int, default=20)
  ap.add_argument('--model', default='dcgan28', choices=('dcgan28', 'dcgan32'))
  args = ap.parse_args(argv)
  cases = build(args.model, args.batch)
  first = {name: timed(fn, s, b) for name, (fn, s, b) in cases.items()}
  for _ in range(2):  # warm up
    for fn, s, b in cases.values():
      timed(fn, s, b)
  times = {name: [] for name in cases}
  for _ in range(args.rounds):
    for name, (fn, s, b) in cases.items():
      times[name].append(timed(fn, s, b))
  med = {name: float(np.median(t)) * 1e3 for name, t in times.items()}
  print(machine())
  print(f'{args.model}, batch {args.batch}, median of {args.rounds} interleaved rounds')
  print('| step | compile + first call (s) | ms / iteration | vs same step without DAT |')
  print('|---|---|---|---|')
  for name, ms in med.items():
    base = med[name.replace(' + DAT', '')]
    print(f'| {name} | {first[name]:.1f} | {ms:.1f} | {ms / base:.2f} |')
  return med


if __name__ == '__main__':
  main()
