"""Gradient penalties for D used by the reference baselines (R1, WGAN-GP).

Each factory returns a :data:`jaxgan.game.DRegularizer`,
``(d_variables, real, fake, key) -> scalar``, already multiplied by its weight,
to be listed in ``Game.d_regularizers``. D's statistics are used in train mode
and not stored (the D-loss forward stores them). Both are label-aware
(:func:`jaxgan.game.label_aware`): in a conditional game D sees each image with
its class label (WGAN-GP's interpolates take the real labels).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxgan.game import ApplyFn, DRegularizer, label_aware, label_kwargs


def _input_grad_sq_norms(
  d_apply: ApplyFn, d_variables: dict, x: jax.Array, label: jax.Array | None = None
) -> jax.Array:
  """Per-sample ``||grad_x sum D(x)||^2``, shape ``[B]`` (labels ``[B]`` if conditional).

  D treats samples independently in the baselines that use these penalties, so
  the gradient of the summed logits gives each sample's own input gradient.
  """

  def summed(x):
    out, _ = d_apply(d_variables, x, train=True, **label_kwargs(label))
    return jnp.sum(out)

  grads = jax.grad(summed)(x)
  return jnp.sum(jnp.square(grads).reshape(grads.shape[0], -1), axis=1)


def r1_penalty(d_apply: ApplyFn, weight: float) -> DRegularizer:
  """R1 (Mescheder et al. 2018): ``weight / 2 * mean ||grad_x D(x_real)||^2``."""
  if weight < 0:
    raise ValueError(
      f'r1 weight must be >= 0, got {weight} (typical: 10 for 64x64, 0.01-1 for 32x32).'
    )

  @label_aware
  def reg(d_variables, real, fake, key, real_label=None, fake_label=None):
    del fake, key, fake_label
    return 0.5 * weight * jnp.mean(_input_grad_sq_norms(d_apply, d_variables, real, real_label))

  return reg


def wgan_gp_penalty(d_apply: ApplyFn, weight: float, target: float = 1.0) -> DRegularizer:
  """WGAN-GP (Gulrajani et al. 2017): ``weight * mean (||grad_x D(x_hat)|| - target)^2``.

  ``x_hat`` are random interpolates between real and fake samples.
  """
  if weight < 0:
    raise ValueError(f'wgan-gp weight must be >= 0, got {weight} (the paper uses 10).')

  @label_aware
  def reg(d_variables, real, fake, key, real_label=None, fake_label=None):
    del fake_label
    eps = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
    x_hat = eps * real + (1.0 - eps) * fake
    norms = jnp.sqrt(_input_grad_sq_norms(d_apply, d_variables, x_hat, real_label) + 1e-12)
    return weight * jnp.mean(jnp.square(norms - target))

  return reg
