"""BigGAN generator and discriminator (Brock, Donahue and Simonyan, ICLR 2019), 32 to 128 px.

The architecture tables of BigGAN-PyTorch (``G_arch``/``D_arch``), which the DiffAugment and the
DDST BigGAN-CIFAR code use unchanged; the class docstrings give the layers. Self-attention (SAGAN,
:class:`SelfAttention`) follows the blocks whose output resolution is listed in ``attention``.
Spectral normalization covers every G and D conv/linear and D's projection table, not G's class
tables. Init ``'N02'`` (normal 0.02, the CIFAR scripts), ``'ortho'`` (ImageNet) or ``'xavier'``;
biases 0; BatchNorm momentum 0.1 and epsilon 1e-5 (PyTorch).

:data:`REFERENCE_CONFIGS`: the CIFAR scripts (``ch = 64``, ``nz = 128``, no shared embedding, no
hierarchy, no attention, N02; with 10 classes G has 4,304,387 params and D 4,207,361, as the DDST
training log) and BigGAN-PyTorch's ImageNet-128 launch script (``ch = 96``, ``nz = 120``, shared
128, hierarchical, attention at 64, ortho). Also here: :func:`orthogonal_penalty` (BigGAN's
modified orthogonal regularization), :func:`ortho_g_regularizer` (the same as a ``Game`` G term)
and :func:`standing_statistics` (BatchNorm statistics accumulated over many batches for the EMA
generator, the reference's ``--accumulate_stats``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgan.models.conditional import ConditionalBatchNorm, ProjectionHead, check_labels
from jaxgan.nn import spectral_norm
from jaxgan.nn.norms import TORCH_BN_MOMENTUM, TORCH_EPS

PyTree = Any
RESOLUTIONS = (32, 64, 128)
DEFAULT_WIDTH = {32: 64, 64: 64, 128: 96}
INITS = ('N02', 'ortho', 'xavier')

# (in, out) channel multipliers of the G blocks; each doubles the resolution from 4.
G_ARCH = {
  32: ((4, 4), (4, 4), (4, 4)),
  64: ((16, 16), (16, 8), (8, 4), (4, 2)),
  128: ((16, 16), (16, 8), (8, 4), (4, 2), (2, 1)),
}
# (out channel multiplier, downsample) of the D blocks.
D_ARCH = {
  32: ((4, True), (4, True), (4, False), (4, False)),
  64: ((1, True), (2, True), (4, True), (8, True), (16, False)),
  128: ((1, True), (2, True), (4, True), (8, True), (16, True), (16, False)),
}

REFERENCE_CONFIGS = {
  # DiffAugment-biggan-cifar scripts and the DDST BigGAN-C10 run (BigGAN-PyTorch defaults).
  'cifar': dict(
    resolution=32,
    width=64,
    latent_dim=128,
    shared_dim=0,
    hier=False,
    attention=(),
    init_style='N02',
  ),
  # BigGAN-PyTorch launch_BigGAN_bs256x8.sh (ImageNet 128x128).
  'imagenet128': dict(
    resolution=128,
    width=96,
    latent_dim=120,
    shared_dim=128,
    hier=True,
    attention=(64,),
    init_style='ortho',
  ),
}


def weight_init(name: str) -> Callable[..., jax.Array]:
  """The kernel initializer called ``name`` ('N02', 'ortho', 'xavier')."""
  if name == 'N02':
    return nn.initializers.normal(0.02)
  if name == 'ortho':
    return nn.initializers.orthogonal()
  if name == 'xavier':
    return nn.initializers.xavier_uniform()
  raise ValueError(f'unknown BigGAN init {name!r}; choose one of {list(INITS)}.')


def _check_common(resolution: int, width: int | None, init: str, attention, where: str) -> int:
  if resolution not in RESOLUTIONS:
    raise ValueError(f'{where}: resolution must be one of {list(RESOLUTIONS)}, got {resolution!r}.')
  weight_init(init)
  w = DEFAULT_WIDTH[resolution] if width is None else width
  if w <= 0 or w % 8:
    raise ValueError(f'{where}: width must be a positive multiple of 8, got {w!r}.')
  bad = [r for r in attention if r not in [2**i for i in range(3, 8)]]
  if bad:
    raise ValueError(f'{where}: attention resolutions must be powers of two 8..128, got {bad}.')
  return w


def _conv(features: int, kernel: int, init, name: str, dtype, use_bias: bool = True) -> nn.Conv:
  pad = (kernel - 1) // 2
  return nn.Conv(
    features,
    (kernel, kernel),
    padding=((pad, pad), (pad, pad)),
    use_bias=use_bias,
    kernel_init=init,
    dtype=dtype,
    name=name,
  )


def _upsample2(x: jax.Array) -> jax.Array:
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def _avgpool2(x: jax.Array) -> jax.Array:
  return nn.avg_pool(x, (2, 2), strides=(2, 2))


class SelfAttention(nn.Module):
  """SAGAN self-attention as in BigGAN-PyTorch's ``layers.Attention``.

  ``theta``, ``phi`` (``C/8``) and ``g`` (``C/2``) are bias-free 1x1 convs; ``phi``
  and ``g`` are max-pooled 2x2; ``out = x + gamma * o(g @ softmax(theta^T phi)^T)``
  with ``gamma`` a learned scalar starting at 0.

  Attributes:
    spectral: spectral normalization on the four convs.
    init_style: kernel init name.
    dtype: computation dtype.
  """

  spectral: bool = True
  init_style: str = 'N02'
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    """``[B, H, W, C] -> [B, H, W, C]`` (``C`` divisible by 8, ``H, W`` even)."""
    b, h, w, c = x.shape
    kinit = weight_init(self.init_style)

    def conv(v, features, name):
      layer = _conv(features, 1, kinit, name, self.dtype, use_bias=False)
      return spectral_norm(layer, self.spectral, train)(v)

    theta = conv(x, c // 8, 'theta').reshape(b, h * w, c // 8)
    phi = nn.max_pool(conv(x, c // 8, 'phi'), (2, 2), strides=(2, 2)).reshape(b, h * w // 4, c // 8)
    g = nn.max_pool(conv(x, c // 2, 'g'), (2, 2), strides=(2, 2)).reshape(b, h * w // 4, c // 2)
    beta = jax.nn.softmax(jnp.einsum('bqc,bkc->bqk', theta, phi), axis=-1)
    o = conv(jnp.einsum('bqk,bkc->bqc', beta, g).reshape(b, h, w, c // 2), c, 'o')
    gamma = self.param('gamma', nn.initializers.zeros_init(), ())
    return x + gamma.astype(o.dtype) * o


class GBlock(nn.Module):
  """BigGAN up-block: ``[B, H, W, in] -> [B, 2H, 2W, features]``.

  Attributes:
    features: output channels.
    num_classes: class count for integer conditions.
    spectral: spectral normalization on the convs (and cBN linear maps).
    init_style: kernel init name.
    bn_momentum: flax BatchNorm momentum.
    dtype: computation dtype.
  """

  features: int
  num_classes: int = 0
  spectral: bool = True
  init_style: str = 'N02'
  bn_momentum: float = TORCH_BN_MOMENTUM
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, cond: jax.Array | None, train: bool) -> jax.Array:
    kinit = weight_init(self.init_style)

    def bn(v, name):
      return ConditionalBatchNorm(
        num_classes=self.num_classes,
        spectral=self.spectral,
        momentum=self.bn_momentum,
        epsilon=TORCH_EPS,
        kernel_init=kinit,
        dtype=self.dtype,
        name=name,
      )(v, cond, train)

    def conv(v, kernel, name):
      layer = _conv(self.features, kernel, kinit, name, self.dtype)
      return spectral_norm(layer, self.spectral, train)(v)

    h = nn.relu(bn(x, 'bn1'))
    h = conv(_upsample2(h), 3, 'conv1')
    h = conv(nn.relu(bn(h, 'bn2')), 3, 'conv2')
    return h + conv(_upsample2(x), 1, 'conv_sc')


class DBlock(nn.Module):
  """BigGAN D block (wide: hidden channels = ``features``).

  Attributes:
    features: output channels.
    downsample: average-pool 2x2 at the end.
    preactivation: ReLU on the input (every block but the first).
    spectral: spectral normalization on the convs.
    init_style: kernel init name.
    dtype: computation dtype.
  """

  features: int
  downsample: bool
  preactivation: bool = True
  spectral: bool = True
  init_style: str = 'N02'
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    kinit = weight_init(self.init_style)

    def conv(v, kernel, name):
      layer = _conv(self.features, kernel, kinit, name, self.dtype)
      return spectral_norm(layer, self.spectral, train)(v)

    h = nn.relu(x) if self.preactivation else x
    h = conv(nn.relu(conv(h, 3, 'conv1')), 3, 'conv2')
    if self.downsample:
      h = _avgpool2(h)
    sc = x
    if self.downsample or x.shape[-1] != self.features:
      if self.preactivation:
        sc = conv(sc, 1, 'conv_sc')
        sc = _avgpool2(sc) if self.downsample else sc
      else:
        sc = _avgpool2(sc) if self.downsample else sc
        sc = conv(sc, 1, 'conv_sc')
    return h + sc


class BigGANGenerator(nn.Module):
  """BigGAN generator: ``z [B, nz]`` (and labels ``y [B]``) -> images ``[B, R, R, C]``.

  BigGAN-PyTorch's ``G_arch`` with ``ch = width``: ``Dense(z_0 -> 4*4*in_0)`` (``linear``) -> one
  up-block per entry -> BN -> ReLU -> ``conv3x3 -> C`` (``out_conv``) -> tanh. Up-block:
  ``cBN -> ReLU -> up x2 -> conv3x3 -> cBN -> ReLU -> conv3x3`` plus ``up x2 -> conv1x1``
  (nearest-neighbour upsampling). Channels (in -> out, units of ``ch``): 32: 4->4 three times;
  64: 16->16, 16->8, 8->4, 4->2; 128: 16->16, 16->8, 8->4, 4->2, 2->1. Without a shared embedding
  each cBN has per-class gain and shift tables; with ``shared_dim > 0`` a shared class embedding
  feeds bias-free linear maps, and ``hier`` splits ``z`` into ``n_blocks + 1`` chunks, the first to
  ``linear`` and one per block after the shared embedding. AdvAug's feature hook is ``linear``'s
  output reshaped to ``[B, 4, 4, C]``.

  Attributes:
    resolution: 32, 64 or 128.
    channels: image channels.
    num_classes: class count (0: unconditional; no labels are taken).
    width: ``ch`` (``None``: :data:`DEFAULT_WIDTH`).
    shared_dim: size of the shared class embedding (0: per-class cBN tables).
    hier: hierarchical latent (``nz`` must split into ``n_blocks + 1`` equal
      chunks; needs ``shared_dim > 0`` when conditional).
    attention: output resolutions of the blocks followed by self-attention.
    spectral: spectral normalization on convs and linear layers.
    init_style: 'N02', 'ortho' or 'xavier'.
    bn_momentum: flax BatchNorm momentum (0.9 = PyTorch 0.1; 0 makes the stored
      statistics those of the last batch, used by :func:`standing_statistics`).
    dtype: computation dtype (``None``: float32); output float32.
  """

  resolution: int = 32
  channels: int = 3
  num_classes: int = 0
  width: int | None = None
  shared_dim: int = 0
  hier: bool = False
  attention: Sequence[int] = ()
  spectral: bool = True
  init_style: str = 'N02'
  bn_momentum: float = TORCH_BN_MOMENTUM
  dtype: Any = None

  @property
  def num_slots(self) -> int:
    """Pieces ``z`` is split into (``n_blocks + 1`` when hierarchical, else 1)."""
    return len(G_ARCH[self.resolution]) + 1 if self.hier else 1

  @nn.compact
  def __call__(self, z: jax.Array, y: jax.Array | None = None, train: bool = False) -> jax.Array:
    """Generates images in [-1, 1].

    Args:
      z: latents ``[B, nz]``.
      y: int labels ``[B]`` (required iff ``num_classes > 0``).
      train: BatchNorm uses and updates batch statistics; spectral norm stores
        its power-iteration state.

    Returns:
      ``[B, resolution, resolution, channels]``.
    """
    ch = self._check_inputs(z, y)
    kinit = weight_init(self.init_style)
    chunks = jnp.split(z, self.num_slots, axis=1)
    conds = self._block_conditions(chunks, y, kinit, z.dtype)
    b, c0 = z.shape[0], G_ARCH[self.resolution][0][0] * ch
    linear = nn.Dense(4 * 4 * c0, kernel_init=kinit, dtype=self.dtype, name='linear')
    h = spectral_norm(linear, self.spectral, train)(chunks[0]).reshape(b, 4, 4, c0)
    h = self.perturb('features', h)
    res = 4
    for i, (_, out_mult) in enumerate(G_ARCH[self.resolution]):
      h = GBlock(
        out_mult * ch,
        num_classes=self.num_classes,
        spectral=self.spectral,
        init_style=self.init_style,
        bn_momentum=self.bn_momentum,
        dtype=self.dtype,
        name=f'block{i}',
      )(h, conds[i], train)
      res *= 2
      if res in self.attention:
        h = SelfAttention(self.spectral, self.init_style, self.dtype, name=f'attention{i}')(
          h, train
        )
    h = ConditionalBatchNorm(
      momentum=self.bn_momentum, epsilon=TORCH_EPS, dtype=self.dtype, name='out_bn'
    )(h, None, train)
    out = _conv(self.channels, 3, kinit, 'out_conv', self.dtype)
    h = spectral_norm(out, self.spectral, train)(nn.relu(h))
    return jnp.tanh(h).astype(jnp.float32)

  def _check_inputs(self, z: jax.Array, y: jax.Array | None) -> int:
    """Raises on invalid fields or inputs; returns the width ``ch``."""
    ch = _check_common(
      self.resolution, self.width, self.init_style, self.attention, 'BigGANGenerator'
    )
    if z.ndim != 2:
      raise ValueError(f'BigGANGenerator expects latents [B, nz], got shape {tuple(z.shape)}.')
    check_labels(y, self.num_classes, z.shape[0], 'BigGANGenerator')
    if self.hier and self.num_classes > 0 and self.shared_dim <= 0:
      raise ValueError(
        'BigGANGenerator: hier=True with labels needs a shared class embedding; set '
        'shared_dim > 0 (the reference uses 128).'
      )
    if self.shared_dim < 0:
      raise ValueError(f'BigGANGenerator: shared_dim must be >= 0, got {self.shared_dim}.')
    slots = self.num_slots
    if z.shape[1] % slots:
      raise ValueError(
        f'BigGANGenerator(hier=True, resolution={self.resolution}) splits z into {slots} equal '
        f'chunks; nz={z.shape[1]} is not divisible by {slots} (e.g. use nz={slots * 20}).'
      )
    return ch

  def _block_conditions(self, chunks: list, y: jax.Array | None, kinit, dtype) -> list:
    """Each block's cBN input: labels, or [shared embedding, z chunk] vectors, or ``None``."""
    if self.num_classes > 0 and self.shared_dim > 0:
      shared = nn.Embed(self.num_classes, self.shared_dim, embedding_init=kinit, name='shared')(y)
    else:
      shared = None
    conds = []
    for i in range(len(G_ARCH[self.resolution])):
      parts = [p for p in (shared, chunks[i + 1] if self.hier else None) if p is not None]
      if parts:
        conds.append(jnp.concatenate(parts, axis=1).astype(dtype))
      else:
        conds.append(y if self.num_classes > 0 else None)
    return conds


