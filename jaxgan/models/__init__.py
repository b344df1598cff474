"""Generators and discriminators (Flax Linen, ``__call__(x, train)``).

* :mod:`jaxgan.models.dcgan`: DCGAN G/D for 28x28, 32x32 and 64x64 images.
* :mod:`jaxgan.models.sngan`: SNGAN ResNet G/D for 32x32 images.
* :mod:`jaxgan.models.mlp`: MLP G/D for 2-D toy data.
* :func:`get_models`: ``(g, d)`` by name; :func:`d_is_batch_coupled`.

The LeNet-5 classifiers live in :mod:`jaxgan.models.classifier`.
"""

from jaxgan.models.dcgan import DCGANDiscriminator, DCGANGenerator
from jaxgan.models.mlp import MLPDiscriminator, MLPGenerator
from jaxgan.models.registry import MODELS, count_params, d_is_batch_coupled, get_models
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
]
