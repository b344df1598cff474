"""StyleGAN2 generator and discriminator (Karras et al., CVPR 2020), 32 to 256 pixels.

Configs E/F as written in stylegan2-ada-pytorch's ``training/networks.py``: a skip generator with
mapping network, modulated convs and FIR upsampling, and a residual discriminator with a minibatch
standard-deviation layer; the class docstrings give the layers. Channels at resolution ``r`` are
``min(channel_base // r, channel_max)`` (config F ``channel_base = 32768``, E 16384,
``channel_max = 512``). Every weight has an equalized learning rate (:class:`EqualizedDense`,
:class:`EqualizedConv`: stored ``~ N(0, 1/lr_mul^2)``, multiplied by ``lr_mul / sqrt(fan_in)``).
At 256x256, config F, unconditional: G 30,034,338 params (mapping 2,101,248), D 28,864,129, the
reference's per-layer counts (``tests/test_stylegan2.py``).

Modulated convs run in the reference's non-fused form (activations scaled by the styles, one
shared convolution, outputs demodulated), equal to a per-sample convolution with the modulated
weights (:func:`modulate_weights`); ``conv_clamp`` and mixed precision are not reproduced.
Regularizers with the reference's constants: :func:`r1_penalty` (``gamma / 2 * E ||grad_x
D(x)||^2`` every :data:`R1_INTERVAL` = 16 D steps), :func:`path_length_penalty` (every
:data:`PL_INTERVAL` = 4 G steps, weight 2, running mean decay 0.01), :func:`lazy_term` and
:func:`lazy_adam_hparams` (how a train step uses them).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxgan.models.conditional import check_labels

Array = jax.Array

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
FIR_TAPS = (1.0, 3.0, 3.0, 1.0)
NOISE_MODES = ('random', 'none')
W_AVG_COLLECTION = 'w_avg'

# Regularization constants (stylegan2-ada-pytorch loss.py / training_loop.py defaults).
R1_INTERVAL = 16
R1_GAMMA = 10.0  # config F (FFHQ 1024); see auto_r1_gamma for the resolution-based rule
PL_INTERVAL = 4
PL_WEIGHT = 2.0
PL_DECAY = 0.01
PL_BATCH_SHRINK = 2
STYLE_MIXING_PROB = 0.9

REFERENCE_CONFIGS = {
  # StyleGAN2 config F (stylegan2-ada-pytorch cfg=stylegan2).
  'config_f': dict(channel_base=32768, channel_max=512, mapping_layers=8, mbstd_group_size=4),
  # Config E: the same structure with half the feature maps at high resolution.
  'config_e': dict(channel_base=16384, channel_max=512, mapping_layers=8, mbstd_group_size=4),
  # stylegan2-ada-pytorch cfg=paper256 (fmaps 0.5) and cfg=cifar.
  'paper256': dict(channel_base=16384, channel_max=512, mapping_layers=8, mbstd_group_size=8),
  'cifar': dict(channel_base=32768, channel_max=512, mapping_layers=2, mbstd_group_size=32),
}


def auto_r1_gamma(resolution: int, batch_size: int) -> float:
  """stylegan2-ada-pytorch's ``cfg=auto`` R1 weight: ``0.0002 * resolution^2 / batch_size``."""
  if resolution <= 0 or batch_size <= 0:
    raise ValueError(f'auto_r1_gamma needs positive sizes, got {resolution}, {batch_size}.')
  return 0.0002 * resolution**2 / batch_size


def num_styles(resolution: int) -> int:
  """Styles ``w`` the skip generator consumes: ``2 * log2(resolution) - 2``."""
  _check_resolution(resolution, 'num_styles')
  return 2 * int(math.log2(resolution)) - 2


def channels_at(res: int, channel_base: int, channel_max: int) -> int:
  """Feature maps at resolution ``res``: ``min(channel_base // res, channel_max)``."""
  return min(channel_base // res, channel_max)


def _check_resolution(resolution: int, where: str) -> None:
  if resolution < 8 or resolution > 1024 or resolution & (resolution - 1):
    raise ValueError(
      f'{where}: resolution must be a power of two from 8 to 1024 (tested 32..256), '
      f'got {resolution!r}.'
    )


def normalize_2nd_moment(x: Array, eps: float = 1e-8) -> Array:
  """``x / sqrt(mean(x^2, -1) + eps)`` per row."""
  return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)


def _lrelu(x: Array, gain: float = 1.0) -> Array:
  return jax.nn.leaky_relu(x, LRELU_SLOPE) * (LRELU_GAIN * gain)


# ----------------------------------------------------------------------------
# Resampling with the [1, 3, 3, 1] FIR filter
# ----------------------------------------------------------------------------


def _fir_axis(x: Array, taps: np.ndarray, axis: int) -> Array:
  n = x.shape[axis] - len(taps) + 1
  out = 0.0
  for k, t in enumerate(taps):
    out = out + float(t) * jax.lax.slice_in_dim(x, k, k + n, axis=axis)
  return out


