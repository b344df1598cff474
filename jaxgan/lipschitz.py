"""A monitor of D's input-gradient norms (how Lipschitz D is where it is used).

:func:`input_gradient_norms` reports the mean and max over the batch of
``||grad_x D(x_i)||_2`` on real samples, fake samples and random
interpolates between them. Gradient penalties and DAT act on these numbers.
Log them with and without a technique to watch it work. It needs only
``d_logits_fn(x) -> [B]``, for example D with frozen statistics
(``jaxgan.steps.frozen_logits_fn(game, state.d.variables)``).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Array = jax.Array

PARTS = ('real', 'fake', 'interp')


def per_sample_input_gradient_norms(d_logits_fn: Callable[[Array], Array], x: Array) -> Array:
  """``||grad_x D(x_i)||_2`` for each sample, shape ``[B]``.

  This is the gradient of ``sum_i D(x_i)``. For a D that treats samples
  independently, that is each sample's own input gradient. For a
  batch-coupled D (BatchNorm in train mode), it also contains the other
  samples' dependence on ``x_i``.

  Args:
    d_logits_fn: ``x [B, ...] -> logits [B]``.
    x: inputs ``[B, H, W, C]`` (or ``[B, D]``).
  """
  grads = jax.grad(lambda u: jnp.sum(d_logits_fn(u)))(jax.lax.stop_gradient(x))
  return jnp.sqrt(jnp.sum(jnp.square(grads).reshape(grads.shape[0], -1), axis=1))


def input_gradient_norms(
  d_logits_fn: Callable[[Array], Array],
  real: Array,
  fake: Array,
  key: Array,
  *,
  prefix: str = 'lipschitz',
) -> dict[str, Array]:
  """Mean and max input-gradient norm of D on real, fake and interpolated samples.

  The interpolates are ``eps_i * real_i + (1 - eps_i) * fake_i``, with
  ``eps = jax.random.uniform(key, (B, 1, ..., 1))`` (the WGAN-GP points).
  The function is pure and jit-able.

  Args:
    d_logits_fn: ``x [B, ...] -> logits [B]``.
    real: real batch ``[B, H, W, C]``.
    fake: fake batch, same shape as ``real``.
    key: PRNG key for the interpolation weights.
    prefix: metric name prefix.

  Returns:
    A flat dict of scalars: ``'{prefix}/{part}_mean'`` and
    ``'{prefix}/{part}_max'`` for ``part`` in ``real``, ``fake``, ``interp``.
  """
  if real.shape != fake.shape:
    raise ValueError(
      f'input_gradient_norms: real and fake must have the same shape to interpolate, got '
      f'{tuple(real.shape)} and {tuple(fake.shape)}; pass equally sized batches.'
    )
  if real.ndim < 2 or not jnp.issubdtype(real.dtype, jnp.floating):
    raise ValueError(
      f'input_gradient_norms: expected float batches [B, ...] with B first, got shape '
      f'{tuple(real.shape)} and dtype {real.dtype}.'
    )
  eps = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
  inputs = {'real': real, 'fake': fake, 'interp': eps * real + (1.0 - eps) * fake}
  out = {}
  for part in PARTS:
    norms = per_sample_input_gradient_norms(d_logits_fn, inputs[part])
    out[f'{prefix}/{part}_mean'] = jnp.mean(norms)
    out[f'{prefix}/{part}_max'] = jnp.max(norms)
  return out
