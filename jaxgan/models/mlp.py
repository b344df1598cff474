"""MLP generator and discriminator for low-dimensional toy data (2-D mixtures).

Defaults follow the usual 2-D mixture-of-Gaussians setting (unrolled GAN,
CoopInit toy experiments): three hidden layers of 128 units, ReLU in G,
LeakyReLU(0.2) in D, a linear G output (toy data is not confined to [-1, 1])
and one D logit. Flax's default initializers (LeCun normal kernels, zero biases).

Feature hooks (AdvAug): G calls ``self.perturb('features', h)`` on the output of
its first Dense layer (before the activation); D on the input of its last Dense
layer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax

from jaxgan.nn import activation_norm, check_norm, spectral_norm
from jaxgan.nn.dtypes import at_least_float32


def _check_hidden(hidden: Sequence[int], where: str) -> None:
  if len(hidden) == 0 or any(int(u) <= 0 for u in hidden):
    raise ValueError(
      f'{where}: hidden must be a non-empty sequence of positive sizes, got {hidden!r}.'
    )


class MLPGenerator(nn.Module):
  """MLP generator: latents ``[B, nz]`` -> samples ``[B, *out_shape]``.

  Attributes:
    hidden: hidden layer widths.
    out_shape: shape of one sample (``(2,)`` for 2-D points).
    dtype: computation dtype (``None``: float32); params float32; low-precision output cast to float32.
  """

  hidden: Sequence[int] = (128, 128, 128)
  out_shape: Sequence[int] = (2,)
  dtype: Any = None

  @nn.compact
  def __call__(self, z: jax.Array, train: bool) -> jax.Array:
    """Maps latents ``[B, nz]`` to samples ``[B, *out_shape]`` (``train`` is unused)."""
    del train
    _check_hidden(self.hidden, 'MLPGenerator')
    if z.ndim != 2:
      raise ValueError(f'MLPGenerator expects latents [B, nz], got shape {tuple(z.shape)}.')
    out_shape = tuple(int(n) for n in self.out_shape)
    if not out_shape or min(out_shape) <= 0:
      raise ValueError(
        f'MLPGenerator.out_shape must be a non-empty positive shape, got {self.out_shape!r}.'
      )
    h = z
    for i, units in enumerate(self.hidden):
      h = nn.Dense(units, dtype=self.dtype, name=f'dense{i}')(h)
      if i == 0:
        h = self.perturb('features', h)
      h = nn.relu(h)
    h = nn.Dense(math.prod(out_shape), dtype=self.dtype, name='out')(h)
    return at_least_float32(h.reshape(z.shape[0], *out_shape))


class MLPDiscriminator(nn.Module):
  """MLP discriminator: samples ``[B, ...]`` (flattened) -> logits ``[B]``.

  Attributes:
    hidden: hidden layer widths.
    norm: one of :data:`jaxgan.nn.D_NORMS`, applied after every hidden Dense
      ('group' uses up to 32 groups of units).
    negative_slope: LeakyReLU slope.
    dtype: computation dtype (``None``: float32); params float32; low-precision logits cast to float32.
  """

  hidden: Sequence[int] = (128, 128, 128)
  norm: str = 'none'
  negative_slope: float = 0.2
  dtype: Any = None

  @property
  def batch_coupled(self) -> bool:
    """True when D mixes the samples of a batch (BatchNorm in train mode)."""
    return self.norm == 'batch'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    """Scores samples ``[B, ...]`` with logits ``[B]``."""
    _check_hidden(self.hidden, 'MLPDiscriminator')
    check_norm(self.norm, 'MLPDiscriminator')
    if x.ndim < 2:
      raise ValueError(f'MLPDiscriminator expects samples [B, ...], got shape {tuple(x.shape)}.')
    sn = self.norm == 'spectral'
    h = x.reshape(x.shape[0], -1)
    for i, units in enumerate(self.hidden):
      h = spectral_norm(nn.Dense(units, dtype=self.dtype, name=f'dense{i}'), sn, train)(h)
      h = activation_norm(self.norm, units, train, f'dense{i}_norm', self.dtype)(h)
      h = nn.leaky_relu(h, self.negative_slope)
    h = self.perturb('features', h)
    out = spectral_norm(nn.Dense(1, dtype=self.dtype, name='out'), sn, train)(h)
    return at_least_float32(out[:, 0])