def upfirdn2d(
  x: Array, *, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0), gain: float = 1.0
) -> Array:
  """Upsample (zero insertion), pad, FIR-filter with [1, 3, 3, 1], downsample.

  The reference's ``upfirdn2d`` with ``f = setup_filter([1, 3, 3, 1])`` (the 2-D
  filter sums to 1, times ``gain``), on NHWC tensors.

  Args:
    x: ``[B, H, W, C]``.
    up: insert ``up - 1`` zeros after every sample (both spatial axes).
    down: keep every ``down``-th output sample.
    pad: zeros added before and after, on both spatial axes, after upsampling.
    gain: overall gain of the filter (``up**2`` for upsampling).

  Returns:
    ``[B, H', W', C]`` with ``H' = (H * up + pad[0] + pad[1] - 4) // down + 1``.
  """
  zero = jnp.zeros((), x.dtype)
  cfg_up = (0, up - 1, up - 1)
  x = jax.lax.pad(x, zero, [(0, 0, 0), cfg_up, cfg_up, (0, 0, 0)])
  p = (pad[0], pad[1], 0)
  x = jax.lax.pad(x, zero, [(0, 0, 0), p, p, (0, 0, 0)])
  taps = np.asarray(FIR_TAPS) / np.sum(FIR_TAPS) * math.sqrt(gain)
  x = _fir_axis(_fir_axis(x, taps, 1), taps, 2)
  if down > 1:
    x = x[:, ::down, ::down]
  return x


def upsample2d(x: Array) -> Array:
  """``[B, H, W, C] -> [B, 2H, 2W, C]``: the reference's ``upfirdn2d.upsample2d``."""
  return upfirdn2d(x, up=2, pad=(2, 1), gain=4.0)


_DN = ('NHWC', 'HWIO', 'NHWC')


def _conv(x: Array, kernel: Array, *, up: int = 1, down: int = 1) -> Array:
  """Convolution with the reference's resampling (``conv2d_resample``), ``k`` odd.

  ``up=2`` (3x3): correlation with the zero-interleaved input (a transposed
  convolution, ``2H + 1``; the reference's up to a flip of its random kernel), then
  the FIR filter (``2H``). ``down=2``: the FIR
  filter, then a stride-2 convolution (a 1x1 kernel: filter and subsample
  first). Otherwise a 'same' convolution.
  """
  k = kernel.shape[0]
  if up == 2:
    zero = jnp.zeros((), x.dtype)
    cfg = (k - 1, k - 1, 1)
    x = jax.lax.pad(x, zero, [(0, 0, 0), cfg, cfg, (0, 0, 0)])
    x = jax.lax.conv_general_dilated(x, kernel, (1, 1), 'VALID', dimension_numbers=_DN)
    return upfirdn2d(x, pad=(1, 1), gain=4.0)
  if down == 2:
    if k == 1:
      x = upfirdn2d(x, down=2, pad=(1, 1))
      return jax.lax.conv_general_dilated(x, kernel, (1, 1), 'VALID', dimension_numbers=_DN)
    x = upfirdn2d(x, pad=(2, 2))
    return jax.lax.conv_general_dilated(x, kernel, (2, 2), 'VALID', dimension_numbers=_DN)
  p = k // 2
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), ((p, p), (p, p)), dimension_numbers=_DN)


# ----------------------------------------------------------------------------
# Equalized-learning-rate layers
# ----------------------------------------------------------------------------


class EqualizedDense(nn.Module):
  """Dense layer with equalized learning rate (the reference's FullyConnectedLayer).

  ``y = act(x @ (kernel * lr_mul / sqrt(fan_in)) + bias * lr_mul)`` with
  ``kernel ~ N(0, 1 / lr_mul^2)`` and ``bias = bias_init / lr_mul`` stored;
  ``act`` is identity or leaky ReLU (slope 0.2) times sqrt(2).

  Attributes:
    features: outputs.
    use_bias: add a bias.
    activation: 'linear' or 'lrelu'.
    lr_mul: learning-rate multiplier (0.01 in the mapping network).
    bias_init: initial value of the effective bias (1 for style affines).
  """

  features: int
  use_bias: bool = True
  activation: str = 'linear'
  lr_mul: float = 1.0
  bias_init: float = 0.0

  @nn.compact
  def __call__(self, x: Array) -> Array:
    if self.activation not in ('linear', 'lrelu'):
      raise ValueError(
        f"EqualizedDense.activation must be 'linear' or 'lrelu', got {self.activation!r}."
      )
    fan_in = x.shape[-1]
    kernel = self.param(
      'kernel', nn.initializers.normal(1.0 / self.lr_mul), (fan_in, self.features)
    )
    y = x @ (kernel * (self.lr_mul / math.sqrt(fan_in))).astype(x.dtype)
    if self.use_bias:
      b0 = self.bias_init / self.lr_mul
      bias = self.param('bias', nn.initializers.constant(b0), (self.features,))
      y = y + (bias * self.lr_mul).astype(y.dtype)
    return _lrelu(y) if self.activation == 'lrelu' else y


