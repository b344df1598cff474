"""Overhead of sparse (masked) training against dense training on this CPU.

Times, for the DCGAN-28 G and D of :mod:`jaxgan.models` (``get_models('dcgan28')``,
MNIST-shaped 28x28x1, latent 100):

* one Adam update (``tx.update`` + ``apply_updates``) of G and of D, dense
  ``optax.adam`` vs :func:`jaxgan.sparse.masked_optimizer` (ERK masks, density
  0.1, dense-gradient mode);
* one full alternating G+D step (``jaxgan.steps.two_stage_step``, batch 64,
  ``n_dis`` 1), dense vs masked optimizers;
* the slow schedules, which run every few hundred steps: one G prune/regrow
  (:func:`jaxgan.sparse.dst_update`, global ranking) and one D density change
  (:func:`jaxgan.sparse.set_density`).

Variants are compiled first, then timed interleaved (round-robin) with
``block_until_ready``; the table gives medians and the sparse/dense ratio.

Run: ``python -m experiments.bench_sparse [--rounds 20] [--batch 64]``.
"""

from __future__ import annotations

import argparse

import jax
import numpy as np
import optax

from experiments.timing import machine, timed
from jaxgan import losses, sparse
from jaxgan.game import Game, gaussian_latents, make_apply
from jaxgan.models import get_models
from jaxgan.state import create_state
from jaxgan.steps import two_stage_step

LATENT = 100
IMAGE = (28, 28, 1)


def build(density: float, batch: int):
  g_mod, d_mod = get_models('dcgan28', latent_dim=LATENT, image_shape=IMAGE)
  game = Game(
    g_apply=make_apply(g_mod),
    d_apply=make_apply(d_mod),
    loss=losses.get_loss('ns'),
    sample_latents=gaussian_latents(LATENT),
  )
  adam = optax.adam(2e-4, b1=0.5, b2=0.999)
  cfg = sparse.ddst_config('sdst', g_density=density, d_density=density)
  g_sp, d_sp = sparse.ddst_optimizers(adam, adam, jax.random.PRNGKey(1), cfg)
  txs = {'dense': (adam, adam), 'sparse': (g_sp, d_sp)}
  states, steps, updates = {}, {}, {}
  for name, (g_tx, d_tx) in txs.items():
    state = create_state(
      jax.random.PRNGKey(0),
      g_module=g_mod,
      d_module=d_mod,
      g_tx=g_tx,
      d_tx=d_tx,
      latent_dim=LATENT,
      image_shape=IMAGE,
      use_ema=False,
    )
    states[name] = sparse.sparsify_state(state)
    steps[name] = jax.jit(two_stage_step(game, g_tx, d_tx, n_dis=1))
    for player, tx in (('g', g_tx), ('d', d_tx)):

      def update(params, opt_state, grads, tx=tx):
        u, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, u), opt_state

      updates[(name, player)] = jax.jit(update)
  batch_data = {
    'image': jax.random.uniform(jax.random.PRNGKey(2), (batch, *IMAGE), minval=-1.0, maxval=1.0)
  }
  return states, steps, updates, batch_data


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--rounds', type=int, default=20)
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--density', type=float, default=0.1)
  args = parser.parse_args()

  states, steps, updates, batch = build(args.density, args.batch)
  grads = {
    p: jax.tree.map(
      lambda w: jax.random.normal(jax.random.PRNGKey(3), w.shape, w.dtype),
      getattr(states['dense'], p).params,
    )
    for p in ('g', 'd')
  }
  cases = {}
  for p in ('g', 'd'):
    for name in ('dense', 'sparse'):
      player = getattr(states[name], p)
      cases[(f'Adam update {p.upper()}', name)] = (
        updates[(name, p)],
        player.params,
        player.opt_state,
        grads[p],
      )
  for name in ('dense', 'sparse'):
    cases[('G+D step', name)] = (steps[name], states[name], batch)
  g_sparse, d_sparse = states['sparse'].g, states['sparse'].d
  cases[('G prune/regrow (slow schedule)', 'sparse')] = (
    lambda pl, g: sparse.dst_update(pl, g, drop_fraction=0.3),
    g_sparse,
    grads['g'],
  )
  cases[('D set_density (slow schedule)', 'sparse')] = (
    lambda pl, g: sparse.set_density(pl, g, args.density + 0.05),
    d_sparse,
    grads['d'],
  )

  for k, (fn, *a) in cases.items():  # compile + warm up
    first = timed(fn, *a)
    print(
      f'  compiled {k[0]} ({k[1]}): first call {first:.1f} s, then {timed(fn, *a) * 1e3:.1f} ms',
      flush=True,
    )
  times = {k: [] for k in cases}
  for r in range(args.rounds):
    for k, (fn, *a) in cases.items():
      times[k].append(timed(fn, *a))
    if (r + 1) % 5 == 0:
      print(f'  round {r + 1}/{args.rounds}', flush=True)

  n_g = sum(x.size for x in jax.tree.leaves(states['dense'].g.params))
  n_d = sum(x.size for x in jax.tree.leaves(states['dense'].d.params))
  print(machine())
  print(
    f'DCGAN-28: G {n_g:,} params, D {n_d:,} params; density {args.density} (ERK), batch {args.batch}, '
    f'median of {args.rounds} interleaved rounds'
  )
  print(f'{"operation":34s} {"dense ms":>10s} {"sparse ms":>10s} {"ratio":>7s}')
  labels = dict.fromkeys(k[0] for k in cases)
  for label in labels:
    dense = times.get((label, 'dense'))
    sp = np.median(times[(label, 'sparse')]) * 1e3
    if dense is None:
      print(f'{label:34s} {"-":>10s} {sp:10.2f} {"-":>7s}')
    else:
      d = np.median(dense) * 1e3
      print(f'{label:34s} {d:10.2f} {sp:10.2f} {sp / d:7.2f}')


if __name__ == '__main__':
  main()
