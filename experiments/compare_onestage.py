"""One-stage against two-stage training on the offline MNIST-5k: MNIST FID over seeds.

  python -m experiments.compare_onestage [--setting asym] [--seeds 0,1,2] [--steps 625]
      [--batch 64] [--workdir runs/compare_onestage] [--json out.json]

Runs the OSGAN MNIST pair of ``experiments/configs/osgan.py`` (``asym``: non-saturating
loss, two-stage with a BatchNorm D at lr_D 2e-4 against one-stage with a GroupNorm D at
lr_D 5e-5; ``sym``: minimax loss, BatchNorm D, lr_D 2e-4 against 1.35e-5; ``wgan``) for
the same number of iterations and seeds through the training program, then prints the
final MNIST FID (mean +- std over seeds, 1,000 samples against the train split under the
project's MNIST classifier, the protocol written in each run's ``eval_log.jsonl``) and the
wall-clock of each run. Runs already finished in ``--workdir`` are reused, so an
interrupted comparison continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from experiments.configs import osgan
from jaxgan import train

SETTINGS = {
  'asym': ('asym_two_stage_mnist', 'asym_one_stage_mnist'),
  'sym': ('sym_two_stage_mnist', 'sym_one_stage_mnist'),
  'wgan': ('wgan_two_stage_mnist', 'wgan_one_stage_mnist'),
}


def config(variant: str, seed: int, steps: int, batch: int):
  """The OSGAN MNIST ``variant`` for ``steps`` iterations, evaluated once at the end."""
  cfg = osgan.get_config(variant)
  cfg.seed, cfg.num_steps, cfg.batch_size = seed, steps, batch
  cfg.eval_every, cfg.sample_every, cfg.checkpoint_every = steps, steps, steps
  return cfg


def run_one(variant: str, seed: int, steps: int, batch: int, workdir: Path) -> dict:
  """Trains (or reuses) one run; returns its final FID and wall-clock seconds."""
  cfg = config(variant, seed, steps, batch)
  summary_path = workdir / 'summary.json'
  if not summary_path.exists():
    train.train_and_evaluate(cfg, workdir)
  summary = json.loads(summary_path.read_text())
  evals = [json.loads(line) for line in (workdir / 'eval_log.jsonl').read_text().splitlines()]
  last = evals[-1]
  return {
    'fid': float(last['fid']),
    'seconds': summary['seconds_this_session'],
    'step': last['step'],
  }


def main(argv=None) -> dict:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--setting', default='asym', choices=sorted(SETTINGS))
  ap.add_argument('--seeds', default='0,1,2')
  ap.add_argument('--steps', type=int, default=625)
  ap.add_argument('--batch', type=int, default=64)
  ap.add_argument('--workdir', default='runs/compare_onestage')
  ap.add_argument('--json', default='')
  args = ap.parse_args(argv)
  seeds = [int(s) for s in args.seeds.split(',')]
  results = {}
  for variant in SETTINGS[args.setting]:
    runs = [
      run_one(variant, s, args.steps, args.batch, Path(args.workdir) / f'{variant}_seed{s}')
      for s in seeds
    ]
    fids, secs = np.array([r['fid'] for r in runs]), np.array([r['seconds'] for r in runs])
    results[variant] = {
      'fid_mean': float(fids.mean()),
      'fid_std': float(fids.std(ddof=1)) if len(fids) > 1 else 0.0,
      'seconds_mean': float(secs.mean()),
      'runs': runs,
    }
  print(f'| variant | MNIST FID (mean +- std, {len(seeds)} seeds) | seconds per run | per seed |')
  print('|---|---|---|---|')
  for variant, r in results.items():
    per_seed = ', '.join(f'{x["fid"]:.2f}' for x in r['runs'])
    print(
      f'| {variant} | {r["fid_mean"]:.2f} +- {r["fid_std"]:.2f} | {r["seconds_mean"]:.0f} '
      f'| {per_seed} |'
    )
  two, one = (results[v]['fid_mean'] for v in SETTINGS[args.setting])
  print(f'one-stage / two-stage FID: {one / two:.3f} ({args.steps} iterations, batch {args.batch})')
  if args.json:
    Path(args.json).write_text(json.dumps(results, indent=2))
  return results


if __name__ == '__main__':
  main()