class EqualizedConv(nn.Module):
  """Conv layer with equalized learning rate (the reference's Conv2dLayer).

  ``y = act(conv(x, kernel / sqrt(fan_in)) + bias) * gain``; ``kernel ~ N(0, 1)``
  ``[k, k, in, features]``; ``down=2`` resamples as the reference.

  Attributes:
    features: output channels.
    kernel_size: odd ``k``.
    use_bias: add a bias.
    activation: 'linear' or 'lrelu'.
    down: 1 or 2.
  """

  features: int
  kernel_size: int = 3
  use_bias: bool = True
  activation: str = 'lrelu'
  down: int = 1

  @nn.compact
  def __call__(self, x: Array, gain: float = 1.0) -> Array:
    k, cin = self.kernel_size, x.shape[-1]
    kernel = self.param('weight', nn.initializers.normal(1.0), (k, k, cin, self.features))
    y = _conv(x, (kernel / math.sqrt(cin * k * k)).astype(x.dtype), down=self.down)
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros_init(), (self.features,)).astype(y.dtype)
    return _lrelu(y, gain) if self.activation == 'lrelu' else y * gain


# ----------------------------------------------------------------------------
# Modulated convolution and the synthesis network
# ----------------------------------------------------------------------------


def modulate_weights(weight: Array, styles: Array, demodulate: bool = True) -> Array:
  """Per-sample modulated (and demodulated) weights.

  Args:
    weight: ``[k, k, in, out]``.
    styles: ``[B, in]``.
    demodulate: scale each output channel to unit norm (``eps = 1e-8``).

  Returns:
    ``[B, k, k, in, out]``: ``w * s_in`` and, demodulated, divided by
    ``sqrt(sum_{k, k, in} (w * s_in)^2 + 1e-8)`` per sample and output channel.
  """
  w = weight[None] * styles[:, None, None, :, None]
  if demodulate:
    w = w * jax.lax.rsqrt(jnp.sum(jnp.square(w), axis=(1, 2, 3), keepdims=True) + 1e-8)
  return w


def modulated_conv(
  x: Array, weight: Array, styles: Array, *, demodulate: bool = True, up: int = 1
) -> Array:
  """Modulated convolution in the non-fused form (activations scaled).

  Args:
    x: ``[B, H, W, in]``.
    weight: ``[k, k, in, out]``.
    styles: ``[B, in]``.
    demodulate: apply the demodulation coefficients to the output.
    up: 1, or 2 for the upsampling conv.

  Returns:
    ``[B, H * up, W * up, out]``, equal to convolving each sample with its
    :func:`modulate_weights`.
  """
  y = _conv(x * styles[:, None, None, :].astype(x.dtype), weight.astype(x.dtype), up=up)
  if demodulate:
    d = jax.lax.rsqrt(jnp.einsum('bi,hwio->bo', jnp.square(styles), jnp.square(weight)) + 1e-8)
    y = y * d[:, None, None, :].astype(y.dtype)
  return y


class SynthesisLayer(nn.Module):
  """Modulated 3x3 conv + noise + bias + leaky ReLU (the reference's SynthesisLayer).

  Attributes:
    features: output channels.
    up: 1 or 2.
    use_noise: add per-pixel noise times the learned ``noise_strength``.
  """

  features: int
  up: int = 1
  use_noise: bool = True

  @nn.compact
  def __call__(self, x: Array, w: Array, noise_key: Array | None) -> Array:
    cin = x.shape[-1]
    styles = EqualizedDense(cin, bias_init=1.0, name='affine')(w)
    weight = self.param('weight', nn.initializers.normal(1.0), (3, 3, cin, self.features))
    y = modulated_conv(x, weight, styles, up=self.up)
    if self.use_noise:
      strength = self.param('noise_strength', nn.initializers.zeros_init(), ())
      if noise_key is not None:
        noise = jax.random.normal(noise_key, (*y.shape[:3], 1), y.dtype)
        y = y + noise * strength.astype(y.dtype)
    y = y + self.param('bias', nn.initializers.zeros_init(), (self.features,)).astype(y.dtype)
    return _lrelu(y)


class ToRGB(nn.Module):
  """Modulated 1x1 conv to image channels, no demodulation, bias, no activation."""

  channels: int

  @nn.compact
  def __call__(self, x: Array, w: Array) -> Array:
    cin = x.shape[-1]
    styles = EqualizedDense(cin, bias_init=1.0, name='affine')(w) / math.sqrt(cin)
    weight = self.param('weight', nn.initializers.normal(1.0), (1, 1, cin, self.channels))
    y = modulated_conv(x, weight, styles, demodulate=False)
    return y + self.param('bias', nn.initializers.zeros_init(), (self.channels,)).astype(y.dtype)


