"""AdvAug: feature-level adversarial augmentation (Chen et al., NeurIPS 2021).

G and D are split at one intermediate feature, ``G = G2 o G1`` (after G's first
linear / projection layer) and ``D = D2 o D1`` (the input of D's last linear
layer). A few PGD steps find a perturbation ``delta`` of that feature, and the
loss of each player is taken on the clean and on the perturbed branch.

**Where the feature is.** Models mark the feature with Flax's
``h = self.perturb('features', h)``. A perturbation is then passed as the
``'perturbations'`` collection, ``apply({'params': p, **state,
'perturbations': delta}, x, ...)``, and Flax adds ``delta`` to ``h``; without
the collection ``perturb`` is the identity. ``delta`` has the structure of the
collection that ``init`` creates (``{'features': [B, ...]}``, nested under the
submodule's name when a submodule calls ``perturb``);
:func:`perturbation_template` reads it from a module once, per sample.

**The attack.** :func:`pgd_feature_perturbation` runs ``steps`` steps of
``delta <- delta +/- step_size * dir(grad)``, ``dir`` = ``sign`` (``'linf'``)
or the per-sample unit gradient (``'l2'``), optionally projected on the
``eps`` ball. The reference code uses one ``'linf'`` step of 0.01 (CIFAR;
0.001 on (Tiny-)ImageNet), no random start and no projection. The attack runs
on stop-gradient parameters and its result is a constant (``stop_gradient``):
gradients reach the parameters through both branches' forward passes, never
through the construction of ``delta``.

**Direction** (which objective each ``delta`` ascends; lottery.md §3, §7.1):

    direction            real feature (D)    fake feature (D)    G's feature
    -------------------  ------------------  ------------------  ------------------
    'paper'              + D's d_real        + D's d_fake        + G's g_fake
    'paper_literal'      - D's d_real        - D's d_fake        + G's g_fake
    'reference'          + mean D score      + mean D score      + mean D score
    'reference_biggan'   - mean relu(1 - D)  - mean relu(1 - D)  + mean D score

* ``'reference'`` (the default): the official SNGAN code (``functions_adv.py``
  ``PGD``), which ascends the mean output of the head for every perturbation:
  D's score goes up on real and fake features and on G's side. With SNGAN's
  linear head the D-side ``delta`` is ``step_size * sign(w)``, the same for
  every sample, real or fake. Only the fake-feature term is adversarial to its
  player. This is what produced the paper's numbers.
* ``'paper'`` (an option) is the max-min of the paper's eqs. (3) and (5) in the
  paper's own sign convention (D *maximises* ``L_D``, the inner ``min`` over the
  perturbation opposes it; G minimises ``L_G``, the inner ``max`` opposes it):
  every perturbation makes its player's own loss larger. With hinge or logistic
  losses this lowers D's score on real features and raises it on fake ones,
  and lowers it on G's side.
* ``'paper_literal'``: eq. (5) read with the loss D *minimises* in place of
  ``f_D`` (what one gets by plugging the hinge loss into the printed
  equation): the D-side perturbations lower D's loss (real score up, fake
  score down); G's side as ``'paper'``.
* ``'reference_biggan'``: the official BigGAN code (``ProjGAN_adv``), which
  ascends ``-mean relu(1 - D)`` on both D-side features (so samples whose
  score is already >= 1 get ``delta = 0``) and D's mean score on G's side.

**Loss combination.** The reference code trains on ``(clean + adv) / 2``
(``combine='mean'``, the default); the paper writes ``L + lambda * L_adv``
(``combine='sum'`` with ``weight = lambda = 1``). The two differ by a global
factor 2 for ``weight = 1``: identical Adam updates up to Adam's epsilon,
half the step for SGD.

**Two ways in.** :func:`advaug_d_loss` / :func:`advaug_g_loss` return a
player's whole loss (clean and adversarial, combined). :func:`make_d_regularizer`
/ :func:`make_g_regularizer` return only ``weight * L_adv`` in the shape of
``jaxgan.game.Game``'s ``d_regularizers`` / ``g_regularizers`` entries, so the
existing steps add it to their clean loss (the ``'sum'`` form) with no change
to the steps: D's entry receives the inputs D sees (after DiffAugment, as in
the reference); G's entry recomputes G and shows D its images without
DiffAugment, as the reference's adversarial G branch does (only the clean
fakes are augmented).

Costs: each perturbed branch is ``steps`` extra forward+backward passes of the
player's network (for the attack) plus one forward+backward (for the loss).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgan.game import ApplyFn, DRegularizer, GRegularizer, InputTransform
from jaxgan.losses import GANLoss

Array = jax.Array
PyTree = Any
Variables = dict[str, Any]

NORMS = ('linf', 'l2')
DIRECTIONS = ('paper', 'paper_literal', 'reference', 'reference_biggan')
COMBINES = ('mean', 'sum')
COLLECTION = 'perturbations'


# ----------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------


def _check_pgd(steps, step_size, norm, eps) -> None:
  if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
    raise ValueError(f'AdvAug steps must be an int >= 0, got {steps!r} (reference: 1).')
  if not step_size >= 0.0:
    raise ValueError(
      f'AdvAug step_size must be >= 0, got {step_size!r} (reference: 0.01 on CIFAR, '
      '0.001 on (Tiny-)ImageNet).'
    )
  if norm not in NORMS:
    raise ValueError(f'AdvAug norm must be one of {NORMS}, got {norm!r}.')
  if eps is not None and not eps > 0.0:
    raise ValueError(f'AdvAug eps must be > 0 or None (no projection), got {eps!r}.')


@dataclasses.dataclass(frozen=True)
class AdvAugConfig:
  """Options of AdvAug.

  ``steps``, ``step_size``, ``norm``, ``eps``, ``random_start`` and ``combine``
  default to the official SNGAN code (``--gamma 0.01 --step 1``, halves of
  clean and adversarial loss) and ``direction='reference'`` (the code's
  ``PGD``, which ascends D's mean output; ``'paper'`` follows the paper's
  equations instead, see the module docstring).

  Attributes:
    steps: PGD steps (0 turns the attack off: the perturbed branch is clean).
    step_size: PGD step ``gamma``.
    norm: ``'linf'`` (sign steps, the reference) or ``'l2'`` (unit-norm steps
      per sample).
    eps: radius of the ball the perturbation is projected on; ``None`` (the
      reference) never projects, so ``||delta|| <= steps * step_size``.
    random_start: start from a uniform point of the ``eps`` ball (needs
      ``eps``) instead of 0 (the reference).
    direction: which objective each perturbation ascends, see the module
      docstring: ``'reference'`` (the official code, default), ``'paper'``,
      ``'paper_literal'``, ``'reference_biggan'``.
    combine: ``'mean'``: ``(clean + adv) / 2`` (reference code); ``'sum'``:
      ``clean + weight * adv`` (paper).
    weight: ``lambda`` of the ``'sum'`` form and of the regularizer entries.
  """

  steps: int = 1
  step_size: float = 0.01
  norm: str = 'linf'
  eps: float | None = None
  random_start: bool = False
  direction: str = 'reference'
  combine: str = 'mean'
  weight: float = 1.0

  def __post_init__(self):
    _check_pgd(self.steps, self.step_size, self.norm, self.eps)
    if self.random_start and self.eps is None:
      raise ValueError('AdvAug random_start=True needs a radius: set eps (e.g. eps=step_size).')
    if self.direction not in DIRECTIONS:
      raise ValueError(
        f'AdvAug direction must be one of {DIRECTIONS}, got {self.direction!r}; '
        "'reference' is the official SNGAN code (the default), 'paper' the paper's equations."
      )
    if self.combine not in COMBINES:
      raise ValueError(
        f"AdvAug combine must be 'mean' ((clean + adv) / 2) or 'sum' (clean + weight * adv), "
        f'got {self.combine!r}.'
      )
    if not self.weight >= 0.0:
      raise ValueError(f'AdvAug weight must be >= 0, got {self.weight!r}.')


# ----------------------------------------------------------------------------
# Perturbation shapes
# ----------------------------------------------------------------------------


def perturbation_template(
  module: nn.Module, example_input: Array, *, train: bool = False, **call_kwargs
) -> PyTree:
  """The per-sample shapes of a module's ``self.perturb`` features.

  Runs ``module.init`` abstractly (``jax.eval_shape``: no computation) and
  drops the batch axis of every entry of the ``'perturbations'`` collection.

  Args:
    module: a Flax Linen module that calls ``self.perturb(...)``.
    example_input: an input batch ``[B, ...]`` (values unused).
    train: passed to ``__call__`` (jaxgan modules take ``(x, train)``).
    **call_kwargs: other ``__call__`` arguments.

  Returns:
    The collection's structure with ``jax.ShapeDtypeStruct`` leaves of the
    per-sample shape, e.g. ``{'features': ShapeDtypeStruct((128,), float32)}``.
  """
  batch = example_input.shape[0]
  rngs = {'params': jax.random.PRNGKey(0), 'dropout': jax.random.PRNGKey(1)}
  shapes = jax.eval_shape(lambda x: module.init(rngs, x, train=train, **call_kwargs), example_input)
  collection = shapes.get(COLLECTION)
  if not collection:
    raise ValueError(
      f'{type(module).__name__} has no AdvAug feature: its __call__ never calls '
      "self.perturb(...). Add h = self.perturb('features', h) where the feature should "
      'be perturbed (G: after its first linear layer; D: the input of its last linear layer).'
    )

  def per_sample(path, s):
    if s.ndim == 0 or s.shape[0] != batch:
      raise ValueError(
        f'AdvAug feature {jax.tree_util.keystr(path)} of {type(module).__name__} has shape '
        f'{s.shape}, which does not start with the batch size {batch}; perturbed features '
        'must be per-sample arrays [B, ...].'
      )
    return jax.ShapeDtypeStruct(s.shape[1:], s.dtype)

  return jax.tree_util.tree_map_with_path(per_sample, dict(collection))


def zero_perturbation(template: PyTree, batch_size: int) -> PyTree:
  """Zeros of the template's shapes with a leading batch axis ``[B, ...]``."""
  return jax.tree.map(lambda s: jnp.zeros((batch_size, *s.shape), s.dtype), template)


