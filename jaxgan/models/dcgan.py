"""DCGAN generators and discriminators for 28x28, 32x32 and 64x64 images.

Radford, Metz and Chintala (ICLR 2016) as the OSGAN code builds it at 64x64 (default width 128),
the "standard CNN" of Miyato et al. (ICLR 2018, Table 3) at 32x32 and a small MNIST pair at 28x28
(default width 64); the class docstrings give the layers. All conv, dense and transposed-conv
kernels start from N(0, 0.02) and biases from 0, as the references; BatchNorm uses PyTorch's
momentum and epsilon. G always uses BatchNorm; D's normalization is one of
:data:`jaxgan.nn.D_NORMS` (spectral normalization covers every D layer, the activation norms every
layer but the first and the last) and its LeakyReLU slope is 0.2.

Both mark AdvAug's feature with ``self.perturb('features', h)`` (a no-op without a
``'perturbations'`` collection). D's self-supervised heads (field ``aux_head``,
:mod:`jaxgan.models.selfsup`) add parameters and outputs only when asked; with the default
``aux_head='none'`` nothing changes.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgan.models import selfsup
from jaxgan.nn import (
  ConvTranspose4x4s2,
  Project4x4,
  activation_norm,
  batch_norm,
  check_norm,
  conv_general_dilated,
  spectral_norm,
)
from jaxgan.nn.dtypes import at_least_float32

IMAGE_SIZES = (28, 32, 64)
DEFAULT_WIDTH = {28: 64, 32: 64, 64: 128}
_W_INIT = nn.initializers.normal(0.02)
_B_INIT = nn.initializers.zeros_init()


def _check_size(image_size: int, where: str) -> None:
  if image_size not in IMAGE_SIZES:
    raise ValueError(
      f'{where}: image_size={image_size!r} is not supported; choose one of {list(IMAGE_SIZES)} '
      '(SNGANGenerator/SNGANDiscriminator serve other 32x32-style sizes).'
    )


def _width(image_size: int, width: int | None, where: str) -> int:
  w = DEFAULT_WIDTH[image_size] if width is None else width
  if w <= 0:
    raise ValueError(f'{where}: width must be a positive channel count, got {width!r}.')
  return w


class DCGANGenerator(nn.Module):
  """DCGAN generator: latents ``[B, nz]`` -> images ``[B, S, S, channels]`` in [-1, 1].

  With ``d = width``, ``C = channels`` and ``up`` = :class:`jaxgan.nn.ConvTranspose4x4s2`
  (``ConvTranspose2d(k=4, s=2, p=1)``), each ``up`` but the last followed by BN + ReLU:

  * 64x64 (OSGAN's ``networks/dcgan.py``): ``Project4x4(z -> 8d)`` (``ConvTranspose2d(k=4, s=1,
    p=0)`` on 1x1) + BN + ReLU -> ``up 4d`` -> ``up 2d`` -> ``up d`` -> ``up C`` -> tanh.
  * 32x32 (Miyato et al., ICLR 2018, Table 3): ``Dense(z -> 4*4*8d)`` + BN + ReLU -> ``up 4d`` ->
    ``up 2d`` -> ``up d`` -> ``conv3x3 C`` -> tanh.
  * 28x28 (MNIST): ``Dense(z -> 7*7*4d)`` + BN + ReLU -> ``up 2d`` (14x14) -> ``up C`` -> tanh.

  AdvAug's feature hook ``self.perturb('features', h)`` is the projection's output, before BN.

  Attributes:
    image_size: 28, 32 or 64.
    channels: output image channels.
    width: base channel count ``d`` (``None``: 64 for 28/32, 128 for 64).
    upsample: ``'fast'`` (:func:`jaxgan.nn.conv_transpose_4x4s2`) or ``'stock'``
      (XLA's ``lax.conv_transpose``; same params and values, for benchmarks).
    dtype: computation dtype (``None``: float32); params stay float32; a
      bfloat16/float16 output is returned as float32.
  """

  image_size: int = 32
  channels: int = 3
  width: int | None = None
  upsample: str = 'fast'
  dtype: Any = None

  @nn.compact
  def __call__(self, z: jax.Array, train: bool) -> jax.Array:
    """Generates images.

    Args:
      z: latents ``[B, nz]``.
      train: BatchNorm uses (and updates) batch statistics.

    Returns:
      Images ``[B, image_size, image_size, channels]`` in [-1, 1].
    """
    _check_size(self.image_size, 'DCGANGenerator')
    d = _width(self.image_size, self.width, 'DCGANGenerator')
    if self.upsample not in ('fast', 'stock'):
      raise ValueError(f"DCGANGenerator.upsample must be 'fast' or 'stock', got {self.upsample!r}.")
    if z.ndim != 2:
      raise ValueError(f'DCGANGenerator expects latents [B, nz], got shape {tuple(z.shape)}.')
    body = {64: self._body64, 32: self._body32, 28: self._body28}[self.image_size]
    return at_least_float32(jnp.tanh(body(z, d, train)))

  def _up(self, features: int, name: str) -> nn.Module:
    return ConvTranspose4x4s2(
      features,
      method=self.upsample,
      kernel_init=_W_INIT,
      bias_init=_B_INIT,
      dtype=self.dtype,
      name=name,
    )

  def _bn_relu(self, h: jax.Array, train: bool, name: str) -> jax.Array:
    return nn.relu(batch_norm(train, name, self.dtype)(h))

  def _project(self, z: jax.Array, side: int, features: int, train: bool) -> jax.Array:
    """``Dense(z -> side*side*features)``, the feature hook, BN + ReLU."""
    layer = nn.Dense(
      side * side * features,
      kernel_init=_W_INIT,
      bias_init=_B_INIT,
      dtype=self.dtype,
      name='project',
    )
    h = self.perturb('features', layer(z).reshape(z.shape[0], side, side, features))
    return self._bn_relu(h, train, 'project_bn')

  def _up_stack(self, h: jax.Array, d: int, train: bool) -> jax.Array:
    """``up 4d -> up 2d -> up d``, each BN + ReLU."""
    for i, mult in enumerate((4, 2, 1)):
      h = self._bn_relu(self._up(mult * d, f'up{i + 1}')(h), train, f'up{i + 1}_bn')
    return h

  def _body64(self, z: jax.Array, d: int, train: bool) -> jax.Array:
    h = Project4x4(8 * d, kernel_init=_W_INIT, bias_init=_B_INIT, dtype=self.dtype, name='project')(
      z
    )
    h = self._bn_relu(self.perturb('features', h), train, 'project_bn')
    return self._up(self.channels, 'up4')(self._up_stack(h, d, train))

  def _body32(self, z: jax.Array, d: int, train: bool) -> jax.Array:
    h = self._up_stack(self._project(z, 4, 8 * d, train), d, train)
    out = nn.Conv(
      self.channels,
      (3, 3),
      padding=((1, 1), (1, 1)),
      kernel_init=_W_INIT,
      bias_init=_B_INIT,
      dtype=self.dtype,
      name='out',
    )
    return out(h)

  def _body28(self, z: jax.Array, d: int, train: bool) -> jax.Array:
    h = self._project(z, 7, 4 * d, train)
    h = self._bn_relu(self._up(2 * d, 'up1')(h), train, 'up1_bn')
    return self._up(self.channels, 'up2')(h)


class DCGANDiscriminator(nn.Module):
  """DCGAN discriminator: images ``[B, S, S, C]`` -> logits ``[B]``.

  With ``d = width``, each conv followed by the norm (not on the first) and LeakyReLU:

  * 64x64: ``conv4x4 s2`` to ``d``, ``2d``, ``4d``, ``8d`` -> ``conv4x4 s1 p0 -> 1`` on the 4x4 map.
  * 32x32 (Miyato et al., ICLR 2018, Table 3; their LReLU slope is 0.1): ``conv3x3 d`` ->
    ``conv4x4 s2 d`` -> ``conv3x3 2d`` -> ``conv4x4 s2 2d`` -> ``conv3x3 4d`` ->
    ``conv4x4 s2 4d`` -> ``conv3x3 8d`` -> ``Dense(4*4*8d -> 1)``.
  * 28x28: ``conv4x4 s2 2d`` (14x14) -> ``conv4x4 s2 4d`` (7x7) -> ``Dense(7*7*4d -> 1)``.

  AdvAug's feature hook is the input of the last layer. Self-supervised heads
  (:mod:`jaxgan.models.selfsup`): the global feature is the flattened input of the last layer,
  the local map ``conv1`` (14x14) for 28x28, ``conv4`` (8x8) for 32x32, ``conv3`` (8x8) for
  64x64; the global InfoMax head's hidden layer has ``infomax_dim`` units.

  Attributes:
    image_size: 28, 32 or 64; inputs must have this height and width.
    width: base channel count ``d`` (``None``: 64 for 28/32, 128 for 64).
    norm: one of :data:`jaxgan.nn.D_NORMS` ('batch' is the DCGAN default;
      'group' is OSGAN's ``dcgan_gn`` for one-stage training with asymmetric
      losses).
    negative_slope: LeakyReLU slope.
    downsample: ``'fast'`` (stride-2 convs through
      :func:`jaxgan.nn.conv_general_dilated`, whose input gradient is fast on
      CPU) or ``'stock'`` (XLA's; same params and values, for benchmarks).
    dtype: computation dtype (``None``: float32); params stay float32; a
      bfloat16/float16 logits are returned as float32.
    aux_head: self-supervised heads, one of :data:`jaxgan.models.selfsup.AUX_HEADS`
      ('none': the plain DCGAN D).
    infomax_dim: size of the InfoMax projections (Mimicry's ``nrkhs``).
  """

  image_size: int = 32
  width: int | None = None
  norm: str = 'batch'
  negative_slope: float = 0.2
  downsample: str = 'fast'
  dtype: Any = None
  aux_head: str = 'none'
  infomax_dim: int = 1024

  @property
  def batch_coupled(self) -> bool:
    """True when D mixes the samples of a batch (BatchNorm in train mode)."""
    return self.norm == 'batch'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool, output: str = 'logits'):
    """Scores images.

    Args:
      x: images ``[B, image_size, image_size, C]``.
      train: BatchNorm uses (and updates) batch statistics; spectral norm stores
        its power-iteration state.
      output: 'logits' (the default); 'rotation' or 'infomax' need that ``aux_head``.

    Returns:
      Logits ``[B]``; rotation logits ``[B, 4]`` for ``output='rotation'``;
      ``(local [B, h, w, infomax_dim], global [B, infomax_dim])`` projected
      features for ``output='infomax'`` (local map sizes in the module docstring).
    """
    self._check_input(x, output)
    d = _width(self.image_size, self.width, 'DCGANDiscriminator')
    if self.image_size == 64:
      return self._body64(x, d, train, output)
    if self.image_size == 32:
      h = self._conv(x, d, 3, 1, 'conv1', train, normalize=False)
      h = self._conv(h, d, 4, 2, 'conv2', train)
      h = self._conv(h, 2 * d, 3, 1, 'conv3', train)
      h = local_feat = self._conv(h, 2 * d, 4, 2, 'conv4', train)
      h = self._conv(h, 4 * d, 3, 1, 'conv5', train)
      h = self._conv(h, 4 * d, 4, 2, 'conv6', train)
      h = self._conv(h, 8 * d, 3, 1, 'conv7', train)
      return self._dense_head(h, local_feat, train, output)
    h = local_feat = self._conv(x, 2 * d, 4, 2, 'conv1', train, normalize=False)
    h = self._conv(h, 4 * d, 4, 2, 'conv2', train)
    return self._dense_head(h, local_feat, train, output)

  def _check_input(self, x: jax.Array, output: str) -> None:
    _check_size(self.image_size, 'DCGANDiscriminator')
    check_norm(self.norm, 'DCGANDiscriminator')
    selfsup.check_aux_head(self.aux_head, self.infomax_dim, 'DCGANDiscriminator')
    selfsup.check_output(self.aux_head, output, 'DCGANDiscriminator')
    if x.ndim != 4 or x.shape[1:3] != (self.image_size, self.image_size):
      raise ValueError(
        f'DCGANDiscriminator(image_size={self.image_size}) expects images '
        f'[B, {self.image_size}, {self.image_size}, C], got shape {tuple(x.shape)}.'
      )
    if self.downsample not in ('fast', 'stock'):
      raise ValueError(
        f"DCGANDiscriminator.downsample must be 'fast' or 'stock', got {self.downsample!r}."
      )

  def _conv(
    self,
    h: jax.Array,
    features: int,
    kernel: int,
    stride: int,
    name: str,
    train: bool,
    normalize: bool = True,
  ) -> jax.Array:
    """Conv (spectrally normalized if ``norm='spectral'``) -> norm -> LeakyReLU."""
    layer = nn.Conv(
      features,
      (kernel, kernel),
      strides=(stride, stride),
      padding=((1, 1), (1, 1)),
      kernel_init=_W_INIT,
      bias_init=_B_INIT,
      dtype=self.dtype,
      conv_general_dilated=conv_general_dilated if self.downsample == 'fast' else None,
      name=name,
    )
    h = spectral_norm(layer, self.norm == 'spectral', train)(h)
    if normalize:
      h = activation_norm(self.norm, features, train, f'{name}_norm', self.dtype)(h)
    return nn.leaky_relu(h, self.negative_slope)

  def _aux_heads(self, local_feat: jax.Array, global_feat: jax.Array, train: bool, output: str):
    """The self-supervised heads that are built (at init) or asked for."""
    heads = {}
    init = self.is_initializing()
    common = dict(
      spectral=self.norm == 'spectral', train=train, kernel_init=_W_INIT, dtype=self.dtype
    )
    if selfsup.has_head(self, 'rotation') and (init or output == 'rotation'):
      heads['rotation'] = at_least_float32(selfsup.rotation_head(global_feat, **common))
    if selfsup.has_head(self, 'infomax') and (init or output == 'infomax'):
      feats = selfsup.infomax_heads(
        local_feat, global_feat, dim=self.infomax_dim, global_hidden=self.infomax_dim, **common
      )
      heads['infomax'] = tuple(at_least_float32(f) for f in feats)
    return heads

  def _dense_head(self, h: jax.Array, local_feat: jax.Array, train: bool, output: str):
    """Flatten, feature hook, then ``Dense(-> 1)`` logits or the asked-for aux head."""
    h = self.perturb('features', h.reshape(h.shape[0], -1))
    heads = self._aux_heads(local_feat, h, train, output)
    if output != 'logits':
      return heads[output]
    layer = nn.Dense(1, kernel_init=_W_INIT, bias_init=_B_INIT, dtype=self.dtype, name='head')
    return at_least_float32(spectral_norm(layer, self.norm == 'spectral', train)(h)[:, 0])

  def _body64(self, x: jax.Array, d: int, train: bool, output: str):
    h = self._conv(x, d, 4, 2, 'conv1', train, normalize=False)
    h = self._conv(h, 2 * d, 4, 2, 'conv2', train)
    h = local_feat = self._conv(h, 4 * d, 4, 2, 'conv3', train)
    h = self.perturb('features', self._conv(h, 8 * d, 4, 2, 'conv4', train))
    heads = self._aux_heads(local_feat, h.reshape(h.shape[0], -1), train, output)
    if output != 'logits':
      return heads[output]
    head = nn.Conv(
      1,
      (4, 4),
      padding='VALID',
      kernel_init=_W_INIT,
      bias_init=_B_INIT,
      dtype=self.dtype,
      name='head',
    )
    return at_least_float32(
      spectral_norm(head, self.norm == 'spectral', train)(h).reshape(h.shape[0])
    )
