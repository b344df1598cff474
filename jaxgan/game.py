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

Class-conditional games (``Game.num_classes > 0``) call both apply functions
with a ``label=`` keyword, int32 labels ``[B]``; :func:`make_apply` passes them
to the module as its second positional argument (``__call__(x, y, train)``).
Unconditional games never pass ``label``, so their calls are unchanged. In a
conditional game the real labels come from ``batch['label']`` and the fake
labels are drawn uniformly from the step key (:func:`sample_labels`); D
regularizers receive ``real_label=``/``fake_label=`` keywords, G regularizers
``label=`` (the fake labels), and only those marked with :func:`label_aware`
are accepted; the DAT hook gets a pair of logits functions (see
:data:`DPerturbation`).
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
    self,
    variables: Variables,
    x: Array,
    *,
    train: bool,
    rngs: dict | None = None,
    label: Array | None = None,
  ) -> tuple[Array, dict]: ...


# (d_variables, real, fake, key) -> scalar, added to D's loss (already weighted).
# Conditional games call it with real_label=, fake_label= keywords as well.
DRegularizer = Callable[[Variables, Array, Array, Array], Array]
# (g_variables, d_variables, z, key) -> scalar, added to G's loss. ``z`` is G's
# input: sampled latents, or the batch's ``'latent'`` entry (any pytree, e.g. the
# source and target images of a translation task). Conditional games call it with
# label= (the fake labels of z) as well.
GRegularizer = Callable[[Variables, Variables, Any, Array], Array]
# (x, key) -> x: differentiable transform of every batch D sees (DiffAugment).
InputTransform = Callable[[Array, Array], Array]
# (d_logits_fn, real, fake, key) -> (real_adv, fake_adv): perturbs D's inputs for
# D's loss (DAT). d_logits_fn(x) -> [B] logits with frozen statistics and no
# gradient to D's params; the returned arrays carry no gradient of the attack
# (the step adds them as ``x + stop_gradient(x_adv - x)``). In a conditional
# game d_logits_fn is a pair (real_logits_fn, fake_logits_fn), each closing over
# its batch's labels.
DPerturbation = Callable[[Callable[[Array], Array], Array, Array, Array], tuple[Array, Array]]


# Collections that are inputs, never model state: trained params, and the
# feature perturbations that AdvAug passes to ``self.perturb`` hooks.
_NOT_STATE = ('params', 'perturbations')


def make_apply(module: nn.Module) -> ApplyFn:
  """Adapts a Flax Linen module whose ``__call__(x, train)`` to :class:`ApplyFn`.

  With ``label=`` given (conditional games), the module is called as
  ``__call__(x, label, train=...)``: the conditional G and D of
  :mod:`jaxgan.models` take int labels ``[B]`` as their second argument.
  """

  def apply(variables, x, *, train, rngs=None, label=None):
    args = (x,) if label is None else (x, label)
    mutable = [name for name in variables if name not in _NOT_STATE] if train else False
    if mutable:
      return module.apply(variables, *args, train=train, rngs=rngs, mutable=mutable)
    return module.apply(variables, *args, train=train, rngs=rngs), {}

  return apply


def label_kwargs(label: Array | None) -> dict:
  """``{'label': label}``, or ``{}`` for ``None``: the apply keywords of one call."""
  return {} if label is None else {'label': label}


def label_aware(fn: Callable) -> Callable:
  """Marks a regularizer as taking the conditional keywords (module docstring)."""
  fn.accepts_labels = True
  return fn


def accepts_labels(fn: Callable) -> bool:
  """Whether ``fn`` was marked with :func:`label_aware`."""
  return bool(getattr(fn, 'accepts_labels', False))


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
    num_classes: ``K > 0`` for a class-conditional G and D (labels ``[B]`` in
      ``[0, K)`` go to both, module docstring); 0 for an unconditional game.
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
  num_classes: int = 0

  def __post_init__(self):
    k = self.num_classes
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
      raise ValueError(
        f'Game.num_classes must be an int >= 0 (0: unconditional), got {k!r}; use the '
        "models' num_classes."
      )

  @property
  def conditional(self) -> bool:
    """True when G and D take class labels."""
    return self.num_classes > 0

  def replace(self, **changes) -> Game:
    return dataclasses.replace(self, **changes)


def sample_labels(game: Game, key: Array, n: int) -> Array | None:
  """Uniform fake labels ``[n]`` int32 in ``[0, K)``; ``None`` for an unconditional game."""
  if not game.conditional:
    return None
  return jax.random.randint(key, (n,), 0, game.num_classes, jnp.int32)


def check_label_regularizers(game: Game, where: str) -> None:
  """Refuses, before tracing, regularizers of a conditional game that ignore labels."""
  if not game.conditional:
    return
  for kind, regs in (
    ('d_regularizers', game.d_regularizers),
    ('g_regularizers', game.g_regularizers),
  ):
    for reg in regs:
      if not accepts_labels(reg):
        name = getattr(reg, '__qualname__', type(reg).__name__)
        raise ValueError(
          f'{where}: Game.{kind} entry {name} does not take class labels, but the game is '
          f'conditional (num_classes={game.num_classes}). Use a label-aware regularizer '
          '(jaxgan.regularizers.r1_penalty / wgan_gp_penalty, biggan.ortho_g_regularizer), '
          'mark your own with jaxgan.game.label_aware (it then receives real_label=/'
          'fake_label= or label= keywords), or drop it.'
        )