def _with_perturbation(variables: Variables, delta: PyTree) -> Variables:
  return {**variables, COLLECTION: delta}


# ----------------------------------------------------------------------------
# PGD on a pytree of features
# ----------------------------------------------------------------------------


def _per_sample_sq_norm(tree: PyTree) -> Array:
  leaves = jax.tree.leaves(tree)
  return sum(jnp.sum(jnp.square(x).reshape(x.shape[0], -1), axis=1) for x in leaves)


def _scale_per_sample(tree: PyTree, factor: Array) -> PyTree:
  return jax.tree.map(lambda x: x * factor.reshape(-1, *([1] * (x.ndim - 1))).astype(x.dtype), tree)


def _step_direction(grad: PyTree, norm: str) -> PyTree:
  if norm == 'linf':
    return jax.tree.map(jnp.sign, grad)
  sq = _per_sample_sq_norm(grad)
  safe = jnp.where(sq > 0, sq, 1.0)
  return _scale_per_sample(grad, jnp.where(sq > 0, jax.lax.rsqrt(safe), 0.0))


def _project(delta: PyTree, norm: str, eps: float | None) -> PyTree:
  if eps is None:
    return delta
  if norm == 'linf':
    return jax.tree.map(lambda d: jnp.clip(d, -eps, eps), delta)
  sq = _per_sample_sq_norm(delta)
  scale = jnp.minimum(1.0, eps * jax.lax.rsqrt(jnp.where(sq > 0, sq, 1.0)))
  return _scale_per_sample(delta, scale)


