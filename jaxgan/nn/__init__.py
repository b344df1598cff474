"""Flax Linen building blocks: fast transposed convolution, normalizations, weight import.

* :func:`conv_transpose_4x4s2`, :class:`ConvTranspose4x4s2`: PyTorch's
  ``ConvTranspose2d(k=4, s=2, p=1)`` with a custom VJP that is fast on CPU.
* :class:`Project4x4`: the 1x1 -> 4x4 projection transposed conv as a matmul.
* :func:`conv_4x4s2`, :func:`conv_general_dilated`: the adjoint, PyTorch's
  ``Conv2d(k=4, s=2, p=1)``, with a fast input gradient (a drop-in for
  ``flax.linen.Conv(conv_general_dilated=...)``).
* :func:`activation_norm`, :func:`spectral_norm`, :data:`D_NORMS`: discriminator
  normalizations by name, PyTorch epsilons.
* :mod:`jaxgan.nn.torch_weights`: PyTorch weight layouts -> flax params.
"""

from jaxgan.nn import torch_weights
from jaxgan.nn.downsample import conv_4x4s2, conv_4x4s2_reference, conv_general_dilated
from jaxgan.nn.dtypes import at_least_float32
from jaxgan.nn.norms import (
  D_NORMS,
  SPECTRAL_COLLECTION,
  activation_norm,
  batch_norm,
  check_norm,
  spectral_norm,
)
from jaxgan.nn.upsample import (
  ConvTranspose4x4s2,
  Project4x4,
  conv_transpose_4x4s2,
  conv_transpose_4x4s2_reference,
)

__all__ = [
  'D_NORMS',
  'SPECTRAL_COLLECTION',
  'ConvTranspose4x4s2',
  'Project4x4',
  'activation_norm',
  'at_least_float32',
  'batch_norm',
  'check_norm',
  'conv_4x4s2',
  'conv_4x4s2_reference',
  'conv_general_dilated',
  'conv_transpose_4x4s2',
  'conv_transpose_4x4s2_reference',
  'spectral_norm',
  'torch_weights',
]