class SynthesisNetwork(nn.Module):
  """Skip synthesis network: styles ``[B, num_ws, w_dim]`` -> images ``[B, R, R, C]``.

  Attributes:
    resolution: output resolution.
    channels: image channels.
    channel_base: channel multiplier.
    channel_max: channel cap.
  """

  resolution: int
  channels: int = 3
  channel_base: int = 32768
  channel_max: int = 512

  @nn.compact
  def __call__(self, ws: Array, noise_key: Array | None) -> Array:
    def chans(r):
      return channels_at(r, self.channel_base, self.channel_max)

    def key(i):
      return None if noise_key is None else jax.random.fold_in(noise_key, i)

    b = ws.shape[0]
    c4 = chans(4)
    const = self.param('const', nn.initializers.normal(1.0), (4, 4, c4))
    x = jnp.broadcast_to(const.astype(ws.dtype), (b, 4, 4, c4))
    x = SynthesisLayer(c4, name='b4_conv1')(x, ws[:, 0], key(0))
    x = self.perturb('features', x)
    img = ToRGB(self.channels, name='b4_torgb')(x, ws[:, 1])
    idx, layer = 1, 1
    res = 8
    while res <= self.resolution:
      c = chans(res)
      x = SynthesisLayer(c, up=2, name=f'b{res}_conv0')(x, ws[:, idx], key(layer))
      x = SynthesisLayer(c, name=f'b{res}_conv1')(x, ws[:, idx + 1], key(layer + 1))
      img = upsample2d(img) + ToRGB(self.channels, name=f'b{res}_torgb')(x, ws[:, idx + 2])
      idx, layer, res = idx + 2, layer + 2, res * 2
    return img


class MappingNetwork(nn.Module):
  """``z`` (and labels) -> ``w [B, w_dim]`` through equalized-lr dense layers.

  Attributes:
    w_dim: output size.
    num_layers: dense layers.
    num_classes: class count (0: no label input; with no ``z`` either, the
      discriminator's label mapping).
    lr_mul: learning-rate multiplier of the layers.
    embed_features: size of the label embedding (``None``: ``w_dim``).
    layer_features: hidden size (``None``: ``w_dim``).
  """

  w_dim: int = 512
  num_layers: int = 8
  num_classes: int = 0
  lr_mul: float = 0.01
  embed_features: int | None = None
  layer_features: int | None = None

  @nn.compact
  def __call__(self, z: Array | None, y: Array | None) -> Array:
    parts = []
    if z is not None:
      parts.append(normalize_2nd_moment(z.astype(jnp.float32)))
    if self.num_classes > 0:
      onehot = jax.nn.one_hot(y, self.num_classes, dtype=jnp.float32)
      e = EqualizedDense(self.embed_features or self.w_dim, name='embed')(onehot)
      parts.append(normalize_2nd_moment(e))
    x = jnp.concatenate(parts, axis=1)
    hidden = self.layer_features or self.w_dim
    for i in range(self.num_layers):
      features = self.w_dim if i == self.num_layers - 1 else hidden
      x = EqualizedDense(features, activation='lrelu', lr_mul=self.lr_mul, name=f'fc{i}')(x)
    return x


def _key_from_latents(z: Array) -> Array:
  """A PRNG key derived from the bits of ``z`` (no gradient)."""
  bits = jax.lax.bitcast_convert_type(jax.lax.stop_gradient(z).astype(jnp.float32), jnp.uint32)
  mult = (2 * jnp.arange(bits.size, dtype=jnp.uint32) + 1) * jnp.uint32(2654435761)
  seed = jnp.sum(bits.reshape(-1) * mult, dtype=jnp.uint32)
  return jax.random.fold_in(jax.random.PRNGKey(0x5EED), seed)


