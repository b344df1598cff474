"""InfoMax-GAN settings of Mimicry, as used by the DAT paper (dat.md §2-3).

Variants, chosen with ``--config experiments/configs/infomax.py:VARIANT``: 'cifar10',
'cifar100', 'stl10', 'mnist' and each with '_dat' (DAT on). Everything but the technique is
as in :mod:`experiments.configs.ssgan` (see its docstring for the Mimicry settings and what is
not reproduced): hinge loss, sngan32 with the InfoMax heads (projections into 1024 units,
Mimicry's nrkhs), n_dis 5, Adam 2e-4 betas (0.0, 0.9), batch 64, 100K G iterations. The
InfoMax weight is 0.2 for D (features of the reals) and G (features of the fakes). The MNIST
setting uses dcgan28 with 128-unit projections, 600 steps of batch 64.

InfoNCE negatives: ``infomax.negatives='same_position'`` (the default here: for each
image and position, the other images' local features at that position);
``--config.infomax.negatives=all_positions`` gives Mimicry's exact form (jaxgan.infomax).

  python -m experiments.main --config experiments/configs/infomax.py:mnist --workdir runs/infomax_mnist_s0
"""

from experiments.configs.ssgan import selfsup_config


def get_config(variant: str = 'mnist'):
  return selfsup_config(variant, 'infomax')
