"""OSGAN (one-stage GAN training) settings of the reference configs (osgan.md §3).

Variants, chosen with ``--config experiments/configs/osgan.py:VARIANT``:

  sym_two_stage_mnist    minimax (saturating G), BatchNorm D, lr G/D 2e-4 / 2e-4
  sym_one_stage_mnist    minimax, BatchNorm D, one-stage symmetric, lr G/D 2e-4 / 1.35e-5
  asym_two_stage_mnist   non-saturating, BatchNorm D, 2e-4 / 2e-4
  asym_one_stage_mnist   non-saturating, GroupNorm D, one-stage asymmetric, 2e-4 / 5e-5
  wgan_two_stage_mnist   WGAN, weight clip 0.01, 1 critic step, 2e-4 / 2e-4
  wgan_one_stage_mnist   WGAN, weight clip 0.01, one-stage symmetric, 2e-4 / 1.35e-5
  sym_two_stage_celeba   64x64 CelebA (tfds 'celeb_a' prepared by the user), 2e-4 / 2e-5
  sym_one_stage_celeba   2e-4 / 4e-5
  asym_two_stage_celeba  GroupNorm D, 2e-4 / 4e-5
  asym_one_stage_celeba  GroupNorm D, nz 128, 2e-4 / 1e-4

All: batch 128, Adam b = (0.5, 0.999), N(0, 0.02) init. MNIST here is the offline
MNIST-5k at 28x28 (the reference resizes full MNIST to 64x64): 20 epochs of the
4,000 training images = 625 iterations, a few minutes per run on a 2-core CPU.
The reference's CelebA schedules (MultiStep decays) are not applied. Example:

  python -m experiments.main --config experiments/configs/osgan.py:asym_one_stage_mnist --workdir runs/osgan_asym_one
"""

from experiments.configs import default

# variant: (loss, d_norm, trainer, lr_d, latent_dim, dataset)
VARIANTS = {
  'sym_two_stage_mnist': ('minimax', 'batch', 'two_stage', 2e-4, 100, 'mnist'),
  'sym_one_stage_mnist': ('minimax', 'batch', 'one_stage', 1.35e-5, 100, 'mnist'),
  'asym_two_stage_mnist': ('ns', 'batch', 'two_stage', 2e-4, 100, 'mnist'),
  'asym_one_stage_mnist': ('ns', 'group', 'one_stage', 5e-5, 100, 'mnist'),
  'wgan_two_stage_mnist': ('wgan', 'batch', 'two_stage', 2e-4, 100, 'mnist'),
  'wgan_one_stage_mnist': ('wgan', 'batch', 'one_stage', 1.35e-5, 100, 'mnist'),
  'sym_two_stage_celeba': ('minimax', 'batch', 'two_stage', 2e-5, 100, 'celeba'),
  'sym_one_stage_celeba': ('minimax', 'batch', 'one_stage', 4e-5, 100, 'celeba'),
  'asym_two_stage_celeba': ('ns', 'group', 'two_stage', 4e-5, 100, 'celeba'),
  'asym_one_stage_celeba': ('ns', 'group', 'one_stage', 1e-4, 128, 'celeba'),
}


def get_config(variant: str = 'asym_one_stage_mnist'):
  if variant not in VARIANTS:
    raise ValueError(f'unknown osgan variant {variant!r}; choose one of {sorted(VARIANTS)}.')
  loss, d_norm, trainer, lr_d, nz, data = VARIANTS[variant]
  c = default.get_config()
  c.loss = loss
  c.trainer = trainer
  c.onestage_mode = 'auto'
  c.latent_dim = nz
  c.batch_size = 128
  c.g_optimizer = default.optimizer(lr=2e-4)
  c.d_optimizer = default.optimizer(lr=lr_d)
  c.model_kwargs.d_norm = d_norm
  c.ema_decay = 0.0
  if loss == 'wgan':
    c.weight_clip = 0.01
  if data == 'mnist':
    c.model = 'dcgan28'
    c.num_steps = 625  # 20 epochs of 4,000 images
    c.eval_every = 125
  else:
    c.dataset = 'celeb_a'
    c.model = 'dcgan64'
    c.num_steps = 30 * 162_770 // 128  # 30 epochs of the CelebA train split
    c.eval_every = 5000
    c.eval_samples = 10_000
  c.sample_every = c.eval_every
  c.checkpoint_every = c.eval_every
  return c
