"""InfoMax-GAN: contrastive local-global mutual information for D and G (Lee et al., WACV 2021).

D has two projection heads (:mod:`jaxgan.models.selfsup`, ``aux_head='infomax'``): a local head
on an intermediate feature map and a global head on the vector entering D's last linear layer,
both into ``K`` units (Mimicry's ``nrkhs = 1024``). An InfoNCE loss (:func:`infonce_loss`) makes
each image's global projection identify its own local projections among the other images'
(``negatives='same_position'``, default: a ``B``-way classification per position) or among every
position of every image (``'all_positions'``, Mimicry's ``infonce_loss``, the image's own other
positions replaced by the constant logit -10). D's loss adds ``weight * InfoNCE(real features)``
and G's loss ``weight * InfoNCE(features of G(z))``, ``weight = 0.2`` for both (Mimicry's
``infomax_loss_scale``); scores are plain dot products (no temperature, no normalization).

The terms see the images the step gives D's regularizers (with DAT the clean reals, as the DAT
code's InfoMax-GAN; with DiffAugment the augmented ones, and :func:`make_g_regularizer` takes the
same ``transform``). ``docs/TECHNIQUES.md`` (SSGAN and InfoMax-GAN) gives the loss in full.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxgan.game import ApplyFn, DRegularizer, GRegularizer, InputTransform

Array = jax.Array
FeatApply = Callable[[dict, Array], tuple[Array, Array]]
NEGATIVES = ('same_position', 'all_positions')
WEIGHT = 0.2  # Mimicry's infomax_loss_scale (D and G)
MASK_LOGIT = -10.0  # Mimicry's shift of the self entries in 'all_positions'


def _check(weight: float, negatives: str) -> None:
  if not isinstance(weight, int | float) or not math.isfinite(weight) or weight < 0:
    raise ValueError(f'infomax weight must be a finite number >= 0 (Mimicry: 0.2), got {weight!r}.')
  if negatives not in NEGATIVES:
    raise ValueError(f'infomax negatives must be one of {list(NEGATIVES)}, got {negatives!r}.')


def infonce_loss(local: Array, glob: Array, negatives: str = 'same_position') -> Array:
  """The InfoNCE loss between local and global features (module docstring).

  Args:
    local: projected local features ``[B, h, w, K]`` (or ``[B, L, K]``).
    glob: projected global features ``[B, K]``.
    negatives: 'same_position' or 'all_positions' (Mimicry).

  Returns:
    Scalar loss, the mean over the ``B * L`` (image, position) pairs; computed in
    the features' dtype (at least float32).
  """
  _check(1.0, negatives)
  if local.ndim not in (3, 4) or glob.ndim != 2:
    raise ValueError(
      f'infonce_loss expects local [B, h, w, K] (or [B, L, K]) and global [B, K], got shapes '
      f'{tuple(local.shape)} and {tuple(glob.shape)}.'
    )
  b, k = glob.shape
  local = local.reshape(local.shape[0], -1, local.shape[-1])
  if local.shape[0] != b or local.shape[-1] != k:
    raise ValueError(
      f'local features {tuple(local.shape)} and global features {tuple(glob.shape)} must share '
      'the batch and feature sizes B and K.'
    )
  if b < 2:
    raise ValueError(f'InfoNCE needs negatives from other images: batch size >= 2, got {b}.')
  dtype = jnp.promote_types(jnp.result_type(local, glob), jnp.float32)
  scores = jnp.einsum('ik,jpk->ijp', glob.astype(dtype), local.astype(dtype))  # [B, B, L]
  positive = jnp.diagonal(scores, axis1=0, axis2=1).T  # [B, L]: s[i, i, p]
  if negatives == 'same_position':
    lse = jax.nn.logsumexp(scores, axis=1)  # over images j at each position p
  else:
    eye = jnp.eye(b, dtype=bool)[:, :, None]
    masked = jnp.where(eye, jnp.asarray(MASK_LOGIT, dtype), scores).reshape(b, -1)
    lse = jnp.logaddexp(positive, jax.nn.logsumexp(masked, axis=1, keepdims=True))
  return jnp.mean(lse - positive)


def make_d_regularizer(
  feat_apply: FeatApply, weight: float = WEIGHT, negatives: str = 'same_position'
) -> DRegularizer:
  """D's term ``weight * InfoNCE`` on the features of the real batch.

  Args:
    feat_apply: ``(d_variables, x) -> (local [N, h, w, K], global [N, K])``
      projected features (:func:`jaxgan.models.selfsup.infomax_apply`).
    weight: Mimicry's scale, 0.2.
    negatives: see :func:`infonce_loss`.

  Returns:
    A :data:`jaxgan.game.DRegularizer` ``(d_variables, real, fake, key) -> scalar``.
  """
  _check(weight, negatives)
  if not callable(feat_apply):
    raise ValueError(
      f'feat_apply must be a callable (d_variables, x) -> (local, global), got {feat_apply!r}.'
    )

  def regularizer(d_variables, real, fake, key):
    del fake, key
    return weight * infonce_loss(*feat_apply(d_variables, real), negatives=negatives)

  return regularizer


def make_g_regularizer(
  g_apply: ApplyFn,
  feat_apply: FeatApply,
  weight: float = WEIGHT,
  negatives: str = 'same_position',
  transform: InputTransform | None = None,
) -> GRegularizer:
  """G's term ``weight * InfoNCE`` on the features of ``G(z)``.

  G is run again on the step's ``z`` in train mode (updated statistics
  dropped); gradients reach G through the images and D's (stop-gradient) heads.

  Args:
    g_apply: G in the apply convention.
    feat_apply: as in :func:`make_d_regularizer`.
    weight: Mimicry's scale, 0.2.
    negatives: see :func:`infonce_loss`.
    transform: the game's ``d_input_transform`` (DiffAugment) applied to the
      fakes with the regularizer's key; ``None`` for none.

  Returns:
    A :data:`jaxgan.game.GRegularizer` ``(g_variables, d_variables, z, key) -> scalar``.
  """
  _check(weight, negatives)

  def regularizer(g_variables, d_variables, z, key):
    fake, _ = g_apply(g_variables, z, train=True)
    if transform is not None:
      fake = transform(fake, key)
    return weight * infonce_loss(*feat_apply(d_variables, fake), negatives=negatives)

  return regularizer
