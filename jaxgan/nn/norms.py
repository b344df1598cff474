"""Normalization layers of the GAN models, with PyTorch's numerical defaults.

Discriminators choose one of :data:`D_NORMS` by name:

* ``'none'``: no normalization.
* ``'batch'``: ``nn.BatchNorm`` (batch statistics in train mode, running averages
  in eval mode; collection ``batch_stats``). Couples the samples of a batch.
* ``'group'``: ``nn.GroupNorm`` with 32 groups (OSGAN's ``dcgan_gn``), or fewer
  when the channel count is not divisible by 32 (the largest divisor <= 32).
* ``'layer'``: normalization over ``H, W, C`` of each sample with a per-channel
  affine, i.e. GroupNorm with one group.
* ``'spectral'``: spectral normalization of every weight (see
  :func:`spectral_norm`); no activation normalization.

Epsilons and BatchNorm momentum follow PyTorch (``eps=1e-5``, running average
``new = 0.9 * old + 0.1 * batch``), so converted PyTorch weights behave the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax

D_NORMS = ('none', 'batch', 'group', 'layer', 'spectral')
SPECTRAL_COLLECTION = 'spectral'
TORCH_EPS = 1e-5
TORCH_BN_MOMENTUM = 0.9  # flax's convention: weight of the old running average


def check_norm(norm: str, where: str) -> None:
  """Raises a ValueError naming the valid choices when ``norm`` is not one."""
  if norm not in D_NORMS:
    raise ValueError(f'{where}: unknown norm {norm!r}; choose one of {list(D_NORMS)}.')


def batch_norm(train: bool, name: str | None = None, dtype: Any = None) -> nn.BatchNorm:
  """BatchNorm over all axes but the last, PyTorch's momentum and epsilon."""
  return nn.BatchNorm(
    use_running_average=not train,
    momentum=TORCH_BN_MOMENTUM,
    epsilon=TORCH_EPS,
    dtype=dtype,
    name=name,
  )


def _groups(channels: int, wanted: int) -> int:
  return max(g for g in range(1, min(wanted, channels) + 1) if channels % g == 0)


def activation_norm(
  norm: str, channels: int, train: bool, name: str | None = None, dtype: Any = None
) -> Callable[[jax.Array], jax.Array]:
  """The activation normalization for ``norm`` (identity for 'none'/'spectral').

  Args:
    norm: one of :data:`D_NORMS`.
    channels: feature count of the input's last axis.
    train: batch statistics (and their update) for 'batch'.
    name: module name.
    dtype: computation dtype (params stay float32).

  Returns:
    A callable ``[B, ..., channels] -> same shape``.
  """
  check_norm(norm, 'activation_norm')
  if norm == 'batch':
    return batch_norm(train, name, dtype)
  if norm == 'group':
    return nn.GroupNorm(num_groups=_groups(channels, 32), epsilon=TORCH_EPS, dtype=dtype, name=name)
  if norm == 'layer':
    return nn.GroupNorm(num_groups=1, epsilon=TORCH_EPS, dtype=dtype, name=name)
  return lambda x: x


def spectral_norm(layer: nn.Module, enabled: bool, train: bool) -> Callable[..., jax.Array]:
  """Wraps ``layer`` in flax's ``nn.SpectralNorm`` when ``enabled``.

  The layer's params keep their usual names (``<layer>/kernel`` holds the raw,
  unnormalized weight, which is what optimizers and sparsity masks see). The
  power-iteration vector ``u`` and the last ``sigma`` live in the
  ``'spectral'`` collection under ``<layer>_sn``; one power iteration runs per
  call and its result is stored only when ``train`` (PyTorch's
  ``spectral_norm`` does the same in train mode; in eval mode flax iterates once
  from the stored ``u`` without storing, PyTorch reuses the stored vectors).

  Args:
    layer: an unbound ``nn.Dense``/``nn.Conv`` with an explicit ``name``.
    enabled: wrap it (else return it unchanged).
    train: store the updated power-iteration state.

  Returns:
    A callable applying the (normalized) layer.
  """
  if not enabled:
    return layer
  wrapped = nn.SpectralNorm(layer, collection_name=SPECTRAL_COLLECTION, name=f'{layer.name}_sn')
  return lambda *args: wrapped(*args, update_stats=train)