class BigGANDiscriminator(nn.Module):
  """BigGAN projection discriminator: images ``[B, R, R, C]`` (labels ``y``) -> logits ``[B]``.

  BigGAN-PyTorch's ``D_arch``: blocks ``conv3x3 -> ReLU -> conv3x3 [-> avgpool]``, pre-activated
  by a ReLU except the first, with a ``conv1x1`` shortcut where the shape changes (the first block
  pools before it, the others after), then ReLU, global sum pooling and the projection head
  (:class:`jaxgan.models.conditional.ProjectionHead`). Out channels (units of ``ch``): 32: 4, 4,
  4, 4 (downsampling in the first two); 64: 1, 2, 4, 8, 16; 128: 1, 2, 4, 8, 16, 16 (all but the
  last downsample). The reference's 32x32 table labels all four blocks "16", so ``D_attn='16'``
  there means four attention layers; here a layer goes only where the map really is 16x16.
  AdvAug's feature hook is the pooled ``[B, C]`` vector entering the head.

  Attributes:
    resolution: 32, 64 or 128; inputs must have this size.
    num_classes: class count (0: unconditional, no projection term).
    width: ``ch`` (``None``: :data:`DEFAULT_WIDTH`).
    attention: output resolutions of the blocks followed by self-attention.
    spectral: spectral normalization on every layer (the reference always uses it).
    init_style: 'N02', 'ortho' or 'xavier'.
    dtype: computation dtype; logits float32.
  """

  resolution: int = 32
  num_classes: int = 0
  width: int | None = None
  attention: Sequence[int] = ()
  spectral: bool = True
  init_style: str = 'N02'
  dtype: Any = None

  @property
  def batch_coupled(self) -> bool:
    """Never: BigGAN's D has no batch normalization."""
    return False

  @nn.compact
  def __call__(self, x: jax.Array, y: jax.Array | None = None, train: bool = False) -> jax.Array:
    """Scores images.

    Args:
      x: images ``[B, resolution, resolution, C]``.
      y: int labels ``[B]`` (required iff ``num_classes > 0``).
      train: spectral norm stores its power-iteration state.

    Returns:
      Logits ``[B]``.
    """
    ch = _check_common(
      self.resolution, self.width, self.init_style, self.attention, 'BigGANDiscriminator'
    )
    r = self.resolution
    if x.ndim != 4 or x.shape[1:3] != (r, r):
      raise ValueError(
        f'BigGANDiscriminator(resolution={r}) expects images [B, {r}, {r}, C], got shape '
        f'{tuple(x.shape)}.'
      )
    check_labels(y, self.num_classes, x.shape[0], 'BigGANDiscriminator')
    h, res = x, r
    for i, (mult, down) in enumerate(D_ARCH[r]):
      h = DBlock(
        mult * ch,
        down,
        preactivation=i > 0,
        spectral=self.spectral,
        init_style=self.init_style,
        dtype=self.dtype,
        name=f'block{i}',
      )(h, train)
      res = res // 2 if down else res
      if res in self.attention:
        h = SelfAttention(self.spectral, self.init_style, self.dtype, name=f'attention{i}')(
          h, train
        )
    h = jnp.sum(nn.relu(h), axis=(1, 2))
    h = self.perturb('features', h)
    return ProjectionHead(
      num_classes=self.num_classes,
      spectral=self.spectral,
      kernel_init=weight_init(self.init_style),
      dtype=self.dtype,
      name='head',
    )(h, y, train)


