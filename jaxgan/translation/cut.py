"""CUT (contrastive unpaired translation) as a jaxgan :class:`~jaxgan.game.Game`.

G is a :class:`~jaxgan.translation.models.ResnetGenerator` fed through the batch's
``'latent'`` entry ``{'source': A images, 'target': B images}``; D is a
:class:`~jaxgan.translation.models.PatchDiscriminator` whose every patch logit is a term of the
loss (``Game.d_patch_logits``, CUT's MSE over the patch map), or with ``per_patch=False`` whose
patch logits are averaged to one logit per image first
(:func:`~jaxgan.translation.models.patch_d_apply`; with LSGAN a different loss, see there;
needed for DAT and the asymmetric one-stage rule). G's loss is ``lambda_GAN * adversarial + PatchNCE`` (a ``g_regularizer``),
so any step of the library trains it (two-stage, one-stage, CoopInit's ``coop_step``,
which uses the teaching loss and no ``g_regularizers``).

CUT's settings: LSGAN loss, ``lambda_GAN = 1``, ``lambda_NCE = 1``, ``nce_T = 0.07``,
256 patches, NCE layers 0, 4, 8, 12, 16, 2-layer 256-unit heads, identity NCE on real B,
Adam(2e-4, b1=0.5, b2=0.999). Loss scale: CUT's LSGAN G loss is ``mean (p - 1)^2``, jaxgan's
``lsgan`` is ``(p - 1)^2 / 2``, so with ``loss='lsgan'`` the NCE term is weighted by
``lambda_NCE / 2`` (:data:`LSGAN_G_SCALE`): G's total loss is then exactly half of CUT's,
which Adam does not see. D's loss equals CUT's ``(MSE(D(y), 1) + MSE(D(G(x)), 0)) / 2``.
"""

from __future__ import annotations

import jax
import optax

from jaxgan import losses
from jaxgan.game import Game, make_apply
from jaxgan.state import GANState, create_state
from jaxgan.translation.models import (
  PatchDiscriminator,
  ResnetGenerator,
  patch_d_apply,
  translation_g_apply,
)
from jaxgan.translation.patchnce import patch_nce_regularizer

# jaxgan's lsgan G loss (p - c)^2 / 2 is half CUT's MSE; the NCE weight follows it.
LSGAN_G_SCALE = 0.5


def _no_latent_sampler(key, n):
  raise ValueError(
    'a translation game has no latent distribution: G translates batch["latent"]["source"]. '
    'Feed batches with a "latent" entry (jaxgan.data.mnist_translation.translation_batches).'
  )


def cut_game(
  g_module: ResnetGenerator,
  d_module: PatchDiscriminator,
  *,
  loss: str = 'lsgan',
  lambda_gan: float = 1.0,
  lambda_nce: float = 1.0,
  num_patches: int = 256,
  temperature: float = 0.07,
  identity: bool = True,
  per_patch: bool = True,
) -> Game:
  """The CUT problem.

  Args:
    g_module: the generator (holds the projection heads).
    d_module: the PatchGAN D.
    loss: a :func:`jaxgan.losses.get_loss` name (CUT: ``'lsgan'``).
    lambda_gan: CUT's ``lambda_GAN``; only the ratio to ``lambda_nce`` matters under Adam,
      so it is applied by dividing the NCE weight (jaxgan's step has no G-loss weight).
    lambda_nce: CUT's ``lambda_NCE``.
    num_patches: PatchNCE positions per layer.
    temperature: PatchNCE temperature.
    identity: the identity NCE term on real B (CUT: on).
    per_patch: every patch logit is a loss term (CUT); ``False`` takes the loss on each
      image's mean patch logit (a named deviation: DAT and the asymmetric one-stage rule
      need one logit per image).

  Returns:
    A :class:`~jaxgan.game.Game` whose ``sample_latents`` raises (the batch supplies ``z``).
  """
  if not isinstance(lambda_gan, int | float) or not lambda_gan > 0:
    raise ValueError(
      f'lambda_gan must be > 0, got {lambda_gan!r}; for NCE-only training use a different loop.'
    )
  if not isinstance(per_patch, bool):
    raise ValueError(f'per_patch must be True (CUT) or False, got {per_patch!r}.')
  scale = LSGAN_G_SCALE if loss == 'lsgan' else 1.0
  nce = patch_nce_regularizer(
    g_module,
    weight=scale * lambda_nce / lambda_gan,
    num_patches=num_patches,
    temperature=temperature,
    identity=identity,
  )
  return Game(
    g_apply=translation_g_apply(g_module),
    d_apply=make_apply(d_module) if per_patch else patch_d_apply(d_module),
    loss=losses.get_loss(loss),
    sample_latents=_no_latent_sampler,
    g_regularizers=(nce,),
    d_batch_coupled=False,  # instance norm only: samples are independent
    d_patch_logits=bool(per_patch),
  )


def cut_optimizer(
  learning_rate: float = 2e-4,
  b1: float = 0.5,
  b2: float = 0.999,
  *,
  total_steps: int | None = None,
  decay_from: float = 0.5,
) -> optax.GradientTransformation:
  """CUT's optimizer for G (with its heads) and D: ``optax.adam(2e-4, 0.5, 0.999)``.

  With ``total_steps``, the learning rate follows CUT's ``linear`` policy: constant for
  the first ``decay_from`` of the run, then linearly down to 0 at ``total_steps`` (CUT
  trains 200 epochs at the base rate, then decays over 200 more, per epoch; here per step).
  ``decay_from=1`` keeps it constant. Without ``total_steps`` the rate is constant.
  """
  if total_steps is None:
    return optax.adam(learning_rate, b1=b1, b2=b2)
  if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
    raise ValueError(
      f'cut_optimizer: total_steps must be an int >= 1 (the run length), got {total_steps!r}.'
    )
  if not 0.0 <= decay_from <= 1.0:
    raise ValueError(f'cut_optimizer: decay_from must be in [0, 1] (CUT: 0.5), got {decay_from!r}.')
  start = round(decay_from * total_steps)
  if start >= total_steps:
    return optax.adam(learning_rate, b1=b1, b2=b2)
  schedule = optax.join_schedules(
    [
      optax.constant_schedule(learning_rate),
      optax.linear_schedule(learning_rate, 0.0, total_steps - start),
    ],
    [start],
  )
  return optax.adam(schedule, b1=b1, b2=b2)


def create_translation_state(
  key: jax.Array,
  *,
  g_module: ResnetGenerator,
  d_module: PatchDiscriminator,
  g_tx: optax.GradientTransformation,
  d_tx: optax.GradientTransformation,
  image_shape: tuple[int, int, int],
  use_ema: bool = False,
  extra: dict | None = None,
) -> GANState:
  """A fresh :class:`~jaxgan.state.GANState` for an image-to-image G (input: images).

  :func:`jaxgan.state.create_state` with G initialized on images ``[2, *image_shape]``.
  """
  if len(image_shape) != 3:
    raise ValueError(f'image_shape must be (H, W, C), got {image_shape!r}.')
  return create_state(
    key,
    g_module=g_module,
    d_module=d_module,
    g_tx=g_tx,
    d_tx=d_tx,
    latent_dim=0,
    image_shape=image_shape,
    use_ema=use_ema,
    extra=extra,
    g_input_shape=tuple(image_shape),
  )
