"""Inception-v3 of the standard FID network, in Flax.

The network of the TensorFlow graph ``inception-2015-12-05`` (Szegedy et al., CVPR 2016; the FID
of Heusel et al., NeurIPS 2017) as ported to PyTorch by pytorch-fid (``FIDInceptionV3``, weights
``pt_inception-2015-12-05-6726825d.pth``), not torchvision's Inception-v3, from which it differs:
the pool branch of ``Mixed_5b/c/d``, ``Mixed_6b..e`` and ``Mixed_7b`` averages over the valid
window only (TensorFlow's average pool), ``Mixed_7c``'s pool branch is a 3x3 *max* pool, and the
classifier has 1008 outputs.

Outputs: ``'features'``, the 2048-d global average pool of ``Mixed_7c`` (pool3, the FID
features), and ``'logits'`` ``[B, 1008]`` (the Inception Score classifier). Submodule names follow
the PyTorch module names (``Conv2d_1a_3x3``, ``Mixed_5b/branch1x1``, ``fc``, ...), so
:mod:`jaxgan.metrics.convert_inception` maps keys one to one. Input: NHWC images in [-1, 1] (the
range pytorch-fid maps its input to), 1 or 3 channels, resized to 299x299 by
:func:`resize_for_inception`. Convolutions run at ``Precision.HIGHEST``. Random-initialised params
only serve tests; load real weights with
:func:`jaxgan.metrics.convert_inception.load_inception_variables`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
INPUT_SIZE = 299
FEATURE_DIM = 2048
NUM_LOGITS = 1008


def resize_for_inception(images: Array, size: int = INPUT_SIZE) -> Array:
  """Bilinear resize ``[B, H, W, C]`` -> ``[B, size, size, 3]`` (half-pixel centres, no antialias).

  What pytorch-fid's ``F.interpolate(..., mode='bilinear', align_corners=False)`` computes.
  One-channel images are repeated to three channels.
  """
  if images.shape[-1] == 1:
    images = jnp.repeat(images, 3, axis=-1)
  b = images.shape[0]
  if images.shape[1:3] == (size, size):
    return images
  return jax.image.resize(images, (b, size, size, 3), method='bilinear', antialias=False)


class BasicConv(nn.Module):
  """Conv (no bias) + BatchNorm (eps 1e-3) + ReLU, as torchvision's ``BasicConv2d``."""

  features: int
  kernel: tuple[int, int]
  strides: tuple[int, int] = (1, 1)
  padding: tuple[int, int] = (0, 0)

  @nn.compact
  def __call__(self, x: Array) -> Array:
    ph, pw = self.padding
    x = nn.Conv(
      self.features,
      self.kernel,
      self.strides,
      padding=((ph, ph), (pw, pw)),
      use_bias=False,
      precision=jax.lax.Precision.HIGHEST,
      name='conv',
    )(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name='bn')(x)
    return nn.relu(x)


def _avg_pool_valid(x: Array) -> Array:
  # TensorFlow-style: padded positions are not counted in the mean.
  return nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_same(x: Array) -> Array:
  return nn.max_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)))


def _max_pool_reduce(x: Array) -> Array:
  return nn.max_pool(x, (3, 3), (2, 2))


