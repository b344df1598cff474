"""StyleGAN2 with DiffAugment on a 100-shot image folder (Obama, Grumpy cat, Panda).

Usage: put the 100 images in a folder (the DiffAugment 100-shot sets, or your
own PNG/JPEG files; they are resized and center-cropped to 256x256 and cached
once as an array_record dataset) and run

  python -m experiments.main --config experiments/configs/stylegan2_100shot.py \\
    --config.image_folder.path=~/data/100-shot-obama --workdir runs/obama

``--config ...stylegan2_100shot.py:RES`` picks another resolution (32 to 256).

Reference numbers (the lottery-ticket paper, Table 5: StyleGAN2 256x256 trained
from scratch; FID of 5k samples against the 100 training images, lower is
better; Obama / Grumpy cat / Panda):

  dense StyleGAN2                          89.18 / 61.97 / 90.96
  dense + DiffAug + AdvAug                 54.11 / 35.46 / 15.94
  48.8%-sparse ticket + DiffAug + AdvAug   52.86 / 31.02 / 14.75

Settings: the paper's lr 2e-4, batch 5 and 1e5 iterations; DiffAugment
color,translation,cutout (the policy of its StyleGAN runs); StyleGAN2's
non-saturating loss with R1 gamma 10 and Adam betas (0, 0.99); the config-E
channel base 16384 with 8 mapping layers at 256x256; minibatch-stddev groups of
5 (the whole batch of 5).

Differences: R1 is applied every step (``r1_weight``) rather than lazily every
16 steps, and there is no path-length term; AdvAug is not part of this config
(run it with ``advaug.enabled=True``); no pretrained weights. FID needs
converted Inception weights and is off here (``eval_samples = 0``).
"""

import ml_collections

from experiments.configs import default

RESOLUTIONS = (32, 64, 128, 256)


def get_config(resolution: str = '256'):
  try:
    res = int(resolution)
  except ValueError:
    res = -1
  if res not in RESOLUTIONS:
    raise ValueError(f'stylegan2_100shot: resolution {resolution!r} must be one of {RESOLUTIONS}.')
  c = default.get_config()
  c.dataset = 'image_folder'
  c.image_folder = ml_collections.ConfigDict(dict(path='', resolution=res, channels=3))
  c.model = 'stylegan2'
  c.model_kwargs.channel_base = 16384
  c.model_kwargs.channel_max = 512
  c.model_kwargs.mapping_layers = 8
  c.model_kwargs.mbstd_group_size = 5
  c.latent_dim = 512
  c.loss = 'ns'
  c.trainer = 'two_stage'
  c.n_dis = 1
  c.batch_size = 5
  c.num_steps = 100_000
  c.g_optimizer = default.optimizer(lr=2e-4, b1=0.0, b2=0.99)
  c.d_optimizer = default.optimizer(lr=2e-4, b1=0.0, b2=0.99)
  c.ema_decay = 0.999
  c.r1_weight = 10.0
  c.diffaugment = 'color,translation,cutout'
  c.eval_samples = 0
  c.sample_every = 2_000
  c.checkpoint_every = 5_000
  return c
