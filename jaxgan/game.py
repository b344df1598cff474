"""The record of pure functions that defines one GAN problem.

A :class:`Game` is what every step builder takes. Techniques contribute
entries (a D regularizer, an input transform, a D-input perturbation); they do
not subclass anything. The apply convention shared by G, D and every model in
:mod:`jaxgan.models`::

    out, new_model_state = apply(variables, x, train=..., rngs=None)

``variables`` is ``{'params': ..., **model_state}`` (the collections not trained
by gradient: ``batch_stats``, spectral-norm vectors). ``new_model_state`` holds
the updated collections when ``train=True`` and is ``{}`` otherwise; a caller
that wants batch statistics without a state update (attacks, Langevin chains)
calls with ``train=True`` and drops it. G maps latents ``[B, nz]`` to images
``[B, H, W, C]`` in [-1, 1]; D maps images to logits ``[B]`` (``[B, 1]`` is
squeezed, :func:`logits_apply`). Linen modules become apply functions with
:func:`make_apply`, NNX modules with :func:`jaxgan.nnx_adapter.from_nnx`.
Class-conditional games pass a ``label=`` keyword (:class:`Game`).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

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


def takes_train(fn: Callable) -> bool:
  """Whether ``fn`` (a module's ``__call__``) has a parameter named ``train``."""
  try:
    return 'train' in inspect.signature(fn).parameters
  except (TypeError, ValueError):  # builtins without a signature
    return False


def refuse_nnx(module: Any, where: str) -> None:
  """Raises for a Flax NNX module where a Linen module is expected, naming the adapter."""
  if isinstance(module, nnx.Module):
    raise TypeError(
      f'{where} takes a Flax Linen module; {type(module).__name__} is a flax.nnx.Module. Use '
      'jaxgan.nnx_adapter.from_nnx(model), which returns (apply, variables), and '
      'jaxgan.state.create_state_from_variables.'
    )


def make_apply(module: nn.Module) -> ApplyFn:
  """Adapts a Flax Linen module to :class:`ApplyFn`.

  A module whose ``__call__`` has a ``train`` parameter is called with
  ``train=...``; one without it (``__call__(x)``, ``nn.Sequential``) is called
  without, its model-state collections stay mutable (a BatchNorm with a fixed
  ``use_running_average=False`` updates them), and ``train=False`` returns ``{}``
  as the new model state.

  With ``label=`` given (conditional games), the module is called as
  ``__call__(x, label, ...)``: the conditional G and D of :mod:`jaxgan.models`
  take int labels ``[B]`` as their second argument.
  """
  refuse_nnx(module, 'make_apply')
  with_train = takes_train(module.__call__)

  def apply(variables, x, *, train, rngs=None, label=None):
    args = (x,) if label is None else (x, label)
    kwargs = {'train': train} if with_train else {}
    stateful = train or not with_train
    mutable = [name for name in variables if name not in _NOT_STATE] if stateful else False
    if mutable:
      out, new = module.apply(variables, *args, rngs=rngs, mutable=mutable, **kwargs)
      return out, (new if train else {})
    return module.apply(variables, *args, rngs=rngs, **kwargs), {}

  return apply


def check_logits(out: Any, batch_size: int, patches: bool = False) -> Array:
  """D's output as logits: ``[B]`` as is, ``[B, 1]`` squeezed, anything else refused.

  With ``patches`` (:attr:`Game.d_patch_logits`) any ``[B, ...]`` array is accepted as it is:
  one logit per patch, each a term of the loss.
  """
  shape = tuple(getattr(out, 'shape', ()))
  if not hasattr(out, 'shape'):
    raise ValueError(
      f'D must return an array of logits [B] = ({batch_size},), got a {type(out).__name__}; '
      'return the logits alone (extra outputs belong in a separate apply function).'
    )
  if shape == (batch_size,):
    return out
  if patches and len(shape) > 1 and shape[0] == batch_size:
    return out
  if shape == (batch_size, 1):
    return out.reshape(batch_size)
  if patches:
    raise ValueError(
      f'D must return patch logits [B, ...] with B = {batch_size} leading, got shape {shape}.'
    )
  raise ValueError(
    f'D must return one logit per sample, shape [B] = ({batch_size},) or [B, 1], got shape '
    f'{shape} for a batch of {batch_size}; reduce the other axes in your D (e.g. the mean of '
    'patch logits) or return out[:, 0], or set Game(d_patch_logits=True) to make each patch '
    'logit a term of the loss.'
  )


def logits_apply(d_apply: ApplyFn, patches: bool = False) -> ApplyFn:
  """``d_apply`` whose output goes through :func:`check_logits`.

  Idempotent: a function wrapped the same way is returned as it is, one wrapped the other way
  is rewrapped from the function it wraps (a game made by :meth:`Game.replace` with another
  ``d_patch_logits`` checks its own way).
  """
  if getattr(d_apply, 'patches', None) == patches:
    return d_apply
  d_apply = getattr(d_apply, 'unchecked', d_apply)

  def apply(variables, x, **kwargs):
    out, new_model_state = d_apply(variables, x, **kwargs)
    return check_logits(out, jnp.shape(x)[0], patches), new_model_state

  apply.unchecked, apply.patches = d_apply, patches
  return apply


def sample_logits(logits: Array) -> Array:
  """One value per sample: patch logits ``[B, ...]`` averaged over their patch axes, ``[B]`` kept."""
  return jnp.mean(logits, axis=tuple(range(1, logits.ndim))) if logits.ndim > 1 else logits


def label_kwargs(label: Array | None) -> dict:
  """``{'label': label}``, or ``{}`` for ``None``: the apply keywords of one call."""
  return {} if label is None else {'label': label}


def label_aware(fn: Callable) -> Callable:
  """Marks a regularizer as taking the conditional keywords (:class:`Game`)."""
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
    d_apply: discriminator, images -> logits ``[B]`` (or ``[B, 1]``; the
      game stores it wrapped in :func:`logits_apply`, so ``game.d_apply``
      returns ``[B]``), or per-patch logits ``[B, ...]`` with ``d_patch_logits``.
    loss: the adversarial loss.
    sample_latents: ``(key, n) -> z``.
    d_regularizers: extra D terms (R1, GP, ...), each already weighted.
    g_regularizers: extra G terms.
    d_input_transform: applied to real and fake before D (DiffAugment), in
      D's loss and G's loss alike.
    d_perturbation: perturbs D's inputs for D's own loss (DAT).
    d_batch_coupled: whether D mixes the samples of a batch (BatchNorm in
      train mode, minibatch-stddev). ``None`` (default): found from D itself
      on the first call of a step or gradient function that needs it
      (:func:`jaxgan.checks.d_batch_coupled`); ``True``/``False`` overrides
      the detection. The asymmetric one-stage rule is refused for a coupled
      D (``mode='auto'`` then picks ``'exact'``), and so are CoopInit's
      batch-statistics chains.
    num_classes: ``K > 0`` for a class-conditional G and D; 0 for an
      unconditional game.
    d_patch_logits: D returns one logit per patch, ``[B, ...]`` (a PatchGAN), and every
      patch logit is a term of the adversarial loss, whose mean then runs over samples and
      patches (CUT's per-patch MSE). Where one value per sample is needed (CoopInit's
      energy, the balance ratio's means) it is the mean over patches. The asymmetric
      one-stage rule (a per-sample gamma) is then refused (``mode='auto'`` picks
      ``'exact'``), and so is DAT (``d_perturbation``), whose attack takes one logit per sample.

  Class-conditional games (``num_classes > 0``) call both apply functions with
  a ``label=`` keyword, int32 labels ``[B]`` in ``[0, K)``; :func:`make_apply`
  passes them to the module as its second positional argument
  (``__call__(x, y, train)``). Unconditional games never pass ``label``, so
  their calls are unchanged. The real labels come from ``batch['label']``, the
  fake labels are drawn uniformly from the step key (:func:`sample_labels`); D
  regularizers receive ``real_label=``/``fake_label=`` keywords, G regularizers
  ``label=`` (the fake labels), and only those marked with :func:`label_aware`
  are accepted; the DAT hook gets a pair of logits functions
  (:data:`DPerturbation`).
  """

  g_apply: ApplyFn
  d_apply: ApplyFn
  loss: GANLoss
  sample_latents: Callable[[Array, int], Array]
  d_regularizers: Sequence[DRegularizer] = ()
  g_regularizers: Sequence[GRegularizer] = ()
  d_input_transform: InputTransform | None = None
  d_perturbation: DPerturbation | None = None
  d_batch_coupled: bool | None = None
  num_classes: int = 0
  d_patch_logits: bool = False

  def __post_init__(self):
    coupled = self.d_batch_coupled
    if coupled is not None and not isinstance(coupled, bool | np.bool_):
      raise ValueError(
        f'Game.d_batch_coupled must be None (detect from D), True or False, got {coupled!r}.'
      )
    if coupled is not None:
      object.__setattr__(self, 'd_batch_coupled', bool(coupled))
    if not isinstance(self.d_patch_logits, bool | np.bool_):
      raise ValueError(f'Game.d_patch_logits must be True or False, got {self.d_patch_logits!r}.')
    if self.d_patch_logits and self.d_perturbation is not None:
      raise ValueError(
        "Game(d_patch_logits=True) with DAT's d_perturbation: the attack takes one logit per "
        'sample. Average the patch logits in D (e.g. jaxgan.translation.patch_d_apply) and '
        'keep d_patch_logits=False, or drop the perturbation.'
      )
    if callable(self.d_apply):
      object.__setattr__(self, 'd_apply', logits_apply(self.d_apply, bool(self.d_patch_logits)))
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