def random_start(key: Array, template_delta: PyTree, norm: str, eps: float) -> PyTree:
  """A random point of the ``eps`` ball, per sample, shaped like ``template_delta``.

  ``'linf'``: uniform in ``[-eps, eps]`` elementwise; ``'l2'``: a uniformly
  random direction with a radius uniform in ``[0, eps]``.
  """
  leaves, treedef = jax.tree.flatten(template_delta)
  keys = jax.random.split(key, len(leaves) + 1)
  if norm == 'linf':
    new = [jax.random.uniform(k, x.shape, x.dtype, -eps, eps) for k, x in zip(keys, leaves)]
    return jax.tree.unflatten(treedef, new)
  direction = jax.tree.unflatten(
    treedef, [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)]
  )
  batch = leaves[0].shape[0]
  radius = eps * jax.random.uniform(keys[-1], (batch,))
  return _scale_per_sample(direction, radius * jax.lax.rsqrt(_per_sample_sq_norm(direction)))


def pgd_feature_perturbation(
  loss_of_delta: Callable[[PyTree], Array],
  delta0: PyTree,
  *,
  steps: int,
  step_size: float,
  norm: str = 'linf',
  eps: float | None = None,
  ascend: bool = True,
) -> PyTree:
  """Projected gradient steps on ``loss_of_delta``; the result carries no gradient.

  Each step: ``delta <- P(delta +/- step_size * dir(grad loss_of_delta(delta)))``
  with ``dir = sign`` (``'linf'``) or the gradient divided by its per-sample
  l2 norm over all leaves (``'l2'``; zero where the gradient is zero), ``P`` the
  projection on the ``eps`` ball (none if ``eps`` is None).

  Args:
    loss_of_delta: scalar function of the perturbation pytree (leaves
      ``[B, ...]``). For per-sample ``'l2'`` steps it must not couple samples
      (a mean over the batch is fine).
    delta0: the starting perturbation (zeros in the reference).
    steps: number of steps (a Python int; 0 returns ``delta0``).
    step_size: the step ``gamma``.
    norm: ``'linf'`` or ``'l2'``.
    eps: projection radius or None.
    ascend: step up the gradient (True) or down.

  Returns:
    ``stop_gradient(delta)``, shaped like ``delta0``.
  """
  _check_pgd(steps, step_size, norm, eps)
  sign = 1.0 if ascend else -1.0
  grad_fn = jax.grad(loss_of_delta)

  def body(_, delta):
    step = _step_direction(grad_fn(delta), norm)
    delta = jax.tree.map(lambda d, s: d + (sign * step_size * s).astype(d.dtype), delta, step)
    return _project(delta, norm, eps)

  # Unrolled: XLA on CPU runs convolutions in a loop body ~3x slower.
  delta = jax.lax.fori_loop(0, steps, body, delta0, unroll=True)
  return jax.lax.stop_gradient(delta)


