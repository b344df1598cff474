"""SSGAN (rotation self-supervision) settings of Mimicry, as used by the DAT paper (dat.md §2).

Variants, chosen with ``--config experiments/configs/ssgan.py:VARIANT``:

  cifar10, cifar100   tfds 'cifar10' / 'cifar100' (32x32), model sngan32 (G nz 128, ngf 256,
                      bilinear up-sampling; D ndf 128, spectral norm) with the rotation head
  stl10               tfds 'stl10'; see the note below
  mnist               offline MNIST-5k (28x28), dcgan28 with the rotation head; the
                      3-seed experiment (measured 0.48 steps/s under load average ~7 on
                      the shared 2-core machine, i.e. ~20 min for 600 steps; faster on a
                      free machine; --config.model_kwargs.width=32 is cheaper)
  <any>_dat           the same with DAT on (dat.md §2: one raw-gradient step, t = 1,
                      reals clamped as in Mimicry's SSGAN/InfoMax path)

Mimicry settings (cifar10/cifar100/stl10): hinge loss, n_dis 5, Adam lr 2e-4 for G and D with
betas (0.0, 0.9), batch 64, 100K G iterations, no EMA; rotation loss weight 1.0 for D (on rotated
reals) and 0.2 for G (on rotated fakes), with Mimicry's rotated batch (``rotations='quarter'``:
image i of B turned floor(4i/B) times; ``--config.ssgan.rotations=all`` rotates every image
four times, as Chen et al.). Not reproduced: Mimicry's linear learning-rate decay
(jaxgan's optimizers have no schedule), and for STL-10 its 48x48 setting -- jaxgan has neither a
resize step in the data pipeline nor Mimicry's 48x48 SNGAN (ngf 512, ndf 1024, five D blocks),
so 'stl10' trains the sngan32 architecture at the prepared dataset's resolution (96x96 for
tfds 'stl10': give it a 48x48 copy to match the paper's resolution). FID on these datasets
needs converted Inception weights (``--config.inception_weights=...``).

MNIST setting: 600 steps of batch 64 (about 10 epochs of the 4,000 images), hinge loss,
spectral-norm D (Mimicry's Ds have no BatchNorm, and DAT with BatchNorm couples samples,
dat.md §4.8), n_dis 1, Adam lr 2e-4 betas (0.5, 0.999), EMA 0.99 as the quickstart, MNIST FID
on 1,000 samples at steps 300 and 600. Baseline arm of the experiment: the same config with
``--config.ssgan.enabled=False`` (the head's parameters then exist but get no gradient).

  python -m experiments.main --config experiments/configs/ssgan.py:mnist --workdir runs/ssgan_mnist_s0 --config.seed=0
"""

from experiments.configs import default

DATASETS = {'cifar10': 'cifar10', 'cifar100': 'cifar100', 'stl10': 'stl10', 'mnist': 'mnist5k'}
TECHNIQUES = ('ssgan', 'infomax')


def selfsup_config(variant: str, technique: str):
  """The config of ``variant`` ('<dataset>' or '<dataset>_dat') for 'ssgan' or 'infomax'."""
  if technique not in TECHNIQUES:
    raise ValueError(f'technique must be one of {TECHNIQUES}, got {technique!r}.')
  data, use_dat = variant, False
  if variant.endswith('_dat'):
    data, use_dat = variant[: -len('_dat')], True
  if data not in DATASETS:
    choices = sorted([*DATASETS, *(f'{d}_dat' for d in DATASETS)])
    raise ValueError(f'unknown {technique} variant {variant!r}; choose one of {choices}.')
  c = default.get_config()
  c.dataset = DATASETS[data]
  c.loss = 'hinge'
  head = 'rotation' if technique == 'ssgan' else 'infomax'
  if technique == 'ssgan':
    c.ssgan.enabled = True
    c.ssgan.rotations = 'quarter'  # Mimicry: each quarter of the batch turned by one angle
  else:
    c.infomax.enabled = True
  if data == 'mnist':
    c.model = 'dcgan28'
    c.model_kwargs.aux_head = head
    c.model_kwargs.d_norm = 'spectral'
    c.model_kwargs.infomax_dim = 128
    c.n_dis = 1
    c.batch_size = 64
    c.num_steps = 600
    c.ema_decay = 0.99
    c.eval_every = 300
    c.eval_samples = 1000
  else:
    c.model = 'sngan32'
    c.model_kwargs.aux_head = head
    c.model_kwargs.g_upsample_mode = 'bilinear'
    c.model_kwargs.infomax_dim = 1024
    c.latent_dim = 128
    c.n_dis = 5
    c.batch_size = 64
    c.num_steps = 100_000
    c.g_optimizer = default.optimizer(lr=2e-4, b1=0.0, b2=0.9)
    c.d_optimizer = default.optimizer(lr=2e-4, b1=0.0, b2=0.9)
    c.ema_decay = 0.0
    c.eval_every = 10_000
    c.eval_samples = 10_000
  c.sample_every = c.eval_every
  c.checkpoint_every = c.eval_every
  if use_dat:
    c.dat.enabled = True
    c.dat.steps = 1
    c.dat.step_size = 1.0
    c.dat.clip = 1.0
    c.dat.clamp_real = True  # the SSGAN/InfoMax path of the DAT code clamps reals (dat.md §4.4)
  return c


def get_config(variant: str = 'mnist'):
  return selfsup_config(variant, 'ssgan')