# ----------------------------------------------------------------------------
# Orthogonal regularization and standing statistics
# ----------------------------------------------------------------------------


def _row_matrix(path: str, leaf: jax.Array) -> jax.Array:
  """The weight as PyTorch's ``[out, fan_in]`` (embeddings: ``[classes, dim]``)."""
  if path.endswith('embedding'):
    return leaf.reshape(leaf.shape[0], -1)
  return leaf.reshape(-1, leaf.shape[-1]).T


def orthogonal_penalty(
  params: PyTree, strength: float = 1e-4, exclude: Sequence[str] = ('shared',)
) -> jax.Array:
  """BigGAN's modified orthogonal regularization (``--G_ortho``).

  ``strength / 2 * sum_W ||(W W^T) * (1 - I)||_F^2`` over every param with at
  least two axes whose path matches none of ``exclude`` (the reference skips the
  shared class embedding). ``W`` is the weight in PyTorch's ``[out, fan_in]``
  layout (a table: ``[classes, dim]``), so the gradient of this penalty is the
  reference's ``strength * 2 ((W W^T) * (1 - I)) W``, which it adds to the
  gradient directly. BigGAN's value: 1e-4.

  Args:
    params: G's params.
    strength: the coefficient.
    exclude: regular expressions searched in ``'a/b/kernel'`` leaf paths.

  Returns:
    Scalar penalty (the params' dtype).
  """
  if strength < 0:
    raise ValueError(f'orthogonal_penalty strength must be >= 0, got {strength}.')
  patterns = [re.compile(e) for e in exclude]
  total = 0.0
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    name = '/'.join(str(getattr(p, 'key', p)) for p in path)
    if leaf.ndim < 2 or any(p.search(name) for p in patterns):
      continue
    w = _row_matrix(name, leaf)
    gram = w @ w.T
    off = gram * (1.0 - jnp.eye(gram.shape[0], dtype=gram.dtype))
    total = total + jnp.sum(jnp.square(off))
  return jnp.asarray(0.5 * strength * total)