class InceptionA(nn.Module):
  pool_features: int

  @nn.compact
  def __call__(self, x: Array) -> Array:
    b1 = BasicConv(64, (1, 1), name='branch1x1')(x)
    b5 = BasicConv(48, (1, 1), name='branch5x5_1')(x)
    b5 = BasicConv(64, (5, 5), padding=(2, 2), name='branch5x5_2')(b5)
    b3 = BasicConv(64, (1, 1), name='branch3x3dbl_1')(x)
    b3 = BasicConv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(b3)
    b3 = BasicConv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_3')(b3)
    bp = BasicConv(self.pool_features, (1, 1), name='branch_pool')(_avg_pool_valid(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  @nn.compact
  def __call__(self, x: Array) -> Array:
    b3 = BasicConv(384, (3, 3), strides=(2, 2), name='branch3x3')(x)
    bd = BasicConv(64, (1, 1), name='branch3x3dbl_1')(x)
    bd = BasicConv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = BasicConv(96, (3, 3), strides=(2, 2), name='branch3x3dbl_3')(bd)
    return jnp.concatenate([b3, bd, _max_pool_reduce(x)], axis=-1)


class InceptionC(nn.Module):
  channels_7x7: int

  @nn.compact
  def __call__(self, x: Array) -> Array:
    c7 = self.channels_7x7
    b1 = BasicConv(192, (1, 1), name='branch1x1')(x)
    b7 = BasicConv(c7, (1, 1), name='branch7x7_1')(x)
    b7 = BasicConv(c7, (1, 7), padding=(0, 3), name='branch7x7_2')(b7)
    b7 = BasicConv(192, (7, 1), padding=(3, 0), name='branch7x7_3')(b7)
    bd = BasicConv(c7, (1, 1), name='branch7x7dbl_1')(x)
    bd = BasicConv(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_2')(bd)
    bd = BasicConv(c7, (1, 7), padding=(0, 3), name='branch7x7dbl_3')(bd)
    bd = BasicConv(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_4')(bd)
    bd = BasicConv(192, (1, 7), padding=(0, 3), name='branch7x7dbl_5')(bd)
    bp = BasicConv(192, (1, 1), name='branch_pool')(_avg_pool_valid(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  @nn.compact
  def __call__(self, x: Array) -> Array:
    b3 = BasicConv(192, (1, 1), name='branch3x3_1')(x)
    b3 = BasicConv(320, (3, 3), strides=(2, 2), name='branch3x3_2')(b3)
    b7 = BasicConv(192, (1, 1), name='branch7x7x3_1')(x)
    b7 = BasicConv(192, (1, 7), padding=(0, 3), name='branch7x7x3_2')(b7)
    b7 = BasicConv(192, (7, 1), padding=(3, 0), name='branch7x7x3_3')(b7)
    b7 = BasicConv(192, (3, 3), strides=(2, 2), name='branch7x7x3_4')(b7)
    return jnp.concatenate([b3, b7, _max_pool_reduce(x)], axis=-1)


class InceptionE(nn.Module):
  """Last blocks; ``max_pool`` selects the FID network's second-E variant."""

  max_pool: bool = False

  @nn.compact
  def __call__(self, x: Array) -> Array:
    b1 = BasicConv(320, (1, 1), name='branch1x1')(x)
    b3 = BasicConv(384, (1, 1), name='branch3x3_1')(x)
    b3 = jnp.concatenate(
      [
        BasicConv(384, (1, 3), padding=(0, 1), name='branch3x3_2a')(b3),
        BasicConv(384, (3, 1), padding=(1, 0), name='branch3x3_2b')(b3),
      ],
      axis=-1,
    )
    bd = BasicConv(448, (1, 1), name='branch3x3dbl_1')(x)
    bd = BasicConv(384, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = jnp.concatenate(
      [
        BasicConv(384, (1, 3), padding=(0, 1), name='branch3x3dbl_3a')(bd),
        BasicConv(384, (3, 1), padding=(1, 0), name='branch3x3dbl_3b')(bd),
      ],
      axis=-1,
    )
    pooled = _max_pool_same(x) if self.max_pool else _avg_pool_valid(x)
    bp = BasicConv(192, (1, 1), name='branch_pool')(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3(nn.Module):
  """The FID Inception-v3: images -> pool3 features and 1008 logits.

  Attributes:
    resize: resize inputs to 299x299 (bilinear, half-pixel centres, no
      antialias). With ``False`` the input is used at its own size, which
      must be at least 75x75.
  """

  resize: bool = True

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> dict[str, Array]:
    """Features and logits.

    Args:
      x: images ``[B, H, W, C]`` in [-1, 1], ``C`` in {1, 3}.
      train: must be False (the network is used for inference only; batch
        norm uses its stored statistics).

    Returns:
      ``{'features': [B, 2048], 'logits': [B, 1008]}``.
    """
    if train:
      raise ValueError(
        'InceptionV3 is an inference-only feature network; call it with train=False.'
      )
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
      raise ValueError(f'InceptionV3 takes images [B, H, W, 1 or 3]; got shape {x.shape}.')
    if self.resize:
      x = resize_for_inception(x)
    elif x.shape[-1] == 1:
      x = jnp.repeat(x, 3, axis=-1)
    if min(x.shape[1:3]) < 75:
      raise ValueError(
        f'InceptionV3 needs inputs of at least 75x75; got {x.shape[1:3]}. Use resize=True.'
      )
    x = BasicConv(32, (3, 3), strides=(2, 2), name='Conv2d_1a_3x3')(x)
    x = BasicConv(32, (3, 3), name='Conv2d_2a_3x3')(x)
    x = BasicConv(64, (3, 3), padding=(1, 1), name='Conv2d_2b_3x3')(x)
    x = _max_pool_reduce(x)
    x = BasicConv(80, (1, 1), name='Conv2d_3b_1x1')(x)
    x = BasicConv(192, (3, 3), name='Conv2d_4a_3x3')(x)
    x = _max_pool_reduce(x)
    x = InceptionA(32, name='Mixed_5b')(x)
    x = InceptionA(64, name='Mixed_5c')(x)
    x = InceptionA(64, name='Mixed_5d')(x)
    x = InceptionB(name='Mixed_6a')(x)
    x = InceptionC(128, name='Mixed_6b')(x)
    x = InceptionC(160, name='Mixed_6c')(x)
    x = InceptionC(160, name='Mixed_6d')(x)
    x = InceptionC(192, name='Mixed_6e')(x)
    x = InceptionD(name='Mixed_7a')(x)
    x = InceptionE(max_pool=False, name='Mixed_7b')(x)
    x = InceptionE(max_pool=True, name='Mixed_7c')(x)
    features = jnp.mean(x, axis=(1, 2))
    logits = nn.Dense(NUM_LOGITS, precision=jax.lax.Precision.HIGHEST, name='fc')(features)
    return {'features': features, 'logits': logits}