# ----------------------------------------------------------------------------
# Attack objectives and attacks
# ----------------------------------------------------------------------------


def attack_objective(direction: str, role: str, loss: GANLoss) -> Callable[[Array], Array]:
  """The scalar each perturbation ascends, as a function of D's logits ``[B]``.

  Args:
    direction: one of :data:`DIRECTIONS` (see the module docstring).
    role: ``'real'`` / ``'fake'`` (D's features) or ``'g'`` (G's feature).
    loss: the GAN loss.
  """
  if role not in ('real', 'fake', 'g'):
    raise ValueError(f"role must be 'real', 'fake' or 'g', got {role!r}.")
  if direction not in DIRECTIONS:
    raise ValueError(f'direction must be one of {DIRECTIONS}, got {direction!r}.')
  own = {'real': loss.d_real, 'fake': loss.d_fake, 'g': loss.g_fake}[role]
  if direction == 'paper' or (direction == 'paper_literal' and role == 'g'):
    return lambda logits: jnp.mean(own(logits))
  if direction == 'paper_literal':
    return lambda logits: -jnp.mean(own(logits))
  if direction == 'reference_biggan' and role != 'g':
    return lambda logits: -jnp.mean(jax.nn.relu(1.0 - logits))
  return jnp.mean  # 'reference', and BigGAN's G side


def _start(key: Array, template: PyTree, batch: int, cfg: AdvAugConfig) -> PyTree:
  zeros = zero_perturbation(template, batch)
  if not cfg.random_start:
    return zeros
  return random_start(key, zeros, cfg.norm, cfg.eps)


def _attack(objective, key, template, batch, cfg):
  return pgd_feature_perturbation(
    objective,
    _start(key, template, batch, cfg),
    steps=cfg.steps,
    step_size=cfg.step_size,
    norm=cfg.norm,
    eps=cfg.eps,
  )


def _perturbed(apply: ApplyFn, variables: Variables, x: Array, delta: PyTree) -> Array:
  """The network's output with ``delta`` added at its feature (train mode, state dropped)."""
  out, _ = apply(_with_perturbation(variables, delta), x, train=True)
  return out


def _d_logits(d_apply: ApplyFn, d_variables: Variables, x: Array) -> Array:
  out, _ = d_apply(d_variables, x, train=True)
  return out