def ortho_g_regularizer(strength: float = 1e-4, exclude: Sequence[str] = ('shared',)):
  """:func:`orthogonal_penalty` as a :class:`jaxgan.game.Game` G regularizer.

  Returns:
    ``(g_variables, d_variables, z, key) -> scalar`` for ``Game.g_regularizers``.
  """
  if strength < 0:
    raise ValueError(f'ortho_g_regularizer strength must be >= 0, got {strength}.')

  def reg(g_variables, d_variables, z, key, label=None):
    del d_variables, z, key, label
    return orthogonal_penalty(g_variables['params'], strength, exclude)

  reg.accepts_labels = True  # labels play no part; see jaxgan.game.label_aware
  return reg


def standing_statistics(
  generator: BigGANGenerator,
  variables: dict,
  key: jax.Array,
  *,
  latent_dim: int,
  num_batches: int = 16,
  batch_size: int = 50,
) -> dict:
  """BatchNorm statistics averaged over many batches, for evaluating G.

  BigGAN-PyTorch's "standing stats": G runs in train mode on ``num_batches``
  batches of fresh ``z`` (and uniformly drawn labels); each BatchNorm's stored
  mean and variance become the average of the per-batch means and (biased)
  variances. Use them with the EMA params: pass ``{'params': ema_params,
  **model_state}`` as ``variables``.

  Args:
    generator: the module (its ``bn_momentum`` is overridden internally).
    variables: ``{'params': ..., 'batch_stats': ..., ...}``.
    key: PRNG key for ``z`` and labels.
    latent_dim: ``nz``.
    num_batches: forward passes averaged (reference: 16).
    batch_size: samples per pass.

  Returns:
    ``variables`` with ``batch_stats`` replaced; other collections unchanged.
  """
  if num_batches < 1 or batch_size < 2:
    raise ValueError(
      f'standing_statistics needs num_batches >= 1 and batch_size >= 2, got {num_batches}, '
      f'{batch_size}.'
    )
  if 'batch_stats' not in variables:
    raise ValueError("standing_statistics: variables hold no 'batch_stats' collection.")
  probe = generator.clone(bn_momentum=0.0)  # stored stats = those of the last batch
  inputs = {k: v for k, v in variables.items() if k != 'perturbations'}
  mutable = [k for k in inputs if k != 'params']

  @jax.jit
  def batch_stats(k):
    kz, ky = jax.random.split(k)
    z = jax.random.normal(kz, (batch_size, latent_dim), jnp.float32)
    y = None
    if generator.num_classes > 0:
      y = jax.random.randint(ky, (batch_size,), 0, generator.num_classes, jnp.int32)
    _, new = probe.apply(inputs, z, y, train=True, mutable=mutable)
    return new['batch_stats']

  keys = jax.random.split(key, num_batches)
  total = batch_stats(keys[0])
  for k in keys[1:]:
    total = jax.tree.map(jnp.add, total, batch_stats(k))
  return {**variables, 'batch_stats': jax.tree.map(lambda s: s / num_batches, total)}
