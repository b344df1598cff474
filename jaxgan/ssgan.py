"""SSGAN: rotation self-supervision of the discriminator (Chen et al., CVPR 2019).

D gets a head that classifies by how many quarter turns ``k`` an image was rotated
(``jnp.rot90(x, k, axes=(1, 2))``; square images). As Mimicry's ``ssgan`` (the DAT experiments'
setting), D's loss adds ``d_weight * CE(rotated reals)`` (1.0), G's ``g_weight * CE(rotated
G(z))`` (0.2). ``rotations='all'`` (default, Chen et al.) shows every image in all four rotations;
``'quarter'`` (Mimicry's ``_rotate_batch``) rotates quarter ``k`` of the batch by ``k`` turns.

The terms see the images the step gives D's regularizers (with DAT the clean reals, with
DiffAugment the augmented ones; :func:`make_g_regularizer` takes the same ``transform``). D runs
in train mode on the rotated images without storing statistics. The D they query is a callable
``rot_apply(d_variables, x [N, H, W, C]) -> [N, 4]``; :func:`jaxgan.models.selfsup.rotation_apply`
builds it from a discriminator with ``aux_head='rotation'``. Usage::

  rot = selfsup.rotation_apply(d_module)
  game = game.replace(
    d_regularizers=(ssgan.make_d_regularizer(rot, 1.0),),
    g_regularizers=(ssgan.make_g_regularizer(game.g_apply, rot, 0.2),),
  )
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxgan.game import ApplyFn, DRegularizer, GRegularizer, InputTransform

Array = jax.Array
RotApply = Callable[[dict, Array], Array]
NUM_ROTATIONS = 4
ROTATIONS = ('all', 'quarter')
D_WEIGHT = 1.0  # Mimicry's ss_loss_scale of D
G_WEIGHT = 0.2  # Mimicry's ss_loss_scale of G


def _check_images(x: Array, where: str) -> None:
  if x.ndim != 4 or x.shape[1] != x.shape[2]:
    raise ValueError(
      f'{where}: rotations need square NHWC images [B, S, S, C], got shape {tuple(x.shape)}; '
      'crop or pad the data to a square size (config.pad_to).'
    )


def _check_weight(weight: float, name: str) -> None:
  if not isinstance(weight, int | float) or not math.isfinite(weight) or weight < 0:
    raise ValueError(
      f'{name} must be a finite number >= 0 (Mimicry: D 1.0, G 0.2), got {weight!r}.'
    )


def rotate(x: Array, k: int) -> Array:
  """``k`` exact quarter turns counter-clockwise of NHWC images ``[B, H, W, C] -> [B, W, H, C]``.

  ``jnp.rot90(x, k, axes=(1, 2))``: row ``i`` of the result is column ``W - 1 - i``
  of the input (for ``k = 1``). Any ``H, W``; a pure permutation of pixels.
  """
  if x.ndim != 4:
    raise ValueError(f'ssgan.rotate expects NHWC images [B, H, W, C], got shape {tuple(x.shape)}.')
  return jnp.rot90(x, k, axes=(1, 2))


def _check_rotations(rotations: str) -> None:
  if rotations not in ROTATIONS:
    raise ValueError(
      f"ssgan rotations must be one of {list(ROTATIONS)} ('all': 4B images, Chen et al.; "
      f"'quarter': B images, Mimicry), got {rotations!r}."
    )


def rotate_batch(x: Array, rotations: str = 'all') -> tuple[Array, Array]:
  """The exact quarter-turn rotations of a batch, with their labels.

  Args:
    x: square images ``[B, S, S, C]``.
    rotations: 'all' or 'quarter' (module docstring).

  Returns:
    ``(x_rot, labels)``. For 'all': ``x_rot [4B, S, S, C]``, rows
    ``kB .. (k+1)B - 1`` are ``jnp.rot90(x, k, axes=(1, 2))`` with label ``k``
    (``labels [4B]`` int32). For 'quarter': ``x_rot [B, S, S, C]``, row ``i`` is
    image ``i`` turned ``k_i = floor(4 i / B)`` times, ``labels = k`` ``[B]``.
  """
  _check_images(x, 'ssgan.rotate_batch')
  _check_rotations(rotations)
  turned = [rotate(x, k) for k in range(NUM_ROTATIONS)]
  if rotations == 'all':
    labels = jnp.repeat(jnp.arange(NUM_ROTATIONS, dtype=jnp.int32), x.shape[0])
    return jnp.concatenate(turned, axis=0), labels
  b = x.shape[0]
  labels = jnp.asarray((np.arange(b) * NUM_ROTATIONS) // b, jnp.int32)
  stacked = jnp.stack(turned)  # [4, B, S, S, C]
  return stacked[labels, jnp.arange(b)], labels


def rotation_loss(rot_logits: Array, labels: Array) -> Array:
  """Mean cross-entropy of the rotation classifier.

  Args:
    rot_logits: ``[N, 4]`` logits (``N = 4B`` for :func:`rotate_batch`).
    labels: ``[N]`` int rotation labels in ``0..3``.

  Returns:
    Scalar ``mean_n -log softmax(rot_logits[n])[labels[n]]`` (``log 4`` for
    constant logits).
  """
  if rot_logits.ndim != 2 or rot_logits.shape[1] != NUM_ROTATIONS:
    raise ValueError(f'rot_logits must be [N, 4], got shape {tuple(rot_logits.shape)}.')
  if labels.shape != rot_logits.shape[:1]:
    raise ValueError(
      f'labels must be [N] = {rot_logits.shape[:1]} to match rot_logits, got {labels.shape}.'
    )
  logp = jax.nn.log_softmax(rot_logits.astype(jnp.float32), axis=-1)
  return -jnp.mean(jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=1))


def rotation_ce(rot_apply: RotApply, d_variables: dict, x: Array, rotations: str = 'all') -> Array:
  """Rotation cross-entropy of D on the rotated ``x`` ``[B, S, S, C]`` (:func:`rotate_batch`)."""
  x_rot, labels = rotate_batch(x, rotations)
  return rotation_loss(rot_apply(d_variables, x_rot), labels)


def make_d_regularizer(
  rot_apply: RotApply, weight: float = D_WEIGHT, rotations: str = 'all'
) -> DRegularizer:
  """D's rotation term ``weight * CE`` on the rotated real batch.

  Args:
    rot_apply: ``(d_variables, x [N, S, S, C]) -> [N, 4]`` rotation logits.
    weight: Mimicry's D scale, 1.0.
    rotations: 'all' (4B images) or 'quarter' (Mimicry, B images).

  Returns:
    A :data:`jaxgan.game.DRegularizer` ``(d_variables, real, fake, key) -> scalar``;
    ``fake`` and ``key`` are unused.
  """
  _check_weight(weight, 'ssgan d_weight')
  _check_rotations(rotations)
  if not callable(rot_apply):
    raise ValueError(f'rot_apply must be a callable (d_variables, x) -> [N, 4], got {rot_apply!r}.')

  def regularizer(d_variables, real, fake, key):
    del fake, key
    return weight * rotation_ce(rot_apply, d_variables, real, rotations)

  return regularizer


def make_g_regularizer(
  g_apply: ApplyFn,
  rot_apply: RotApply,
  weight: float = G_WEIGHT,
  transform: InputTransform | None = None,
  rotations: str = 'all',
) -> GRegularizer:
  """G's rotation term ``weight * CE`` on the rotated fakes ``G(z)``.

  G is run again on the step's ``z`` in train mode (its updated statistics are
  dropped; the step keeps those of its own forward), so the fakes are those of
  G's adversarial loss. Gradients reach G through the images; D's variables
  come from the step, which stops their gradient.

  Args:
    g_apply: G in the apply convention.
    rot_apply: ``(d_variables, x) -> [N, 4]`` rotation logits.
    weight: Mimicry's G scale, 0.2.
    transform: the game's ``d_input_transform`` (DiffAugment), applied to the
      fakes before rotation with the regularizer's key; ``None`` for none.
    rotations: 'all' (4B images) or 'quarter' (Mimicry, B images).

  Returns:
    A :data:`jaxgan.game.GRegularizer` ``(g_variables, d_variables, z, key) -> scalar``.
  """
  _check_weight(weight, 'ssgan g_weight')
  _check_rotations(rotations)

  def regularizer(g_variables, d_variables, z, key):
    fake, _ = g_apply(g_variables, z, train=True)
    if transform is not None:
      fake = transform(fake, key)
    return weight * rotation_ce(rot_apply, d_variables, fake, rotations)

  return regularizer
