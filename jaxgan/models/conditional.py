"""Class-conditional building blocks shared by the conditional G and D.

* :func:`check_labels`: the label argument of a model, checked before tracing
  (required when ``num_classes > 0``, refused when it is 0).
* :class:`ConditionalBatchNorm`: BatchNorm whose per-channel scale and shift
  come from the condition: per-class tables for integer labels (BigGAN's
  ``ccbn`` with ``nn.Embedding``), a bias-free linear map of a float condition
  vector (BigGAN's shared embedding / hierarchical latent), or a plain learned
  affine when there is no condition. The output is
  ``norm(x) * (1 + gain) + shift`` for a condition, ``norm(x) * scale + bias``
  without one.
* :class:`ProjectionHead`: the projection discriminator's output (Miyato and
  Koyama 2018): ``linear(h) + <embed(y), h>``.
* :func:`class_grid_labels`: labels for a sampling grid with one row per class.

The gain/shift params are named ``gain_scale`` and ``gain_shift`` and the
projection table ``embed``, so the sparse-training masks
(:func:`jaxgan.sparse.dense_masks`) keep them dense as the reference code does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxgan.nn import spectral_norm
from jaxgan.nn.norms import TORCH_BN_MOMENTUM, TORCH_EPS

Initializer = Callable[..., jax.Array]


def check_labels(y: Any, num_classes: int, batch: int, where: str) -> None:
  """Checks a model's label argument; raises ValueError with the fix.

  Args:
    y: ``None`` or integer labels ``[B]`` (a tracer is checked by shape and
      dtype only; concrete arrays also by value).
    num_classes: the model's class count (0: unconditional).
    batch: ``B``, the batch size of the model's main input.
    where: the model's name for messages.
  """
  if num_classes < 0:
    raise ValueError(f'{where}: num_classes must be >= 0, got {num_classes}.')
  if num_classes == 0:
    if y is not None:
      raise ValueError(
        f'{where} is unconditional (num_classes=0) but got labels; drop y, or build the '
        'model with num_classes=K to condition on K classes.'
      )
    return
  if y is None:
    raise ValueError(
      f'{where} is class-conditional (num_classes={num_classes}): pass int32 labels y of '
      f'shape [{batch}] (e.g. batch["label"]), or build it with num_classes=0.'
    )
  shape = tuple(np.shape(y))
  dtype = y.dtype if hasattr(y, 'dtype') else np.asarray(y).dtype
  if shape != (batch,) or not jnp.issubdtype(dtype, jnp.integer):
    raise ValueError(
      f'{where}: labels must be integers of shape [{batch}], got dtype {dtype} and shape {shape}.'
    )
  if not isinstance(y, jax.core.Tracer):
    values = np.asarray(y)
    if values.size and (values.min() < 0 or values.max() >= num_classes):
      raise ValueError(
        f'{where}: labels must be in [0, {num_classes}), got values in '
        f'[{values.min()}, {values.max()}].'
      )


def class_grid_labels(num_classes: int, per_class: int) -> jax.Array:
  """Labels of a sample grid with one row per class.

  Args:
    num_classes: ``K`` (rows).
    per_class: samples per class (columns).

  Returns:
    int32 ``[K * per_class]``: ``0`` repeated ``per_class`` times, then ``1``, ...;
    images generated from them reshape row-major to a ``K x per_class`` grid.
  """
  if num_classes <= 0 or per_class <= 0:
    raise ValueError(
      f'class_grid_labels needs num_classes > 0 and per_class > 0, got {num_classes}, {per_class}.'
    )
  return jnp.repeat(jnp.arange(num_classes, dtype=jnp.int32), per_class)


def _broadcast_channels(v: jax.Array, x: jax.Array) -> jax.Array:
  """``[B, C] -> [B, 1, ..., 1, C]`` to multiply ``x [B, ..., C]``."""
  return v.reshape(v.shape[0], *([1] * (x.ndim - 2)), v.shape[-1])


class ConditionalBatchNorm(nn.Module):
  """BatchNorm with a condition-dependent scale and shift.

  Statistics: batch statistics in train mode (and their running average stored
  in ``batch_stats`` with ``momentum``), the running averages otherwise.

  Attributes:
    num_classes: class count for integer conditions (per-class tables).
    spectral: spectral normalization on the linear maps of a float condition
      (BigGAN's G uses SN there; its per-class tables have none).
    momentum: flax momentum of the running averages (0.9 = PyTorch's 0.1).
    epsilon: added to the variance.
    kernel_init: init of the tables / linear maps.
    dtype: computation dtype (``None``: the input's).
  """

  num_classes: int = 0
  spectral: bool = False
  momentum: float = TORCH_BN_MOMENTUM
  epsilon: float = TORCH_EPS
  kernel_init: Initializer = nn.initializers.normal(0.02)
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, cond: jax.Array | None, train: bool) -> jax.Array:
    """Normalizes ``x [B, ..., C]``.

    Args:
      x: features, channels last.
      cond: ``None`` (plain affine), int labels ``[B]`` (per-class tables), or a
        float condition ``[B, D]`` (linear maps without bias).
      train: use and update batch statistics.

    Returns:
      ``[B, ..., C]``.
    """
    c = x.shape[-1]
    h = nn.BatchNorm(
      use_running_average=not train,
      momentum=self.momentum,
      epsilon=self.epsilon,
      use_scale=False,
      use_bias=False,
      dtype=self.dtype,
      name='norm',
    )(x)
    if cond is None:
      scale = self.param('scale', nn.initializers.ones_init(), (c,))
      bias = self.param('bias', nn.initializers.zeros_init(), (c,))
      return h * scale.astype(h.dtype) + bias.astype(h.dtype)
    if jnp.issubdtype(cond.dtype, jnp.integer):
      if self.num_classes <= 0:
        raise ValueError(
          'ConditionalBatchNorm got integer labels but num_classes=0; set num_classes.'
        )

      def table(name):
        return nn.Embed(self.num_classes, c, embedding_init=self.kernel_init, name=name)

      gain, shift = table('gain_scale')(cond), table('gain_shift')(cond)
    else:

      def linear(name):
        layer = nn.Dense(
          c, use_bias=False, kernel_init=self.kernel_init, dtype=self.dtype, name=name
        )
        return spectral_norm(layer, self.spectral, train)

      gain, shift = linear('gain_scale')(cond), linear('gain_shift')(cond)
    gain, shift = gain.astype(h.dtype), shift.astype(h.dtype)
    return h * (1.0 + _broadcast_channels(gain, h)) + _broadcast_channels(shift, h)


class ProjectionHead(nn.Module):
  """Projection-discriminator output: ``linear(h) + sum(embed(y) * h)``.

  Attributes:
    num_classes: class count (0: only the linear term).
    spectral: spectral normalization on the linear layer and the table.
    kernel_init: init of the linear kernel and the table.
    dtype: computation dtype.
  """

  num_classes: int = 0
  spectral: bool = True
  kernel_init: Initializer = nn.initializers.normal(0.02)
  dtype: Any = None

  @nn.compact
  def __call__(self, h: jax.Array, y: jax.Array | None, train: bool) -> jax.Array:
    """Scores pooled features ``h [B, C]`` (labels ``y [B]``) with logits ``[B]``."""
    linear = nn.Dense(1, kernel_init=self.kernel_init, dtype=self.dtype, name='linear')
    out = spectral_norm(linear, self.spectral, train)(h)[:, 0]
    if self.num_classes > 0:
      if y is None:
        raise ValueError(f'ProjectionHead(num_classes={self.num_classes}) needs labels y [B].')
      embed = nn.Embed(self.num_classes, h.shape[-1], embedding_init=self.kernel_init, name='embed')
      out = out + jnp.sum(spectral_norm(embed, self.spectral, train)(y).astype(h.dtype) * h, -1)
    return out.astype(jnp.float32)