class StyleGAN2Generator(nn.Module):
  """StyleGAN2 generator: ``z [B, nz]`` (labels ``y [B]``) -> images ``[B, R, R, C]``.

  Mapping: ``z`` normalized by its second moment (when conditional, concatenated with a normalized
  linear embedding of the one-hot label), ``mapping_layers`` equalized-lr dense layers with leaky
  ReLU and lr multiplier 0.01 -> ``w``, broadcast to ``num_ws`` styles; ``w_avg`` (decay 0.995) is
  kept in the non-trained collection ``'w_avg'``. Synthesis (skip): a learned constant 4x4, then
  per resolution two modulated 3x3 convs (the first upsamples: transposed conv + FIR [1, 3, 3, 1])
  with per-pixel noise (``noise_strength`` starts at 0), bias and leaky ReLU x sqrt(2), and a
  modulated 1x1 ``torgb`` (no demodulation) added to the FIR-upsampled image of the previous
  resolution. Noise and style mixing draw from the rng stream ``'noise'`` when the caller passes
  one, else from the bits of ``z``. AdvAug's feature hook is the 4x4 features after the first block.

  Train mode: style mixing with probability ``style_mixing_prob`` (one crossover
  point per batch, the second ``z`` fresh normal) and an update of ``w_avg``
  (when the ``'w_avg'`` collection is mutable, as :func:`jaxgan.game.make_apply`
  makes it). Eval mode: truncation with ``truncation_psi`` /
  ``truncation_cutoff``; :meth:`sample` takes them as arguments. Outputs are not
  squashed (the reference's images are unbounded; they are clipped to [-1, 1]
  for display only), so the generator's output matches the reference.

  Attributes:
    resolution: output resolution (power of two, 32..256 tested).
    channels: image channels.
    num_classes: class count (0: unconditional).
    w_dim: size of ``w``.
    mapping_layers: 8 (configs E/F), 2 (the CIFAR config).
    mapping_lr_mul: learning-rate multiplier of the mapping layers.
    channel_base: 32768 (config F), 16384 (config E).
    channel_max: channel cap (512).
    style_mixing_prob: mixing probability in train mode (0.9; 0 disables).
    w_avg_beta: decay of the ``w_avg`` moving average.
    truncation_psi: eval-mode truncation (1: none).
    truncation_cutoff: truncate only the first styles (``None``: all).
    noise_mode: 'random' or 'none'.
  """

  resolution: int = 256
  channels: int = 3
  num_classes: int = 0
  w_dim: int = 512
  mapping_layers: int = 8
  mapping_lr_mul: float = 0.01
  channel_base: int = 32768
  channel_max: int = 512
  style_mixing_prob: float = STYLE_MIXING_PROB
  w_avg_beta: float = 0.995
  truncation_psi: float = 1.0
  truncation_cutoff: int | None = None
  noise_mode: str = 'random'

  @property
  def num_ws(self) -> int:
    """Number of styles the synthesis network consumes."""
    return num_styles(self.resolution)

  def setup(self):
    _check_resolution(self.resolution, 'StyleGAN2Generator')
    if self.noise_mode not in NOISE_MODES:
      raise ValueError(
        f'StyleGAN2Generator.noise_mode must be one of {list(NOISE_MODES)}, got {self.noise_mode!r}.'
      )
    if not 0.0 <= self.style_mixing_prob <= 1.0:
      raise ValueError(f'style_mixing_prob must be in [0, 1], got {self.style_mixing_prob}.')
    self.mapping_net = MappingNetwork(
      self.w_dim, self.mapping_layers, self.num_classes, self.mapping_lr_mul, name='mapping'
    )
    self.synthesis_net = SynthesisNetwork(
      self.resolution, self.channels, self.channel_base, self.channel_max, name='synthesis'
    )
    self.w_avg = self.variable(
      W_AVG_COLLECTION, 'w_avg', lambda: jnp.zeros((self.w_dim,), jnp.float32)
    )

  def _check(self, z: Array, y: Array | None) -> None:
    if z.ndim != 2:
      raise ValueError(f'StyleGAN2Generator expects latents [B, nz], got shape {tuple(z.shape)}.')
    check_labels(y, self.num_classes, z.shape[0], 'StyleGAN2Generator')

  def _base_key(self, z: Array) -> Array:
    return self.make_rng('noise') if self.has_rng('noise') else _key_from_latents(z)

  def mapping(
    self,
    z: Array,
    y: Array | None = None,
    *,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    update_w_avg: bool = False,
  ) -> Array:
    """``z [B, nz]`` -> styles ``[B, num_ws, w_dim]`` (broadcast ``w``, truncated).

    ``update_w_avg`` moves ``w_avg`` towards the batch mean of ``w`` when the
    ``'w_avg'`` collection is mutable.
    """
    self._check(z, y)
    w = self.mapping_net(z, y)
    if update_w_avg and self.is_mutable_collection(W_AVG_COLLECTION) and not self.is_initializing():
      mean = jnp.mean(jax.lax.stop_gradient(w), axis=0)
      self.w_avg.value = mean + self.w_avg_beta * (self.w_avg.value - mean)
    ws = jnp.broadcast_to(w[:, None, :], (w.shape[0], self.num_ws, self.w_dim))
    if truncation_psi != 1.0:
      avg = self.w_avg.value.astype(ws.dtype)
      cut = self.num_ws if truncation_cutoff is None else truncation_cutoff
      layer = jnp.arange(self.num_ws)[None, :, None]
      ws = jnp.where(layer < cut, avg + truncation_psi * (ws - avg), ws)
    return ws

  def mix_styles(self, ws: Array, z: Array, y: Array | None, key: Array) -> Array:
    """Style mixing: with probability ``style_mixing_prob`` the styles from a
    random crossover index on come from a fresh ``z`` (one index per batch)."""
    k_cut, k_p, k_z = jax.random.split(key, 3)
    cutoff = jax.random.randint(k_cut, (), 1, self.num_ws)
    cutoff = jnp.where(jax.random.uniform(k_p) < self.style_mixing_prob, cutoff, self.num_ws)
    ws2 = self.mapping(jax.random.normal(k_z, z.shape, z.dtype), y)
    layer = jnp.arange(self.num_ws)[None, :, None]
    return jnp.where(layer < cutoff, ws, ws2)

  def training_styles(self, z: Array, y: Array | None, key: Array) -> Array:
    """The styles of a training forward (mapping, then mixing), ``w_avg`` untouched."""
    ws = self.mapping(z, y)
    return self.mix_styles(ws, z, y, key) if self.style_mixing_prob > 0 else ws

  def synthesis(self, ws: Array, noise_key: Array | None) -> Array:
    """Styles ``[B, num_ws, w_dim]`` -> images ``[B, R, R, C]`` (``noise_key=None``: no noise)."""
    if self.noise_mode == 'none':
      noise_key = None
    return self.synthesis_net(ws, noise_key).astype(jnp.float32)

  def sample(
    self,
    z: Array,
    y: Array | None = None,
    *,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
  ) -> Array:
    """Eval-mode images with explicit truncation (``method='sample'`` in ``apply``)."""
    ws = self.mapping(z, y, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
    return self.synthesis(ws, jax.random.fold_in(self._base_key(z), 1))

  def __call__(self, z: Array, y: Array | None = None, train: bool = False) -> Array:
    """Generates images.

    Args:
      z: latents ``[B, nz]``.
      y: int labels ``[B]`` (required iff ``num_classes > 0``).
      train: style mixing and the ``w_avg`` update (else truncation).

    Returns:
      ``[B, resolution, resolution, channels]`` float32.
    """
    key = self._base_key(z)
    k_mix, k_noise = jax.random.split(key)
    if train:
      ws = self.mapping(z, y, update_w_avg=True)
      if self.style_mixing_prob > 0:
        ws = self.mix_styles(ws, z, y, k_mix)
    else:
      ws = self.mapping(
        z, y, truncation_psi=self.truncation_psi, truncation_cutoff=self.truncation_cutoff
      )
    return self.synthesis(ws, k_noise)


# ----------------------------------------------------------------------------
# Discriminator
# ----------------------------------------------------------------------------


def minibatch_stddev(x: Array, group_size: int | None, num_channels: int = 1) -> Array:
  """Appends the minibatch standard deviation features (the reference's MinibatchStdLayer).

  Samples ``j, j + n, j + 2n, ...`` (``n = B / G``) form a group; per group and
  per channel slice the standard deviation over the group, averaged over
  channels and pixels, is appended as ``num_channels`` constant maps.

  Args:
    x: ``[B, H, W, C]``; ``B`` divisible by ``G = min(group_size, B)``.
    group_size: ``G`` (``None``: the whole batch).
    num_channels: ``F``; ``C`` must be divisible by it.

  Returns:
    ``[B, H, W, C + F]``.
  """
  b, h, w, c = x.shape
  g = b if group_size is None else min(group_size, b)
  if b % g or c % num_channels:
    raise ValueError(
      f'minibatch_stddev: batch {b} must be divisible by the group size {g} and channels {c} '
      f'by num_channels={num_channels}; use a batch size that is a multiple of '
      f'mbstd_group_size={group_size}.'
    )
  f = num_channels
  y = x.reshape(g, b // g, h, w, f, c // f).astype(jnp.float32)
  y = y - jnp.mean(y, axis=0)
  y = jnp.sqrt(jnp.mean(jnp.square(y), axis=0) + 1e-8)  # [n, H, W, F, c]
  y = jnp.mean(y, axis=(1, 2, 4))  # [n, F]
  y = jnp.tile(y, (g, 1)).astype(x.dtype)  # sample i gets group i % n
  y = jnp.broadcast_to(y[:, None, None, :], (b, h, w, f))
  return jnp.concatenate([x, y], axis=-1)


class StyleGAN2Discriminator(nn.Module):
  """StyleGAN2 residual discriminator: images ``[B, R, R, C]`` (labels ``y``) -> logits ``[B]``.

  ``fromrgb`` 1x1 at full resolution, blocks of ``conv3x3`` + ``conv3x3 down 2`` with a bias-free
  ``1x1 down 2`` skip (both branches scaled by sqrt(0.5)), then at 4x4: minibatch standard
  deviation, ``conv3x3``, dense to ``C``, dense to 1 (conditional: to ``cmap_dim``, projected on a
  mapping of the label and scaled by ``1/sqrt(cmap_dim)``). AdvAug's feature hook is the input of
  the last dense layer (``[B, C]``).

  Attributes:
    resolution: input resolution.
    num_classes: class count (0: unconditional).
    channel_base: 32768 (config F), 16384 (config E).
    channel_max: channel cap (512).
    mbstd_group_size: minibatch-stddev group (4; 32 in the CIFAR config;
      ``None``: the whole batch).
    mbstd_num_channels: minibatch-stddev features (0 disables the layer).
    cmap_dim: conditional projection size (``None``: channels at 4x4).
    mapping_layers: layers of the label mapping (conditional only).
  """

  resolution: int = 256
  num_classes: int = 0
  channel_base: int = 32768
  channel_max: int = 512
  mbstd_group_size: int | None = 4
  mbstd_num_channels: int = 1
  cmap_dim: int | None = None
  mapping_layers: int = 8

  @property
  def batch_coupled(self) -> bool:
    """True: the minibatch standard deviation mixes the samples of a batch."""
    return self.mbstd_num_channels > 0

  @nn.compact
  def __call__(self, x: Array, y: Array | None = None, train: bool = False) -> Array:
    """Scores images.

    Args:
      x: ``[B, resolution, resolution, C]``; ``B`` divisible by the mbstd group.
      y: int labels ``[B]`` (required iff ``num_classes > 0``).
      train: unused (no state), kept for the common signature.

    Returns:
      Logits ``[B]`` float32.
    """
    del train
    _check_resolution(self.resolution, 'StyleGAN2Discriminator')
    r = self.resolution
    if x.ndim != 4 or x.shape[1:3] != (r, r):
      raise ValueError(
        f'StyleGAN2Discriminator(resolution={r}) expects images [B, {r}, {r}, C], got shape '
        f'{tuple(x.shape)}.'
      )
    check_labels(y, self.num_classes, x.shape[0], 'StyleGAN2Discriminator')

    def chans(res):
      return channels_at(res, self.channel_base, self.channel_max)

    h = EqualizedConv(chans(r), kernel_size=1, name=f'b{r}_fromrgb')(x)
    res = r
    while res > 4:
      tmp, out = chans(res), chans(res // 2)
      skip = EqualizedConv(
        out, kernel_size=1, use_bias=False, activation='linear', down=2, name=f'b{res}_skip'
      )(h, gain=math.sqrt(0.5))
      h = EqualizedConv(tmp, name=f'b{res}_conv0')(h)
      h = EqualizedConv(out, down=2, name=f'b{res}_conv1')(h, gain=math.sqrt(0.5))
      h = skip + h
      res //= 2
    c4 = chans(4)
    if self.mbstd_num_channels > 0:
      h = minibatch_stddev(h, self.mbstd_group_size, self.mbstd_num_channels)
    h = EqualizedConv(c4, name='b4_conv')(h)
    h = EqualizedDense(c4, activation='lrelu', name='b4_fc')(h.reshape(h.shape[0], -1))
    h = self.perturb('features', h)
    if self.num_classes == 0:
      return EqualizedDense(1, name='b4_out')(h)[:, 0].astype(jnp.float32)
    cmap_dim = c4 if self.cmap_dim is None else self.cmap_dim
    out = EqualizedDense(cmap_dim, name='b4_out')(h)
    cmap = MappingNetwork(cmap_dim, self.mapping_layers, self.num_classes, name='mapping')(None, y)
    return (jnp.sum(out * cmap, axis=1) / math.sqrt(cmap_dim)).astype(jnp.float32)


# ----------------------------------------------------------------------------
# Regularizers
# ----------------------------------------------------------------------------


def r1_penalty(
  d_logits: Callable[[Array], Array], real: Array, gamma: float, *, interval: int = 1
) -> Array:
  """R1: ``gamma / 2 * mean_i ||grad_x D(x_i)||^2`` on real images, times ``interval``.

  Args:
    d_logits: ``x [B, H, W, C] -> logits [B]`` (D with its params and labels
      closed over; differentiable in its params).
    real: real images ``[B, H, W, C]`` (as D sees them).
    gamma: R1 weight (:data:`R1_GAMMA`, :func:`auto_r1_gamma`).
    interval: the lazy-regularization gain (:data:`R1_INTERVAL` when the term
      is applied every 16 steps; 1 otherwise).

  Returns:
    Scalar loss term for D.
  """
  if gamma < 0 or interval < 1:
    raise ValueError(f'r1_penalty needs gamma >= 0 and interval >= 1, got {gamma}, {interval}.')
  grads = jax.grad(lambda x: jnp.sum(d_logits(x)))(real)
  per_sample = jnp.sum(jnp.square(grads), axis=tuple(range(1, grads.ndim)))
  return (0.5 * gamma * interval) * jnp.mean(per_sample)


def path_length_penalty(
  generator: StyleGAN2Generator,
  g_variables: dict,
  z: Array,
  key: Array,
  pl_mean: Array,
  y: Array | None = None,
  *,
  weight: float = PL_WEIGHT,
  decay: float = PL_DECAY,
  batch_shrink: int = PL_BATCH_SHRINK,
  interval: int = 1,
) -> tuple[Array, Array]:
  """Path-length regularization and the new running mean path length.

  On the first ``B // batch_shrink`` latents: styles ``ws`` (mapping + mixing),
  images ``x = synthesis(ws)``, noise ``u ~ N(0, 1) / sqrt(H W)``, lengths
  ``a_i = sqrt(mean_over_styles ||d(sum x * u)/d ws_i||^2)``; ``pl_mean' =
  pl_mean + decay (mean(a) - pl_mean)`` and the loss ``weight * interval *
  mean((a - pl_mean')^2)`` (as in the reference, ``pl_mean'`` carries the
  gradient of ``mean(a)``). Differentiate it with respect to G's params
  through ``g_variables['params']``.

  Args:
    generator: the module.
    g_variables: ``{'params': ..., 'w_avg': ...}``.
    z: latents ``[B, nz]``.
    key: PRNG key (mixing, noise inputs, projection noise).
    pl_mean: running mean path length (float32 scalar; start at 0).
    y: labels ``[B]`` for a conditional G.
    weight: :data:`PL_WEIGHT`.
    decay: :data:`PL_DECAY`.
    batch_shrink: :data:`PL_BATCH_SHRINK`.
    interval: lazy gain (:data:`PL_INTERVAL` when applied every 4 steps).

  Returns:
    ``(loss, new_pl_mean)``; ``new_pl_mean`` has no gradient.
  """
  if batch_shrink < 1 or interval < 1 or not 0 < decay <= 1:
    raise ValueError(
      f'path_length_penalty needs batch_shrink >= 1, interval >= 1 and 0 < decay <= 1; got '
      f'{batch_shrink}, {interval}, {decay}.'
    )
  n = max(z.shape[0] // batch_shrink, 1)
  z = z[:n]
  y = None if y is None else y[:n]
  k_mix, k_noise, k_proj = jax.random.split(key, 3)
  ws = generator.apply(g_variables, z, y, k_mix, method=StyleGAN2Generator.training_styles)

  def synth(w):
    return generator.apply(g_variables, w, k_noise, method=StyleGAN2Generator.synthesis)

  img, vjp = jax.vjp(synth, ws)
  u = jax.random.normal(k_proj, img.shape, img.dtype) / math.sqrt(img.shape[1] * img.shape[2])
  (grads,) = vjp(u)
  lengths = jnp.sqrt(jnp.mean(jnp.sum(jnp.square(grads), axis=2), axis=1))
  new_mean = pl_mean + decay * (jnp.mean(lengths) - pl_mean)
  loss = weight * interval * jnp.mean(jnp.square(lengths - new_mean))
  return loss, jax.lax.stop_gradient(new_mean)


def lazy_term(step: Array, interval: int, fn: Callable[[], Array]) -> Array:
  """``fn()`` on steps divisible by ``interval`` (0 on the others), via ``lax.cond``.

  ``fn`` should already include the interval gain (``interval=`` of
  :func:`r1_penalty` / :func:`path_length_penalty`). The reference's order in a train step: keep
  ``pl_mean`` (float32, start 0) in ``state.extra['pl_mean']``; D's loss adds
  ``lazy_term(step, R1_INTERVAL, lambda: r1_penalty(d_logits, real, gamma))`` on the clean reals;
  G's loss adds ``lazy_term(step, PL_INTERVAL, lambda: pl_loss)`` with ``pl_loss, new_pl_mean =
  path_length_penalty(...)``, storing ``new_pl_mean`` on steps where the term ran. Build both
  optimizers with :func:`lazy_adam_hparams`. (The reference takes the regularization as a
  separate optimizer step; adding it to the main loss on those steps is the single-step form.)
  """
  if interval < 1:
    raise ValueError(f'lazy_term interval must be >= 1, got {interval}.')
  return jax.lax.cond(jnp.asarray(step) % interval == 0, fn, lambda: jnp.zeros((), jnp.float32))


def lazy_adam_hparams(
  learning_rate: float, b1: float, b2: float, interval: int
) -> tuple[float, float, float]:
  """Adam settings of a lazily regularized player: ``lr * c``, ``b1**c``, ``b2**c``
  with ``c = interval / (interval + 1)`` (the reference's minibatch ratio).

  StyleGAN2's defaults: ``lr = 0.002`` (0.0025 in the paper configs at 256),
  betas ``(0, 0.99)``; G with interval 4, D with 16.
  """
  if interval < 1:
    raise ValueError(f'lazy_adam_hparams interval must be >= 1, got {interval}.')
  c = interval / (interval + 1)
  return learning_rate * c, b1**c, b2**c