def attack_d_features(
  d_apply: ApplyFn,
  d_variables: Variables,
  real: Array,
  fake: Array,
  loss: GANLoss,
  key: Array,
  cfg: AdvAugConfig,
  d_template: PyTree,
) -> tuple[PyTree, PyTree]:
  """Perturbations of D's feature for the real and the fake batch.

  Args:
    d_apply: D's apply function (``jaxgan.game.ApplyFn``); D calls
      ``self.perturb`` on the input of its last linear layer.
    d_variables: ``{'params': ..., **model_state}``; used with stop-gradient,
      batch statistics in train mode, state updates dropped.
    real: the real images D sees ``[B, H, W, C]`` (after DiffAugment).
    fake: the fake images D sees ``[B', H, W, C]``.
    loss: the GAN loss.
    key: PRNG key (used by ``random_start`` only).
    cfg: the options.
    d_template: :func:`perturbation_template` of D.

  Returns:
    ``(delta_real, delta_fake)``, pytrees of the collection's structure with
    leaves ``[B, ...]`` / ``[B', ...]``, without gradient.
  """
  frozen = jax.lax.stop_gradient(d_variables)
  k_real, k_fake = jax.random.split(key)
  obj_real = attack_objective(cfg.direction, 'real', loss)
  obj_fake = attack_objective(cfg.direction, 'fake', loss)
  delta_real = _attack(
    lambda d: obj_real(_perturbed(d_apply, frozen, real, d)), k_real, d_template, real.shape[0], cfg
  )
  delta_fake = _attack(
    lambda d: obj_fake(_perturbed(d_apply, frozen, fake, d)), k_fake, d_template, fake.shape[0], cfg
  )
  return delta_real, delta_fake


def _transform(fn: InputTransform | None, x: Array, key: Array) -> Array:
  return x if fn is None else fn(x, key)


def attack_g_feature(
  g_apply: ApplyFn,
  d_apply: ApplyFn,
  g_variables: Variables,
  d_variables: Variables,
  z: Array,
  loss: GANLoss,
  key: Array,
  cfg: AdvAugConfig,
  g_template: PyTree,
) -> PyTree:
  """Perturbation of G's feature (after its first linear layer) for latents ``z``.

  D sees G's images without DiffAugment, as in the reference, whose
  adversarial G branch augments nothing.

  Args:
    g_apply: G's apply function; G calls ``self.perturb`` after its first
      linear / projection layer.
    d_apply: D's apply function.
    g_variables: G's ``{'params': ..., **model_state}`` (used with
      stop-gradient; state updates dropped).
    d_variables: D's variables (stop-gradient).
    z: latents ``[B, nz]``.
    loss: the GAN loss.
    key: PRNG key (used by ``random_start`` only).
    cfg: the options.
    g_template: :func:`perturbation_template` of G.

  Returns:
    ``delta`` with leaves ``[B, ...]``, without gradient.
  """
  g_frozen = jax.lax.stop_gradient(g_variables)
  d_frozen = jax.lax.stop_gradient(d_variables)
  objective = attack_objective(cfg.direction, 'g', loss)

  def obj(delta):
    return objective(_d_logits(d_apply, d_frozen, _perturbed(g_apply, g_frozen, z, delta)))

  return _attack(obj, key, g_template, z.shape[0], cfg)


# ----------------------------------------------------------------------------
# Adversarial terms and whole losses
# ----------------------------------------------------------------------------


def d_adversarial_loss(
  d_apply: ApplyFn,
  d_variables: Variables,
  real: Array,
  fake: Array,
  loss: GANLoss,
  key: Array,
  cfg: AdvAugConfig,
  d_template: PyTree,
) -> Array:
  """D's loss on the perturbed features: ``mean d_real(q') + mean d_fake(p')``.

  ``q' = D2(D1(real) + delta_real)``, ``p'`` likewise, with the perturbations of
  :func:`attack_d_features` held constant; gradients reach ``d_variables``'
  params through both forward passes. Arguments as in
  :func:`attack_d_features`.
  """
  delta_real, delta_fake = attack_d_features(
    d_apply, d_variables, real, fake, loss, key, cfg, d_template
  )
  q = _perturbed(d_apply, d_variables, real, delta_real)
  p = _perturbed(d_apply, d_variables, fake, delta_fake)
  return loss.d_loss(q, p)


def g_adversarial_loss(
  g_apply: ApplyFn,
  d_apply: ApplyFn,
  g_variables: Variables,
  d_variables: Variables,
  z: Array,
  loss: GANLoss,
  key: Array,
  cfg: AdvAugConfig,
  g_template: PyTree,
) -> Array:
  """G's loss on the perturbed feature: ``mean g_fake(D(G2(G1(z) + delta)))``.

  ``delta`` from :func:`attack_g_feature`, held constant; no DiffAugment (the
  reference's adversarial G branch). Arguments as there.
  """
  delta = attack_g_feature(
    g_apply, d_apply, g_variables, d_variables, z, loss, key, cfg, g_template
  )
  images = _perturbed(g_apply, g_variables, z, delta)
  return loss.g_loss(_d_logits(d_apply, d_variables, images))


