"""LeNet-5 style digit classifiers.

Two sizes share one definition: :class:`LeNet5` (conv 6 -> conv 16 -> fc 120 ->
fc 84 -> classes) and :class:`LeNet5Half`, every width halved (3, 8, 60, 42),
the teacher/student pair of data-free adversarial distillation. The MNIST
evaluation extractor uses :class:`LeNet5`'s penultimate (fc 84) activations.

Layout: 5x5 conv + ReLU + 2x2 max-pool, twice, then three dense layers. A
32x32 input uses the first conv without padding; a 28x28 input is padded by 2
on each side (the usual MNIST adaptation), so both reach the same 5x5x16 map
before the dense layers. Inputs are NHWC float32 in [-1, 1] with any number of
channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array

# Spatial sizes the first conv accepts, with the padding that maps each to 32.
_FIRST_CONV_PADDING = {28: 2, 32: 0}


class LeNet5(nn.Module):
  """LeNet-5 style classifier.

  Attributes:
    num_classes: number of output logits.
    channels: output channels of the two conv layers.
    hidden: widths of the two hidden dense layers; the last is the feature
      width returned by :meth:`features_and_logits`.
  """

  num_classes: int = 10
  channels: Sequence[int] = (6, 16)
  hidden: Sequence[int] = (120, 84)

  def setup(self):
    self.conv1 = nn.Conv(self.channels[0], (5, 5), padding='VALID', name='conv1')
    self.conv2 = nn.Conv(self.channels[1], (5, 5), padding='VALID', name='conv2')
    self.fc1 = nn.Dense(self.hidden[0], name='fc1')
    self.fc2 = nn.Dense(self.hidden[1], name='fc2')
    self.head = nn.Dense(self.num_classes, name='head')

  def features_and_logits(self, x: Array, train: bool = False) -> tuple[Array, Array]:
    """Penultimate features and logits.

    Args:
      x: images ``[B, H, W, C]`` in [-1, 1], with ``H == W`` in {28, 32}.
      train: unused (the network has no dropout or batch norm); accepted for
        the library's ``(x, train)`` convention.

    Returns:
      ``(features [B, hidden[-1]], logits [B, num_classes])``; the features
      are the ReLU activations of the last hidden layer.
    """
    del train
    if x.ndim != 4 or x.shape[1] != x.shape[2] or x.shape[1] not in _FIRST_CONV_PADDING:
      raise ValueError(
        f'LeNet5 takes images [B, 28, 28, C] or [B, 32, 32, C]; got shape {x.shape}. '
        'Resize or pad the images to one of these sizes.'
      )
    pad = _FIRST_CONV_PADDING[x.shape[1]]
    if pad:
      x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    x = nn.max_pool(nn.relu(self.conv1(x)), (2, 2), strides=(2, 2))
    x = nn.max_pool(nn.relu(self.conv2(x)), (2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(self.fc1(x))
    features = nn.relu(self.fc2(x))
    return features, self.head(features)

  def __call__(self, x: Array, train: bool = False) -> Array:
    """Logits ``[B, num_classes]`` of images ``[B, H, W, C]`` (see :meth:`features_and_logits`)."""
    return self.features_and_logits(x, train)[1]


class LeNet5Half(LeNet5):
  """:class:`LeNet5` with every width halved: convs (3, 8), dense (60, 42)."""

  channels: Sequence[int] = (3, 8)
  hidden: Sequence[int] = (60, 42)
