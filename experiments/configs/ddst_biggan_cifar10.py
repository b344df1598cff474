"""DDST (dynamic sparse training of G and D) with BigGAN on CIFAR-10 (ddst.md §5-6).

Variants, chosen with ``--config experiments/configs/ddst_biggan_cifar10.py:VARIANT``,
``VARIANT = MODE:DENSITY`` with MODE one of relax, strict, sdst, static and DENSITY
G's density (0.1, 0.2, 0.3 or 0.5), e.g. ``relax:0.1`` (default) or ``strict:0.3``.

Reference numbers (the DDST poster; FID on 50k samples, lower is better; CIFAR-10
BigGAN at d_G = 10 / 20 / 30 / 50%; dense BigGAN 8.11):

  ADAPT_relax          10.19 / 8.56 / 8.36 / 8.22
  ADAPT_strict          9.29 / 8.64 / 8.44 / 7.90   (D density at most 50%)
  SDST-Strong-RigL     10.58 / 9.11 / 8.69 / 8.33
  Static-Balance       16.98 / 12.81 / 10.33 / 8.47

Reference settings: the DDST BigGAN script (BigGAN-PyTorch CIFAR: ch 64, nz 128,
per-class conditional BN, no shared embedding, no hierarchy, no attention, N02
init; G 4,304,387 and D 4,207,361 params, checked in ``tests/test_biggan.py``),
class-conditional, hinge loss, Adam 2e-4 / 2e-4 with betas (0.0, 0.999), batch
50, 4 D steps per G step, 200k G iterations, EMA of G 0.9999; the sparse schedule
is the reference's (ERK init, G update every 500 iterations with a cosine drop
fraction, BR measured every 10 iterations over 1,000, D controlled every 1,000
(relax) or 2,000 (strict) iterations).

Differences: the EMA starts at G's initial weights (reference: at step 1000,
then evaluated with standing statistics); FID needs converted Inception weights
(``inception_weights``) and is computed on ``eval_samples`` samples against the
training set.
"""

from experiments.configs import default

MODES = ('relax', 'strict', 'sdst', 'static')
DENSITIES = (0.1, 0.2, 0.3, 0.5)


def get_config(variant: str = 'relax:0.1'):
  mode, _, density = variant.partition(':')
  try:
    d_g = float(density or 0.1)
  except ValueError:
    d_g = -1.0
  if mode not in MODES or d_g not in DENSITIES:
    raise ValueError(
      f'ddst_biggan_cifar10: variant {variant!r} must be MODE:DENSITY with MODE in {MODES} '
      f'and DENSITY in {DENSITIES}, e.g. "relax:0.1".'
    )
  c = default.get_config()
  c.dataset = 'cifar10'
  c.model = 'biggan32'
  c.model_kwargs.num_classes = 10
  c.model_kwargs.width = 64
  c.latent_dim = 128
  c.loss = 'hinge'
  c.trainer = 'two_stage'
  c.n_dis = 4
  c.batch_size = 50
  c.num_steps = 200_000
  c.g_optimizer = default.optimizer(lr=2e-4, b1=0.0, b2=0.999)
  c.d_optimizer = default.optimizer(lr=2e-4, b1=0.0, b2=0.999)
  c.ema_decay = 0.9999
  c.sparse.enabled = True
  c.sparse.variant = mode
  c.sparse.g_density = d_g
  c.sparse.d_density = 0.0  # = G's initial density, as the reference
  c.sparse.d_control_every = 2000 if mode == 'strict' else 1000
  c.eval_samples = 10_000
  c.eval_every = 5_000
  c.sample_every = 5_000
  c.checkpoint_every = 5_000
  c.best_metric = 'fid'
  return c
