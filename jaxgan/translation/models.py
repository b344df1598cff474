"""CUT-style networks for unpaired image translation (Park et al., ECCV 2020).

* :class:`ResnetGenerator`: the ResNet encoder-decoder of CycleGAN/CUT, holding the PatchNCE
  projection heads, so they are trained by G's optimizer.
* :class:`PatchDiscriminator`: the PatchGAN D (``n_layers=3`` is the 70x70 one) with per-patch
  logits ``[B, h, w]``; plain stride-2 convs (CUT's ``--no_antialias`` form).
* Adapters to :class:`jaxgan.game.Game`: :func:`translation_g_apply` (G takes ``z = {'source':
  [B, H, W, C], ...}``, the batch's ``'latent'`` entry, and translates ``z['source']``) and
  :func:`patch_d_apply` (``[B]`` logits, the mean over patches, for a game that needs one logit
  per image; CUT's loss takes the patch logits themselves, ``Game.d_patch_logits``).

NCE feature layers (:data:`LAYER_NAMES`): CUT takes layers 0, 4, 8, 12, 16 of its 9-block
generator (``nn.Sequential`` indices): the padded input, the two downsampling convs' outputs
(before their norm) and the outputs of the first and fifth residual blocks. Here they are named
``'input'`` (unpadded: the padding only adds mirrored copies), ``'down1'``, ``'down2'`` and
``'block<i>'``; the default is ``('input', 'down1', 'down2', 'block0',
'block<min(4, n_blocks - 1)>')``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgan.game import make_apply

Array = jax.Array
LAYER_NAMES = ('input', 'down1', 'down2', 'block<i>')


def _reflect(x: Array, pad: int) -> Array:
  return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode='reflect')


def _norm(x: Array, eps: float = 1e-5) -> Array:
  """InstanceNorm2d(affine=False): per sample and channel over H, W (biased variance)."""
  mean = jnp.mean(x, axis=(1, 2), keepdims=True)
  var = jnp.mean(jnp.square(x - mean), axis=(1, 2), keepdims=True)
  return (x - mean) * jax.lax.rsqrt(var + eps)


def _upsample2x(x: Array) -> Array:
  """Bilinear 2x upsampling (CUT's blur ``Upsample``: taps 1/4, 3/4, half-pixel aligned)."""
  b, h, w, c = x.shape
  return jax.image.resize(x, (b, 2 * h, 2 * w, c), 'bilinear')


def kernel_init(gain: float | None):
  """CUT's initializer: Xavier normal scaled by ``gain`` (CUT: ``--init_type xavier
  --init_gain 0.02``, biases zero), ``std = gain * sqrt(2 / (fan_in + fan_out))``; ``None``
  gives Flax's default (LeCun normal)."""
  if gain is None:
    return nn.linear.default_kernel_init
  if not isinstance(gain, int | float) or isinstance(gain, bool) or not gain > 0:
    raise ValueError(f'init_gain must be > 0 or None (Flax default), got {gain!r} (CUT: 0.02).')
  return nn.initializers.variance_scaling(gain**2, 'fan_avg', 'normal')


def default_nce_layers(n_blocks: int) -> tuple[str, ...]:
  """CUT's layers 0, 4, 8, 12, 16 by name, for a generator with ``n_blocks`` blocks."""
  return ('input', 'down1', 'down2', 'block0', f'block{min(4, n_blocks - 1)}')


def check_nce_layers(layers: Sequence[str], n_blocks: int) -> tuple[str, ...]:
  """Validates NCE layer names against the generator; returns them as a tuple.

  Raises:
    ValueError: an unknown name or a block index ``>= n_blocks``.
  """
  valid = ['input', 'down1', 'down2'] + [f'block{i}' for i in range(n_blocks)]
  layers = tuple(layers)
  if not layers:
    raise ValueError(f'nce_layers must name at least one layer; choose from {valid}.')
  for name in layers:
    if name not in valid:
      raise ValueError(
        f'unknown NCE layer {name!r} for a generator with n_blocks={n_blocks}; choose from {valid}.'
      )
  if len(set(layers)) != len(layers):
    raise ValueError(f'nce_layers has a repeated name: {layers}.')
  return layers


class ResidualBlock(nn.Module):
  """``x + norm(conv3(relu(norm(conv3(x)))))`` with reflect padding."""

  features: int
  init_gain: float | None = 0.02

  @nn.compact
  def __call__(self, x: Array) -> Array:
    conv = functools.partial(nn.Conv, kernel_init=kernel_init(self.init_gain))
    h = conv(self.features, (3, 3), padding='VALID')(_reflect(x, 1))
    h = nn.relu(_norm(h))
    h = conv(self.features, (3, 3), padding='VALID')(_reflect(h, 1))
    return x + _norm(h)


class ResnetGenerator(nn.Module):
  """CUT's ResNet generator with its PatchNCE projection heads.

  Reflect pad + conv 7x7, two stride-2 3x3 convs down (padding 1, CUT's ``--no_antialias``),
  ``n_blocks`` residual blocks, two 2x upsamplings, reflect pad + conv 7x7, tanh; instance norm
  without affine parameters, ReLU. Each upsampling is CUT's default antialiased form, a bilinear
  2x resize (taps 1/4 and 3/4) then a stride-1 3x3 conv, not the ``--no_antialias_up`` transposed
  conv, whose kernel gradient XLA computes very slowly on CPU (76 ms against 14 ms for one 7 -> 14
  layer at batch 32). Shapes are exact for sizes divisible by 4 (28 -> 14 -> 7 -> 14 -> 28). The
  PatchNCE heads (:meth:`project`: per NCE layer a 2-layer MLP of ``mlp_units``, L2-normalized)
  are part of G's params.

  Attributes:
    width: channels after the stem (``ngf``; CUT: 64). The bottleneck has ``4 * width``.
    n_blocks: residual blocks (CUT: 9 at 256x256).
    out_channels: output channels (default 1, grayscale).
    nce_layers: encoder layers used by PatchNCE (:data:`LAYER_NAMES`); ``None`` for
      :func:`default_nce_layers`.
    mlp_units: width of the 2-layer projection heads (CUT: 256).
    init_gain: every conv and head kernel from :func:`kernel_init` (CUT: 0.02); ``None``
      for Flax's default initializer.
  """

  width: int = 16
  n_blocks: int = 2
  out_channels: int = 1
  nce_layers: tuple[str, ...] | None = None
  mlp_units: int = 256
  init_gain: float | None = 0.02

  def layers(self) -> tuple[str, ...]:
    """The NCE layer names in use."""
    if self.nce_layers is None:
      return default_nce_layers(self.n_blocks)
    return check_nce_layers(self.nce_layers, self.n_blocks)

  def setup(self):
    if min(self.width, self.n_blocks, self.mlp_units, self.out_channels) < 1:
      raise ValueError(
        f'ResnetGenerator needs width, n_blocks, mlp_units, out_channels >= 1; got '
        f'width={self.width}, out_channels={self.out_channels}, '
        f'n_blocks={self.n_blocks}, mlp_units={self.mlp_units}.'
      )
    w, init = self.width, kernel_init(self.init_gain)
    conv = functools.partial(nn.Conv, kernel_init=init)
    dense = functools.partial(nn.Dense, self.mlp_units, kernel_init=init)
    self.stem = conv(w, (7, 7), padding='VALID')
    self.down1 = conv(2 * w, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    self.down2 = conv(4 * w, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    self.blocks = [ResidualBlock(4 * w, self.init_gain) for _ in range(self.n_blocks)]
    self.up1 = conv(2 * w, (3, 3), padding=((1, 1), (1, 1)))
    self.up2 = conv(w, (3, 3), padding=((1, 1), (1, 1)))
    self.out_conv = conv(self.out_channels, (7, 7), padding='VALID')
    self.heads = [(dense(), dense()) for _ in range(len(self.layers()))]

  def _encode_all(self, x: Array) -> tuple[Array, dict[str, Array]]:
    if x.ndim != 4 or x.shape[1] % 4 or x.shape[2] % 4:
      raise ValueError(
        f'ResnetGenerator takes images [B, H, W, C] with H and W divisible by 4 (two '
        f'stride-2 downs), got shape {tuple(x.shape)}; pad or crop (e.g. 30 -> 32).'
      )
    feats = {'input': x}
    h = nn.relu(_norm(self.stem(_reflect(x, 3))))
    h = self.down1(h)
    feats['down1'] = h
    h = self.down2(nn.relu(_norm(h)))
    feats['down2'] = h
    h = nn.relu(_norm(h))
    for i, block in enumerate(self.blocks):
      h = block(h)
      feats[f'block{i}'] = h
    return h, feats

  def encode(self, x: Array) -> list[Array]:
    """Encoder features at :meth:`layers`, in that order.

    Args:
      x: images ``[B, H, W, C]``, H and W divisible by 4.

    Returns:
      One ``[B, h, w, c]`` array per NCE layer (``[B, H, W, C]`` for ``'input'``,
      ``[B, H/2, W/2, 2 width]`` for ``'down1'``, ``[B, H/4, W/4, 4 width]`` after).
    """
    _, feats = self._encode_all(x)
    return [feats[name] for name in self.layers()]

  def project(self, patches: Sequence[Array]) -> list[Array]:
    """The projection heads: per layer ``Dense-ReLU-Dense`` then L2 normalization.

    Args:
      patches: one ``[B, P, c_l]`` array of sampled feature vectors per NCE layer.

    Returns:
      One ``[B, P, mlp_units]`` array per layer, each vector of unit norm (CUT
      divides by ``norm + 1e-7``).
    """
    if len(patches) != len(self.heads):
      raise ValueError(f'project takes {len(self.heads)} layers of patches, got {len(patches)}.')
    out = []
    for (fc1, fc2), p in zip(self.heads, patches):
      h = fc2(nn.relu(fc1(p)))
      out.append(h / (jnp.linalg.norm(h, axis=-1, keepdims=True) + 1e-7))
    return out

  def translate_and_encode(self, x: Array) -> tuple[Array, list[Array]]:
    """``(G(x), encode(x))`` from one pass of the encoder."""
    h, feats = self._encode_all(x)
    h = nn.relu(_norm(self.up1(_upsample2x(h))))
    h = nn.relu(_norm(self.up2(_upsample2x(h))))
    return jnp.tanh(self.out_conv(_reflect(h, 3))), [feats[name] for name in self.layers()]

  def __call__(self, x: Array, train: bool = False) -> Array:
    """Translates images ``[B, H, W, C]`` in [-1, 1] to ``[B, H, W, out_channels]``."""
    del train  # instance norm: the same computation in both modes
    out, feats = self.translate_and_encode(x)
    if self.is_initializing():  # create the heads' params with G's
      self.project([f.reshape(f.shape[0], -1, f.shape[-1]) for f in feats])
    return out


def patch_map_size(size: int, n_layers: int) -> int:
  """Side of the PatchGAN logit map for an input side ``size`` (4x4 convs, padding 1)."""
  for _ in range(n_layers):
    size = (size + 2 - 4) // 2 + 1
  return size + 2 - 4 + 1 + 2 - 4 + 1


class PatchDiscriminator(nn.Module):
  """PatchGAN D: per-patch real/fake logits.

  ``conv4 s2 - LReLU``, then ``n_layers - 1`` times ``conv4 s2 - IN - LReLU``, then
  ``conv4 s1 - IN - LReLU`` and ``conv4 s1 -> 1`` (LReLU slope 0.2, padding 1,
  channels ``width * min(2^n, 8)``). Instance norm is per sample, so D treats samples
  independently (``Game.d_batch_coupled=False``).

  Attributes:
    width: channels of the first conv (``ndf``; CUT: 64).
    n_layers: stride-2 convs (3: the 70x70 PatchGAN; 2 for 28x28, a 5x5 map).
    init_gain: conv kernels from :func:`kernel_init` (CUT: 0.02); ``None`` for Flax's default.
  """

  width: int = 16
  n_layers: int = 2
  init_gain: float | None = 0.02

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    """Per-patch logits ``[B, h, w]`` (:func:`patch_map_size`) for images ``[B, H, W, C]``."""
    del train
    if x.ndim != 4:
      raise ValueError(f'PatchDiscriminator takes images [B, H, W, C], got {tuple(x.shape)}.')
    side = min(patch_map_size(x.shape[1], self.n_layers), patch_map_size(x.shape[2], self.n_layers))
    if side < 1:
      raise ValueError(
        f'PatchDiscriminator with n_layers={self.n_layers} has no output for {x.shape[1]}x'
        f'{x.shape[2]} images; use fewer layers (28x28: n_layers <= 2).'
      )
    pad = ((1, 1), (1, 1))
    conv = functools.partial(
      nn.Conv, kernel_size=(4, 4), padding=pad, kernel_init=kernel_init(self.init_gain)
    )
    h = nn.leaky_relu(conv(self.width, strides=(2, 2))(x), 0.2)
    for n in range(1, self.n_layers):
      h = conv(self.width * min(2**n, 8), strides=(2, 2))(h)
      h = nn.leaky_relu(_norm(h), 0.2)
    h = conv(self.width * min(2**self.n_layers, 8))(h)
    h = nn.leaky_relu(_norm(h), 0.2)
    return conv(1)(h)[..., 0]


def patch_d_apply(module: PatchDiscriminator):
  """D's apply for :class:`jaxgan.game.Game`: ``[B]`` = mean of the per-patch logits.

  This mean is also the negative energy CoopInit's chain ascends (``U(x) = -mean patch logit``).
  A loss on it is not CUT's: with LSGAN it differs from the per-patch MSE by the patch variance,
  ``mean_i (p_i - c)^2 = (mean p - c)^2 + var(p)``. CUT's own loss takes every patch logit
  (``make_apply(module)`` in a ``Game(d_patch_logits=True)``, as
  :func:`~jaxgan.translation.cut.cut_game` does by default).
  """
  apply = make_apply(module)

  def d_apply(variables, x, *, train, rngs=None):
    logits, new_state = apply(variables, x, train=train, rngs=rngs)
    return jnp.mean(logits, axis=(1, 2)), new_state

  return d_apply


def translation_g_apply(module: nn.Module):
  """G's apply for :class:`jaxgan.game.Game`: ``z = {'source': [B, H, W, C], ...}`` -> images."""
  apply = make_apply(module)

  def g_apply(variables, z, *, train, rngs=None):
    if not isinstance(z, dict) or 'source' not in z:
      got = sorted(z) if isinstance(z, dict) else type(z).__name__
      raise ValueError(
        f"a translation G takes z = {{'source': images, ...}} (the batch's 'latent' entry), "
        f'got {got}; feed batches from jaxgan.data.mnist_translation or add '
        "batch['latent'] = {'source': ..., 'target': ...}."
      )
    return apply(variables, z['source'], train=train, rngs=rngs)

  return g_apply
