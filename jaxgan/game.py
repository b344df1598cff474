"""The record of pure functions that defines one GAN problem.

A :class:`Game` is what every step builder takes. Techniques contribute
entries (a D regularizer, an input transform, a D-input perturbation); they do
not subclass anything.

The apply convention shared by G, D and every model in :mod:`jaxgan.models`::

    out, new_model_state = apply(variables, x, train=..., rngs=None)

``variables`` is ``{'params': ..., **model_state}`` (model state: the Flax
collections that are not trained by gradient, e.g. ``batch_stats`` and the
spectral-norm vectors). ``new_model_state`` holds the updated collections when
``train=True`` and is ``{}`` otherwise. A caller that wants batch statistics but
no state update (Langevin chains, adversarial attacks) calls with ``train=True``
and drops ``new_model_state``.

G maps latents ``[B, nz]`` to images ``[B, H, W, C]`` in [-1, 1]; D maps images
to logits ``[B]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgan.losses import GANLoss

Array = jax.Array
PyTree = Any
Variables = dict[str, Any]


class ApplyFn(Protocol):
  def __call__(
    self, variables: Variables, x: Array, *, train: bool, rngs: dict | None = None
  ) -> tuple[Array, dict]: ...


# (d_variables, real, fake, key) -> scalar, added to D's loss (already weighted).
DRegularizer = Callable[[Variables, Array, Array, Array], Array]
# (g_variables, d_variables, z, key) -> scalar, added to G's loss.
GRegularizer = Callable[[Variables, Variables, Array, Array], Array]
# (x, key) -> x: differentiable transform of every batch D sees (DiffAugment).
InputTransform = Callable[[Array, Array], Array]
# (d_logits_fn, real, fake, key) -> (real_adv, fake_adv): perturbs D's inputs for
# D's loss (DAT). d_logits_fn(x) -> [B] logits with frozen statistics and no
# gradient to D's params; the returned arrays carry no gradient of the attack
# (the step adds them as ``x + stop_gradient(x_adv - x)``).
DPerturbation = Callable[[Callable[[Array], Array], Array, Array, Array], tuple[Array, Array]]


# Collections that are inputs, never model state: trained params, and the
# feature perturbations that AdvAug passes to ``self.perturb`` hooks.
_NOT_STATE = ('params', 'perturbations')


def make_apply(module: nn.Module) -> ApplyFn:
  """Adapts a Flax Linen module whose ``__call__(x, train)`` to :class:`ApplyFn`."""

  def apply(variables, x, *, train, rngs=None):
    mutable = [name for name in variables if name not in _NOT_STATE] if train else False
    if mutable:
      return module.apply(variables, x, train=train, rngs=rngs, mutable=mutable)
    return module.apply(variables, x, train=train, rngs=rngs), {}

  return apply


def gaussian_latents(dim: int) -> Callable[[Array, int], Array]:
  """Latent sampler ``(key, n) -> z`` of standard normals, shape ``[n, dim]``."""

  def sample(key, n):
    return jax.random.normal(key, (n, dim), jnp.float32)

  return sample


@dataclasses.dataclass(frozen=True)
class Game:
  """One GAN problem as pure functions.

  Attributes:
    g_apply: generator, latents ``[B, nz]`` -> images ``[B, H, W, C]``.
    d_apply: discriminator, images -> logits ``[B]``.
    loss: the adversarial loss.
    sample_latents: ``(key, n) -> z``.
    d_regularizers: extra D terms (R1, GP, ...), each already weighted.
    g_regularizers: extra G terms.
    d_input_transform: applied to real and fake before D (DiffAugment), in
      D's loss and G's loss alike.
    d_perturbation: perturbs D's inputs for D's own loss (DAT).
    d_batch_coupled: D mixes samples of a batch (BatchNorm in train mode,
      minibatch-stddev). The asymmetric one-stage rule is refused for such a D.
  """

  g_apply: ApplyFn
  d_apply: ApplyFn
  loss: GANLoss
  sample_latents: Callable[[Array, int], Array]
  d_regularizers: Sequence[DRegularizer] = ()
  g_regularizers: Sequence[GRegularizer] = ()
  d_input_transform: InputTransform | None = None
  d_perturbation: DPerturbation | None = None
  d_batch_coupled: bool = False

  def replace(self, **changes) -> Game:
    return dataclasses.replace(self, **changes)
