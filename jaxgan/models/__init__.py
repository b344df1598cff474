"""Generators and discriminators (Flax Linen, ``__call__(x, train)``).

* :mod:`jaxgan.models.dcgan`: DCGAN G/D for 28x28, 32x32 and 64x64 images.
* :mod:`jaxgan.models.sngan`: SNGAN ResNet G/D for 32x32 images.
* :mod:`jaxgan.models.mlp`: MLP G/D for 2-D toy data.
* :mod:`jaxgan.models.selfsup`: the SSGAN rotation / InfoMax heads of the SNGAN and DCGAN
  Ds (``aux_head=...``) and the callables the ssgan/infomax terms take.
* :mod:`jaxgan.models.biggan`, :mod:`jaxgan.models.stylegan2`: class-conditional
  BigGAN (32/64/128) and StyleGAN2; :mod:`jaxgan.models.conditional`: their
  conditional BatchNorm, projection head and class-grid labels.
* :func:`get_models`: ``(g, d)`` by name; :func:`d_is_batch_coupled`;
  :func:`num_classes_of`.

The LeNet-5 classifiers live in :mod:`jaxgan.models.classifier`.
"""

from jaxgan.models.dcgan import DCGANDiscriminator, DCGANGenerator
from jaxgan.models.mlp import MLPDiscriminator, MLPGenerator
from jaxgan.models.registry import (
  MODELS,
  count_params,
  d_is_batch_coupled,
  get_models,
  num_classes_of,
)
from jaxgan.models.sngan import SNGANDiscriminator, SNGANGenerator

__all__ = [
  'MODELS',
  'DCGANDiscriminator',
  'DCGANGenerator',
  'MLPDiscriminator',
  'MLPGenerator',
  'SNGANDiscriminator',
  'SNGANGenerator',
  'count_params',
  'd_is_batch_coupled',
  'get_models',
  'num_classes_of',
]