def combine_losses(clean: Array, adv: Array, cfg: AdvAugConfig) -> Array:
  """``(clean + adv) / 2`` (``'mean'``) or ``clean + weight * adv`` (``'sum'``)."""
  if cfg.combine == 'mean':
    return 0.5 * (clean + adv)
  return clean + cfg.weight * adv


def advaug_d_loss(
  d_apply: ApplyFn,
  d_variables: Variables,
  real: Array,
  fake: Array,
  loss: GANLoss,
  key: Array,
  cfg: AdvAugConfig,
  d_template: PyTree,
) -> Array:
  """D's whole AdvAug loss: clean and perturbed branches combined per ``cfg``.

  Both branches run D in train mode and drop its state updates (a step that
  needs them runs the clean forward itself and adds
  :func:`make_d_regularizer`'s term instead). ``real`` and ``fake`` are what
  D sees (apply DiffAugment before). Arguments as in
  :func:`attack_d_features`.

  Returns:
    A scalar.
  """
  clean = loss.d_loss(_d_logits(d_apply, d_variables, real), _d_logits(d_apply, d_variables, fake))
  adv = d_adversarial_loss(d_apply, d_variables, real, fake, loss, key, cfg, d_template)
  return combine_losses(clean, adv, cfg)


def advaug_g_loss(
  g_apply: ApplyFn,
  d_apply: ApplyFn,
  g_variables: Variables,
  d_variables: Variables,
  z: Array,
  loss: GANLoss,
  key: Array,
  cfg: AdvAugConfig,
  g_template: PyTree,
  input_transform: InputTransform | None = None,
) -> Array:
  """G's whole AdvAug loss: clean and perturbed branches combined per ``cfg``.

  The clean branch is ``mean g_fake(D(input_transform(G(z))))`` (DiffAugment
  on G's images, as in the reference); the perturbed branch is
  :func:`g_adversarial_loss`, which sees G's images untransformed (the
  reference's). Arguments as in :func:`attack_g_feature`.

  Returns:
    A scalar.
  """
  k_clean, k_adv = jax.random.split(key)
  images, _ = g_apply(g_variables, z, train=True)
  images = _transform(input_transform, images, k_clean)
  clean = loss.g_loss(_d_logits(d_apply, d_variables, images))
  adv = g_adversarial_loss(
    g_apply, d_apply, g_variables, d_variables, z, loss, k_adv, cfg, g_template
  )
  return combine_losses(clean, adv, cfg)


# ----------------------------------------------------------------------------
# Game hooks
# ----------------------------------------------------------------------------


def make_d_regularizer(
  d_apply: ApplyFn, loss: GANLoss, cfg: AdvAugConfig, d_template: PyTree
) -> DRegularizer:
  """AdvAug's D term as a ``Game.d_regularizers`` entry.

  Returns ``reg(d_variables, real, fake, key) -> weight * d_adversarial_loss``;
  the step adds it to D's clean loss (``clean + weight * adv``, the paper's
  form; see the module docstring for the reference's ``/ 2``). The step passes
  the inputs D sees, after DiffAugment.
  """
  _check_template(d_template, 'd_template')

  def reg(d_variables, real, fake, key):
    adv = d_adversarial_loss(d_apply, d_variables, real, fake, loss, key, cfg, d_template)
    return cfg.weight * adv

  return reg


def make_g_regularizer(
  g_apply: ApplyFn,
  d_apply: ApplyFn,
  loss: GANLoss,
  cfg: AdvAugConfig,
  g_template: PyTree,
) -> GRegularizer:
  """AdvAug's G term as a ``Game.g_regularizers`` entry.

  Returns ``reg(g_variables, d_variables, z, key) -> weight *
  g_adversarial_loss``, added by the step to G's clean loss (which the step
  computes on the DiffAugmented fakes). G is run again on ``z`` with the
  perturbation (the reference recomputes G's first layer for this branch
  too), and D sees its images without DiffAugment, as in the reference.
  """
  _check_template(g_template, 'g_template')

  def reg(g_variables, d_variables, z, key):
    adv = g_adversarial_loss(
      g_apply, d_apply, g_variables, d_variables, z, loss, key, cfg, g_template
    )
    return cfg.weight * adv

  return reg


def _check_template(template: PyTree, name: str) -> None:
  leaves = jax.tree.leaves(template)
  if not leaves or not all(hasattr(x, 'shape') and hasattr(x, 'dtype') for x in leaves):
    raise ValueError(
      f'{name} must be the per-sample feature shapes of the model, as returned by '
      f'jaxgan.advaug.perturbation_template(module, example_input); got {template!r}.'
    )
