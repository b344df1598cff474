"""Stage I of the lottery-ticket study: iterative magnitude pruning of G on little data.

  python -m experiments.lottery_mnist --config-fraction 0.1 --rounds 9 --round-steps 200
      [--seed 0] [--width 32] [--workdir runs/lottery_mnist]

Each round trains the training program's DCGAN-28 on ``--config-fraction`` of the offline
MNIST-5k from the seed's initial weights times the current mask (rewinding to theta0,
fresh Adam and EMA: :func:`jaxgan.sparse.lottery.rewind_state` semantics, via
``config.lottery.ticket``), without augmentation (lottery.md §1: augmentation during the
search had no visible effect), then prunes 20% of G's remaining conv/linear weights by
the magnitude of the EMA generator, ranked across G (global, the reference). D stays
dense and starts from phi0 every round (the released limited-data code). Round ``r``'s
masks are written to ``WORKDIR/ticket_round{r}.npz`` (sparsity ``1 - 0.8**r``: 67.2%
after 5 rounds, 86.6% after 9); a finished round is not rerun.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import numpy as np

from experiments.configs import default
from jaxgan import run_setup, train
from jaxgan.sparse import lottery


def base_config(fraction: float, width: int, steps: int, seed: int):
  """The small-data MNIST run every lottery round and every Stage II run starts from."""
  c = default.get_config()
  c.seed = seed
  c.subset.fraction = fraction
  c.subset.seed = seed
  c.model_kwargs.width = width
  c.num_steps = steps
  c.ema_decay = 0.99
  c.log_every = 25
  c.sample_every = steps
  c.checkpoint_every = steps
  c.eval_every = 0
  return c


def ticket_path(workdir: Path, r: int) -> Path:
  return workdir / f'ticket_round{r}.npz'


def search(
  fraction: float, rounds: int, round_steps: int, seed: int, width: int, workdir: Path
) -> list[dict]:
  """Runs (or resumes) the IMP rounds; returns each round's realised G density."""
  workdir.mkdir(parents=True, exist_ok=True)
  cfg = base_config(fraction, width, round_steps, seed)
  cfg.eval_samples = 0
  run = run_setup.build_run(cfg)
  theta0 = run.init_state(jax.random.PRNGKey(seed)).g.params
  masks = lottery.dense_masks(theta0)
  report = []
  for r in range(rounds + 1):
    path = ticket_path(workdir, r)
    if path.exists():
      with np.load(path) as f:
        masks = lottery.masks_from_arrays({k: f[k] for k in f.files}, theta0)
    else:
      np.savez(path, **lottery.masks_to_arrays(masks))
    density = float(lottery.global_density(masks))
    report.append({'round': r, 'density': density, 'sparsity': 1.0 - density})
    print(f'round {r}: G density {density:.4f} (1 - 0.8^r = {0.8**r:.4f})', flush=True)
    if r == rounds or ticket_path(workdir, r + 1).exists():
      continue
    cfg_r = base_config(fraction, width, round_steps, seed)
    cfg_r.eval_samples = 0
    cfg_r.lottery.ticket = str(path)
    state = train.train_and_evaluate(cfg_r, workdir / f'round{r}')
    trained = state.ema_params if state.ema_params is not None else state.g.params
    masks = lottery.imp_round(jax.device_get(trained), masks, rate=0.2, scope='global')
  (workdir / 'tickets.json').write_text(json.dumps(report, indent=2))
  return report


def main(argv=None) -> list[dict]:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--config-fraction', type=float, default=0.1)
  ap.add_argument('--rounds', type=int, default=9)
  ap.add_argument('--round-steps', type=int, default=200)
  ap.add_argument('--seed', type=int, default=0)
  ap.add_argument('--width', type=int, default=32)
  ap.add_argument('--workdir', default='runs/lottery_mnist')
  args = ap.parse_args(argv)
  return search(
    args.config_fraction,
    args.rounds,
    args.round_steps,
    args.seed,
    args.width,
    Path(args.workdir) / f'seed{args.seed}',
  )


if __name__ == '__main__':
  main()
