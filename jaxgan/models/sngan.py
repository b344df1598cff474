"""SNGAN ResNet generator and discriminator for 32x32 images (CIFAR baseline).

The CIFAR-10 ResNet of Miyato, Kataoka, Koyama and Yoshida (ICLR 2018) as configured by Mimicry's
``sngan_32`` and the SNGAN backbone of the DDST and lottery-ticket code (``nz = 128``,
``ngf = 256``, bottom width 4, ``ndf = 128``); the class docstrings give the layers. Layer names
follow Mimicry (``l1``, ``block2..4``, ``b5``, ``c5``; ``block1..4``, ``l5``; inside blocks
``c1``, ``c2``, ``c_sc``, ``b1``, ``b2``).

Initialization as Mimicry: Xavier-uniform with gain sqrt(2) for the residual 3x3 convs and gain 1
for shortcuts, ``l1``, ``c5`` and ``l5``. Biases start at 0 (PyTorch draws them from
U(+-1/sqrt(fan_in)); a negligible difference). Parameter counts (default sizes, 3 channels,
``tests/test_models.py``): G 4,276,739 = 4,266,752 conv/dense weights + 6,403 biases + 3,584
BatchNorm parameters; D 1,053,825 = 1,052,544 weights + 1,281 biases (Mimicry's D also has an
``l5`` bias; the lottery code's has none).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgan.models import selfsup
from jaxgan.nn import batch_norm, spectral_norm
from jaxgan.nn.dtypes import at_least_float32


def _xavier(gain: float):
  return nn.initializers.variance_scaling(gain**2, 'fan_avg', 'uniform')


_RES_INIT = _xavier(math.sqrt(2.0))
_UNIT_INIT = _xavier(1.0)
UPSAMPLE_MODES = ('nearest', 'bilinear')


def _upsample2(x: jax.Array, mode: str) -> jax.Array:
  if mode == 'nearest':
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
  b, h, w, c = x.shape
  # Half-pixel centres with edge clamping: PyTorch's align_corners=False.
  return jax.image.resize(x, (b, 2 * h, 2 * w, c), 'bilinear', antialias=False)


def _avgpool2(x: jax.Array) -> jax.Array:
  return nn.avg_pool(x, (2, 2), strides=(2, 2))


def _conv(features: int, kernel: int, init, name: str, dtype: Any) -> nn.Conv:
  pad = (kernel - 1) // 2
  return nn.Conv(
    features,
    (kernel, kernel),
    padding=((pad, pad), (pad, pad)),
    kernel_init=init,
    dtype=dtype,
    name=name,
  )


class GBlock(nn.Module):
  """Residual up-block of the SNGAN generator: ``[B, H, W, in] -> [B, 2H, 2W, features]``."""

  features: int
  upsample_mode: str = 'nearest'
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    up, dt = self.upsample_mode, self.dtype
    h = nn.relu(batch_norm(train, 'b1', dt)(x))
    h = _conv(self.features, 3, _RES_INIT, 'c1', dt)(_upsample2(h, up))
    h = nn.relu(batch_norm(train, 'b2', dt)(h))
    h = _conv(self.features, 3, _RES_INIT, 'c2', dt)(h)
    sc = _conv(self.features, 1, _UNIT_INIT, 'c_sc', dt)(_upsample2(x, up))
    return h + sc


class DBlock(nn.Module):
  """Residual block of the SNGAN discriminator.

  ``optimized`` is the first block (no leading ReLU, shortcut pooled before its
  conv). A learnable shortcut exists when the block downsamples or changes width.
  """

  features: int
  downsample: bool
  optimized: bool = False
  spectral: bool = True
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    def conv(h, kernel, init, name):
      layer = _conv(self.features, kernel, init, name, self.dtype)
      return spectral_norm(layer, self.spectral, train)(h)

    h = x if self.optimized else nn.relu(x)
    h = conv(h, 3, _RES_INIT, 'c1')
    h = conv(nn.relu(h), 3, _RES_INIT, 'c2')
    if self.downsample:
      h = _avgpool2(h)
    if self.optimized:
      sc = conv(_avgpool2(x), 1, _UNIT_INIT, 'c_sc')
    elif self.downsample or x.shape[-1] != self.features:
      sc = conv(x, 1, _UNIT_INIT, 'c_sc')
      sc = _avgpool2(sc) if self.downsample else sc
    else:
      sc = x
    return h + sc


class SNGANGenerator(nn.Module):
  """SNGAN ResNet generator: latents ``[B, nz]`` -> images ``[B, 8w, 8w, channels]``.

  ``Dense(nz -> 4*4*ngf)`` (``l1``) -> 3 up-blocks -> BN -> ReLU -> ``conv3x3 -> C`` (``c5``) ->
  tanh. An up-block is ``BN -> ReLU -> up x2 -> conv3x3 -> BN -> ReLU -> conv3x3`` plus the shortcut
  ``up x2 -> conv1x1``. AdvAug's feature hook is ``l1``'s output reshaped to ``[B, 4, 4, ngf]``.

  Attributes:
    ngf: channels of every block.
    bottom_width: spatial size after ``l1`` (4 for 32x32 images).
    channels: image channels.
    upsample_mode: 'nearest' (the DDST/lottery backbone and the SNGAN Chainer code) or
      'bilinear' (Mimicry).
    dtype: computation dtype (``None``: float32); params float32; low-precision output cast to
      float32.
  """

  ngf: int = 256
  bottom_width: int = 4
  channels: int = 3
  upsample_mode: str = 'nearest'
  dtype: Any = None

  @nn.compact
  def __call__(self, z: jax.Array, train: bool) -> jax.Array:
    """Generates images ``[B, 8 * bottom_width, 8 * bottom_width, channels]`` in [-1, 1]."""
    if self.upsample_mode not in UPSAMPLE_MODES:
      raise ValueError(
        f'SNGANGenerator.upsample_mode must be one of {list(UPSAMPLE_MODES)}, '
        f'got {self.upsample_mode!r}.'
      )
    if z.ndim != 2:
      raise ValueError(f'SNGANGenerator expects latents [B, nz], got shape {tuple(z.shape)}.')
    bw = self.bottom_width
    h = nn.Dense(bw * bw * self.ngf, kernel_init=_UNIT_INIT, dtype=self.dtype, name='l1')(z)
    h = self.perturb('features', h.reshape(z.shape[0], bw, bw, self.ngf))
    for i in (2, 3, 4):
      h = GBlock(self.ngf, self.upsample_mode, self.dtype, name=f'block{i}')(h, train)
    h = nn.relu(batch_norm(train, 'b5', self.dtype)(h))
    h = _conv(self.channels, 3, _UNIT_INIT, 'c5', self.dtype)(h)
    return at_least_float32(jnp.tanh(h))


class SNGANDiscriminator(nn.Module):
  """SNGAN ResNet discriminator: images ``[B, H, W, C]`` -> logits ``[B]``.

  An optimized first block (``conv3x3 -> ReLU -> conv3x3 -> avgpool``, shortcut
  ``avgpool -> conv1x1``), a downsampling block, two plain blocks (``ReLU -> conv3x3 -> ReLU ->
  conv3x3``, shortcut ``conv1x1 -> avgpool`` only where the shape changes), ReLU, global sum
  pooling, ``Dense(ndf -> 1)`` (``l5``); spectral normalization on every conv and on ``l5``.
  AdvAug's feature hook is the pooled ``[B, ndf]`` vector entering ``l5``. Self-supervised heads
  (as Mimicry's SSGAN/InfoMax-GAN 32x32 Ds): global feature that vector, local map ``block3``'s
  output (``[B, H/4, W/4, ndf]``), global InfoMax hidden layer of ``ndf`` units.

  Attributes:
    ndf: channels of every block.
    norm: 'spectral' (the SNGAN baseline) or 'none'.
    dtype: computation dtype (``None``: float32); params float32; low-precision logits cast to
      float32.
    aux_head: self-supervised heads, one of :data:`jaxgan.models.selfsup.AUX_HEADS`
      ('none': the plain SNGAN D).
    infomax_dim: size of the InfoMax projections (Mimicry's ``nrkhs``).
  """

  ndf: int = 128
  norm: str = 'spectral'
  dtype: Any = None
  aux_head: str = 'none'
  infomax_dim: int = 1024

  @property
  def batch_coupled(self) -> bool:
    """Never: the SNGAN D has no batch normalization."""
    return False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool, output: str = 'logits'):
    """Scores images ``[B, H, W, C]`` (H, W divisible by 4).

    Args:
      x: images ``[B, H, W, C]``.
      train: store the spectral-norm power-iteration state.
      output: 'logits' (the default); 'rotation' or 'infomax' need that ``aux_head``.

    Returns:
      Logits ``[B]``; rotation logits ``[B, 4]`` for ``output='rotation'``;
      ``(local [B, H/4, W/4, infomax_dim], global [B, infomax_dim])`` projected
      features for ``output='infomax'``.
    """
    if self.norm not in ('spectral', 'none'):
      raise ValueError(f"SNGANDiscriminator.norm must be 'spectral' or 'none', got {self.norm!r}.")
    selfsup.check_aux_head(self.aux_head, self.infomax_dim, 'SNGANDiscriminator')
    selfsup.check_output(self.aux_head, output, 'SNGANDiscriminator')
    if x.ndim != 4 or x.shape[1] % 4 or x.shape[2] % 4:
      raise ValueError(
        'SNGANDiscriminator expects images [B, H, W, C] with H and W divisible by 4, '
        f'got shape {tuple(x.shape)}.'
      )
    sn, dt = self.norm == 'spectral', self.dtype
    h = DBlock(self.ndf, True, optimized=True, spectral=sn, dtype=dt, name='block1')(x, train)
    h = DBlock(self.ndf, True, spectral=sn, dtype=dt, name='block2')(h, train)
    h = local_feat = DBlock(self.ndf, False, spectral=sn, dtype=dt, name='block3')(h, train)
    h = DBlock(self.ndf, False, spectral=sn, dtype=dt, name='block4')(h, train)
    h = jnp.sum(nn.relu(h), axis=(1, 2))
    h = self.perturb('features', h)
    heads = {}
    init = self.is_initializing()
    if selfsup.has_head(self, 'rotation') and (init or output == 'rotation'):
      heads['rotation'] = at_least_float32(
        selfsup.rotation_head(h, spectral=sn, train=train, kernel_init=_UNIT_INIT, dtype=dt)
      )
    if selfsup.has_head(self, 'infomax') and (init or output == 'infomax'):
      feats = selfsup.infomax_heads(
        local_feat,
        h,
        dim=self.infomax_dim,
        global_hidden=self.ndf,
        spectral=sn,
        train=train,
        kernel_init=_UNIT_INIT,
        dtype=dt,
      )
      heads['infomax'] = tuple(at_least_float32(f) for f in feats)
    if output != 'logits':
      return heads[output]
    l5 = nn.Dense(1, kernel_init=_UNIT_INIT, dtype=dt, name='l5')
    return at_least_float32(spectral_norm(l5, sn, train)(h)[:, 0])
