"""MLP GAN on a 2-D Gaussian mixture (25-grid by default; ':8ring' for the ring).

Generator and discriminator: 3 hidden layers of 128 units; non-saturating loss,
Adam 1e-3 (b1 0.5, b2 0.999), batch 256, 2,000 steps, mode coverage evaluated
on 2,500 samples. Under a minute of training on a 2-core CPU.

  python -m experiments.main --config experiments/configs/toy2d.py:25grid --workdir runs/toy25
"""

from experiments.configs import default


def get_config(mixture: str = '25grid'):
  c = default.get_config()
  c.dataset = mixture
  c.model = 'mlp'
  c.model_kwargs.hidden = (128, 128, 128)
  c.latent_dim = 2
  c.batch_size = 256
  c.num_steps = 2000
  c.g_optimizer = default.optimizer(lr=1e-3)
  c.d_optimizer = default.optimizer(lr=1e-3)
  c.ema_decay = 0.0
  c.log_every = 100
  c.sample_every = 1000
  c.eval_every = 1000
  c.eval_samples = 2500
  c.checkpoint_every = 500
  return c
