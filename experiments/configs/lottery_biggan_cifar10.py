"""Lottery-ticket BigGAN on CIFAR-10 with 10% or 20% of the training data (lottery.md §5-6).

Variants, chosen with ``--config experiments/configs/lottery_biggan_cifar10.py:VARIANT``:

  10   10% of CIFAR-10 (5,000 images), DiffAugment color,translation,cutout
  20   20% of CIFAR-10 (10,000 images), the same

Reference numbers (the lottery-ticket paper, Table 3; FID on 10k samples against
the validation set, lower is better; columns: 20% data / 10% data):

  dense BigGAN                         17.38 / 26.44
  dense + DiffAug                      13.04 / 17.40   <- what this config trains
  dense + DiffAug + AdvAug             12.19 / 14.40
  ticket (67.24% / 86.58% sparse)      16.03 / 25.41
  ticket + DiffAug                     12.83 / 16.74
  ticket + DiffAug + AdvAug            12.02 / 14.38

Reference settings (StudioGAN fork, ``configs/CIFAR10_less``): class-conditional
big_resnet (G and D spectrally normalized, projection D, shared class embedding
128, hierarchical z of 80, conv dims 96, self-attention), hinge loss, Adam
lr 2e-4 / 2e-4 with betas (0.5, 0.999), batch 64, 5 D steps per G step,
1e5 G iterations doubled to 2e5 with DiffAugment, EMA of G 0.9999, the first
``fraction * N`` training images.

Differences, stated so the comparison stays honest:

* jaxgan's BigGAN follows BigGAN-PyTorch's 32x32 tables; StudioGAN's big_resnet is
  approximated by ``width=96, shared_dim=128, hier=True``, nz 80 and one
  self-attention layer at 16x16 in G and D.
* Adam's epsilon is optax's 1e-8 (reference 1e-6); the EMA starts at G's initial
  weights rather than at step 1000.
* ``subset`` draws a class-balanced random subset (seeded), not the first images.
* AdvAug is off: jaxgan's AdvAug does not take class labels yet (the run is
  refused with it). Tickets come from the lottery pipeline (``lottery.ticket``).
* FID needs converted Inception weights (``inception_weights``); jaxgan's
  evaluator scores against the training set, the paper against the validation set.
"""

from experiments.configs import default

FRACTIONS = {'10': 0.1, '20': 0.2}


def get_config(variant: str = '10'):
  if variant not in FRACTIONS:
    raise ValueError(
      f'lottery_biggan_cifar10: unknown variant {variant!r}; choose one of {sorted(FRACTIONS)} '
      '(percent of CIFAR-10 kept).'
    )
  c = default.get_config()
  c.dataset = 'cifar10'
  c.subset.fraction = FRACTIONS[variant]
  c.subset.class_balanced = True
  c.model = 'biggan32'
  c.model_kwargs.num_classes = 10
  c.model_kwargs.width = 96
  c.model_kwargs.shared_dim = 128
  c.model_kwargs.hier = True
  c.model_kwargs.attention = (16,)
  c.latent_dim = 80
  c.loss = 'hinge'
  c.trainer = 'two_stage'
  c.n_dis = 5
  c.batch_size = 64
  c.num_steps = 200_000  # 1e5 doubled for DiffAugment, as the reference
  c.g_optimizer = default.optimizer(lr=2e-4, b1=0.5, b2=0.999)
  c.d_optimizer = default.optimizer(lr=2e-4, b1=0.5, b2=0.999)
  c.ema_decay = 0.9999
  c.diffaugment = 'color,translation,cutout'
  c.eval_samples = 10_000
  c.eval_every = 10_000
  c.sample_every = 5_000
  c.checkpoint_every = 5_000
  c.best_metric = 'fid'
  return c
