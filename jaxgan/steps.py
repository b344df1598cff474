"""The alternating (two-stage) GAN step and the helpers every step shares.

A step is ``step(state, batch) -> (state, metrics)``: pure, jit-able, compiled once.
``batch['image']`` holds ``n_dis * B`` real images (one batch of ``B`` per D update) and, in a
class-conditional game, ``batch['label']`` their labels; ``metrics`` is a flat dict of scalars.
Randomness comes from ``fold_in(state.rng, state.step)``, so a resumed run draws the same numbers.

Every step is a thin wrapper over gradient functions a user can call from a loop of their own
(a ``TrainState``, an ``nnx.Optimizer``, any optax chain): :func:`d_gradients` and
:func:`g_gradients` here, over :func:`d_player_loss` and :func:`g_player_loss` (each player's
loss with every game transform: DiffAugment, the DAT perturbation, regularizers, labels);
:func:`jaxgan.onestage.gradients` and :func:`jaxgan.coopinit.gradients` for the other steps.

A step checks its inputs once, before compiling (:mod:`jaxgan.checks`). Called on concrete
arrays it compiles itself (``jax.jit``, no donation); under a caller's ``jit``, ``pmap`` or
``shard_map`` it is traced as a pure function. A state that keeps an EMA of G
(``create_state(use_ema=True)``) has it updated with ``ema_decay``, or
:data:`DEFAULT_EMA_DECAY` when that is ``None``, under the constraints of G's optimizer
(:func:`constrain_params`: pruned weights stay zero).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxgan import checks
from jaxgan.checks import check_image_batch
from jaxgan.game import (
  ApplyFn,
  DPerturbation,
  Game,
  check_label_regularizers,
  label_kwargs,
  sample_labels,
)
from jaxgan.state import GANState, Player, split_variables

Array = jax.Array
PyTree = Any
Step = Callable[[GANState, dict], tuple[GANState, dict]]

# The EMA decay of G's params when a step is built with ema_decay=None.
DEFAULT_EMA_DECAY = 0.999


# ----------------------------------------------------------------------------
# Shared helpers
# ----------------------------------------------------------------------------


def step_key(state: GANState, axis_name: str | None = None) -> Array:
  """The key of the current step: ``fold_in(state.rng, state.step)``.

  Under ``pmap``/``shard_map`` (``axis_name`` given) the device index is folded
  in as well, so each device draws its own latents.
  """
  key = jax.random.fold_in(state.rng, state.step)
  if axis_name is not None:
    key = jax.random.fold_in(key, jax.lax.axis_index(axis_name))
  return key


def cross_replica_mean(tree: PyTree, axis_name: str | None) -> PyTree:
  """``pmean`` of the float leaves over ``axis_name`` (identity when ``None``).

  Integer leaves (an NNX model's RNG counters and keys) are the same on every
  device and are kept as they are.
  """
  if axis_name is None:
    return tree

  def mean(x):
    return jax.lax.pmean(x, axis_name) if jnp.issubdtype(jnp.result_type(x), jnp.inexact) else x

  return jax.tree.map(mean, tree)


def apply_gradients(
  player: Player,
  tx: optax.GradientTransformation,
  grads: PyTree,
  model_state: dict,
  *,
  weight_clip: float | None = None,
) -> Player:
  """One optimizer update of ``player`` with ``grads``; stores ``model_state``.

  ``weight_clip`` clamps every parameter to ``[-c, c]`` after the update (the
  WGAN critic of the reference code).
  """
  updates, opt_state = tx.update(grads, player.opt_state, player.params)
  params = optax.apply_updates(player.params, updates)
  if weight_clip is not None:
    params = jax.tree.map(lambda w: jnp.clip(w, -weight_clip, weight_clip), params)
  return Player(params=params, model_state=model_state, opt_state=opt_state)


def _constrains(node: Any) -> bool:
  return callable(getattr(node, 'constrain_params', None))


def constrain_params(params: PyTree, opt_state: PyTree) -> PyTree:
  """``params`` under every constraint that ``opt_state`` declares.

  An optimizer whose state has a ``constrain_params(params) -> params`` method
  keeps the params it updates in a set: the state of
  :func:`jaxgan.sparse.masked_optimizer` keeps pruned weights at exactly zero.
  This applies the same constraints to another tree shaped like the params
  (G's EMA). Without such a state ``params`` is returned as it is.
  """
  for node in jax.tree.leaves(opt_state, is_leaf=_constrains):
    if _constrains(node):
      params = node.constrain_params(params)
  return params


def update_ema(ema_params: PyTree | None, g: Player, decay: float | None) -> PyTree | None:
  """EMA of G's params: ``decay * ema + (1 - decay) * params``.

  The EMA keeps the constraints of G's optimizer (:func:`constrain_params`):
  with sparse masks, pruned weights are exactly zero in the EMA generator too.
  """
  if ema_params is None or decay is None:
    return ema_params
  ema = optax.incremental_update(g.params, ema_params, step_size=1.0 - decay)
  return constrain_params(ema, g.opt_state)


def merge_model_state(old: dict, new: dict) -> dict:
  """``old`` with the collections in ``new`` replaced."""
  return {**old, **new}


def frozen_logits(
  d_apply: ApplyFn, d_variables: dict, label: Array | None = None
) -> Callable[[Array], Array]:
  """D as ``x -> logits`` with stop-gradient variables and statistics not stored.

  Batch statistics are used (train mode) but the updated collections are
  dropped, as attacks and Langevin chains need. ``label`` (``[B]``,
  conditional games) is the class of every ``x`` the function is called on.
  """
  frozen = jax.lax.stop_gradient(d_variables)

  def logits(x):
    out, _ = d_apply(frozen, x, train=True, **label_kwargs(label))
    return out

  return logits


def frozen_logits_fn(
  game: Game, d_variables: dict, label: Array | None = None
) -> Callable[[Array], Array]:
  """:func:`frozen_logits` of the game's D."""
  return frozen_logits(game.d_apply, d_variables, label)


# fold_in constant deriving a fake batch's label key from its latent key: the
# unconditional key splits stay exactly as they were.
_LABEL_FOLD = 0x1ABE1


def fake_labels(game: Game, z_key: Array, n: int) -> Array | None:
  """Uniform fake labels ``[n]`` for the latents drawn with ``z_key`` (``None`` if unconditional)."""
  if not game.conditional:
    return None
  return sample_labels(game, jax.random.fold_in(z_key, _LABEL_FOLD), n)


def split_labels(batch: dict, game: Game, n_dis: int, *, where: str) -> Array | None:
  """``batch['label']`` ``[n_dis * B] -> [n_dis, B]`` int32 for a conditional game.

  Returns ``None`` for an unconditional game (a ``'label'`` entry is then
  ignored, as before).

  Raises:
    ValueError: (at trace time) a conditional game without integer labels
      ``[n_dis * B]`` in the batch.
  """
  if not game.conditional:
    return None
  rows = batch['image'].shape[0]
  if 'label' not in batch:
    raise ValueError(
      f'{where}: the game is conditional (num_classes={game.num_classes}) but the batch has no '
      f'"label" entry; feed batch["label"] int32 [{rows}] with the real images\' classes, or '
      'use models with num_classes=0.'
    )
  y = batch['label']
  if tuple(jnp.shape(y)) != (rows,) or not jnp.issubdtype(jnp.result_type(y), jnp.integer):
    raise ValueError(
      f'{where}: batch["label"] must be integers of shape [{rows}] (one per image row), got '
      f'shape {tuple(jnp.shape(y))} and dtype {jnp.result_type(y)}.'
    )
  return jnp.asarray(y, jnp.int32).reshape(n_dis, rows // n_dis)


def augment_inputs(game: Game, real: Array, fake: Array, key: Array) -> tuple[Array, Array]:
  """The game's input transform (DiffAugment) on real and fake; identity if none.

  ``key`` is the same key :func:`d_inputs` takes, so both draw the same
  augmentation.
  """
  k_real, k_fake, _ = jax.random.split(key, 3)
  if game.d_input_transform is None:
    return real, fake
  return game.d_input_transform(real, k_real), game.d_input_transform(fake, k_fake)


def d_inputs(
  game: Game,
  d_variables: dict,
  real: Array,
  fake: Array,
  key: Array,
  real_label: Array | None = None,
  fake_label: Array | None = None,
):
  """What D sees in its own loss: transformed, then (DAT) perturbed inputs.

  Returns ``(real_aug, fake_aug, real_in, fake_in)``: the transformed inputs
  and the inputs of D's loss (equal unless ``game.d_perturbation`` is set).
  Gradients flow to ``real``/``fake`` through the transform, never through the
  perturbation's construction. Regularizers and auxiliary terms take the
  unperturbed ``*_aug`` inputs. In a conditional game the perturbation gets
  the pair of logits functions of the real and the fake labels.
  """
  real_aug, fake_aug = augment_inputs(game, real, fake, key)
  real_in, fake_in = real_aug, fake_aug
  if game.d_perturbation is not None:
    k_pert = jax.random.split(key, 3)[2]
    real_in, fake_in = perturbed_inputs(
      game.d_perturbation,
      game.d_apply,
      d_variables,
      real_aug,
      fake_aug,
      k_pert,
      real_label,
      fake_label,
      conditional=game.conditional,
    )
  return real_aug, fake_aug, real_in, fake_in


def perturbed_inputs(
  perturbation: DPerturbation,
  d_apply: ApplyFn,
  d_variables: dict,
  real: Array,
  fake: Array,
  key: Array,
  real_label: Array | None = None,
  fake_label: Array | None = None,
  *,
  conditional: bool,
) -> tuple[Array, Array]:
  """D's inputs at the points ``perturbation`` (DAT) finds: ``x + stop_gradient(x_adv - x)``.

  The perturbation sees D frozen (:func:`frozen_logits`); in a conditional game
  the pair of logits functions of the real and the fake labels. Gradients flow
  to ``real``/``fake`` as through the identity, never through the attack.
  """
  logits_fn = frozen_logits(d_apply, d_variables)
  if conditional:
    logits_fn = (
      frozen_logits(d_apply, d_variables, real_label),
      frozen_logits(d_apply, d_variables, fake_label),
    )
  real_adv, fake_adv = perturbation(logits_fn, real, fake, key)
  real_in = real + jax.lax.stop_gradient(real_adv - real)
  fake_in = fake + jax.lax.stop_gradient(fake_adv - fake)
  return real_in, fake_in


def real_fake_forward(
  d_apply: ApplyFn, d_params, d_model_state, real_in, fake_in, real_label=None, fake_label=None
):
  """D on real then fake (two calls, statistics threaded). Returns q, p, state.

  ``real_label``/``fake_label``: the labels ``[B]`` of a conditional game.
  """
  q, ms = d_apply(
    {'params': d_params, **d_model_state}, real_in, train=True, **label_kwargs(real_label)
  )
  ms = merge_model_state(d_model_state, ms)
  p, ms2 = d_apply({'params': d_params, **ms}, fake_in, train=True, **label_kwargs(fake_label))
  return q, p, merge_model_state(ms, ms2)


def d_forward(
  game: Game, d_params, d_model_state, real_in, fake_in, real_label=None, fake_label=None
):
  """:func:`real_fake_forward` of the game's D."""
  return real_fake_forward(
    game.d_apply, d_params, d_model_state, real_in, fake_in, real_label, fake_label
  )


def d_regularization(
  game: Game,
  d_variables: dict,
  real: Array,
  fake: Array,
  key: Array,
  real_label: Array | None = None,
  fake_label: Array | None = None,
) -> Array:
  """Sum of the game's D regularizers (zero when there are none).

  A conditional game calls each with ``real_label=``/``fake_label=`` too.
  """
  kw = dict(real_label=real_label, fake_label=fake_label) if game.conditional else {}
  total = jnp.zeros((), jnp.float32)
  for i, reg in enumerate(game.d_regularizers):
    total = total + reg(d_variables, real, fake, jax.random.fold_in(key, i), **kw)
  return total


def g_regularization(
  game: Game, g_variables: dict, d_variables: dict, z: Array, key: Array, label=None
) -> Array:
  """Sum of the game's G regularizers (zero when there are none).

  A conditional game calls each with ``label=`` (the fake labels of ``z``).
  """
  kw = dict(label=label) if game.conditional else {}
  total = jnp.zeros((), jnp.float32)
  for i, reg in enumerate(game.g_regularizers):
    total = total + reg(g_variables, d_variables, z, jax.random.fold_in(key, i), **kw)
  return total


def split_dis_batches(images: Array, n_dis: int, *, where: str) -> Array:
  """``[n_dis * B, ...] -> [n_dis, B, ...]`` with a clear error if it doesn't divide."""
  check_image_batch(images, where=where)
  if images.shape[0] % n_dis:
    raise ValueError(
      f'{where}: batch of {images.shape[0]} images does not split into n_dis={n_dis} '
      f'D batches; feed n_dis * batch_size rows (e.g. {n_dis * max(1, images.shape[0] // n_dis)}).'
    )
  return images.reshape(n_dis, images.shape[0] // n_dis, *images.shape[1:])


def split_latents(batch: dict, n_dis: int, *, where: str) -> PyTree | None:
  """``batch['latent']`` split like the images, ``[n_dis * B, ...] -> [n_dis, B, ...]``.

  ``batch['latent']`` (optional) is any pytree whose leaves have the image
  batch's leading size ``n_dis * B``; when present the steps feed it to G
  instead of ``game.sample_latents`` (e.g. source images of a translation G).

  Returns:
    ``None`` when the batch has no ``'latent'`` entry, else the pytree with
    every leaf reshaped to ``[n_dis, B, ...]``.

  Raises:
    ValueError: (at trace time) a leaf without the image batch's leading size.
  """
  if 'latent' not in batch:
    return None
  rows = batch['image'].shape[0]
  leaves = jax.tree.leaves(batch['latent'])
  if not leaves:
    raise ValueError(f'{where}: batch["latent"] has no arrays; drop the entry or fill it.')
  for path, leaf in jax.tree_util.tree_leaves_with_path(batch['latent']):
    if jnp.ndim(leaf) == 0 or jnp.shape(leaf)[0] != rows:
      raise ValueError(
        f'{where}: batch["latent"]{jax.tree_util.keystr(path)} has shape {jnp.shape(leaf)} but '
        f'batch["image"] has {rows} rows; every latent leaf needs the same leading size '
        f'(n_dis * B = {rows}), one latent per image row.'
      )
  return jax.tree.map(lambda x: x.reshape(n_dis, rows // n_dis, *x.shape[1:]), batch['latent'])


def balance_triple(
  game: Game,
  state_after: GANState,
  z: Array,
  last_real: Array,
  key: Array,
  *,
  df: Array | None = None,
  fake_pre: Array | None = None,
  real_label: Array | None = None,
  fake_label: Array | None = None,
) -> dict:
  """The balance-ratio measurements of DDST with D after its update (Wang et al., NeurIPS 2023).

  Returns ``{'balance/df', 'balance/gf', 'balance/dr'}``: ``df`` = mean
  D(G_pre(z)) (given, when G's loss forward already went through the updated
  D, else computed from ``fake_pre`` = G_pre(z)), ``gf`` = mean D(G_post(z)) on
  the same ``z``, ``dr`` = mean D(last real batch); no gradients, statistics
  not stored. ``real_label``/``fake_label``: the labels of the last real
  batch and of ``z`` in a conditional game.
  """
  d_logits = frozen_logits_fn(game, state_after.d.variables, fake_label)
  d_logits_real = frozen_logits_fn(game, state_after.d.variables, real_label)
  k_fake, k_real, k_pre = jax.random.split(key, 3)
  if df is None:
    pre = jax.lax.stop_gradient(fake_pre)
    if game.d_input_transform is not None:
      pre = game.d_input_transform(pre, k_pre)
    df = jnp.mean(d_logits(pre))
  g_vars = jax.lax.stop_gradient(state_after.g.variables)
  fake_post, _ = game.g_apply(g_vars, z, train=True, **label_kwargs(fake_label))
  fake_in, real_in = fake_post, last_real
  if game.d_input_transform is not None:
    fake_in = game.d_input_transform(fake_in, k_fake)
    real_in = game.d_input_transform(real_in, k_real)
  return {
    'balance/df': df,
    'balance/gf': jnp.mean(d_logits(fake_in)),
    'balance/dr': jnp.mean(d_logits_real(real_in)),
  }


def validate_common(n_dis: int, ema_decay: float | None, weight_clip: float | None) -> float:
  """Checks the shared builder arguments; returns the EMA decay to use (``None``: the default)."""
  if not isinstance(n_dis, int) or n_dis < 1:
    raise ValueError(f'n_dis must be a positive int, got {n_dis!r}.')
  if ema_decay is not None and not 0.0 <= ema_decay < 1.0:
    raise ValueError(f'ema_decay must be in [0, 1) or None, got {ema_decay!r} (typical: 0.999).')
  if weight_clip is not None and weight_clip <= 0:
    raise ValueError(f'weight_clip must be positive or None, got {weight_clip!r} (WGAN: 0.01).')
  return DEFAULT_EMA_DECAY if ema_decay is None else ema_decay


class GANGradients(NamedTuple):
  """Both players' gradients from one iteration (a 4-tuple: unpack it as one).

  Attributes:
    g_grads: G's gradient, shaped like G's params.
    d_grads: D's gradient, shaped like D's params.
    model_states: ``{'g': ..., 'd': ...}``, each player's collections after
      the iteration's forwards (``{}`` when it has none).
    metrics: flat dict of scalars.
  """

  g_grads: PyTree
  d_grads: PyTree
  model_states: dict
  metrics: dict


class StepOptions(NamedTuple):
  """The options a step builder fixes (checked by :func:`validate_common`)."""

  n_dis: int
  ema_decay: float
  axis_name: str | None
  weight_clip: float | None
  measure_balance: bool


def one_pass_inputs(game: Game, batch: dict, k_z: Array, *, where: str):
  """Real images, G's input and the labels of an iteration that makes one pass over ``batch``.

  Returns ``(real [B, ...], z, real_label, fake_label)``: ``z`` is ``batch['latent']``
  when given, else drawn with ``k_z``; the fake labels come from ``k_z`` (:func:`fake_labels`);
  labels are ``None`` in an unconditional game.
  """
  real = split_dis_batches(batch['image'], 1, where=where)[0]
  latents = split_latents(batch, 1, where=where)
  ys = split_labels(batch, game, 1, where=where)
  y_real = None if ys is None else ys[0]
  if latents is None:
    z = game.sample_latents(k_z, real.shape[0])
  else:
    z = jax.tree.map(lambda x: x[0], latents)
  return real, z, y_real, fake_labels(game, k_z, real.shape[0])


def next_state(state: GANState, g: Player, d: Player, ema_decay: float) -> GANState:
  """``state`` after an iteration: the new players, G's EMA updated, the step counted."""
  return state.replace(
    step=state.step + 1, g=g, d=d, ema_params=update_ema(state.ema_params, g, ema_decay)
  )


def apply_gan_gradients(
  state: GANState, grads: GANGradients, g_tx, d_tx, opts: StepOptions
) -> tuple[GANState, dict]:
  """Both players stepped from one iteration's gradients (averaged over ``opts.axis_name``).

  Returns the :func:`next_state` and the averaged metrics.
  """
  g_grads, d_grads, model_states, metrics = grads
  d_grads, g_grads, d_ms, g_ms, metrics = cross_replica_mean(
    (d_grads, g_grads, model_states['d'], model_states['g'], metrics), opts.axis_name
  )
  d_player = apply_gradients(state.d, d_tx, d_grads, d_ms, weight_clip=opts.weight_clip)
  g_player = apply_gradients(state.g, g_tx, g_grads, g_ms)
  return next_state(state, g_player, d_player, opts.ema_decay), metrics


def first_call_checks(
  game: Game, g_tx, d_tx, state: GANState, batch: dict, *, concrete: bool, where: str
) -> None:
  """The checks every step runs once: batch, values (concrete calls), optimizer states."""
  checks.check_batch(batch, where=where)
  if concrete:
    checks.check_batch_values(batch, game, where=where)
  checks.check_opt_state(g_tx, state.g, who='g', where=where)
  checks.check_opt_state(d_tx, state.d, who='d', where=where)


def checked_step(core: Step, first_call: Callable[[GANState, dict, bool], None]) -> Step:
  """``core`` behind ``first_call(state, batch, concrete)``, which runs until it passes once.

  Called on concrete arrays the step runs ``jax.jit(core)``; called with
  tracers (a caller's ``jit``, ``pmap``, ``shard_map``) it runs ``core``
  itself, so the caller's transformation applies.
  """
  compiled = jax.jit(core)
  pending = [True]

  @functools.wraps(core)  # carries core's name and source (chex.assert_max_traces keys on them)
  def step(state: GANState, batch: dict) -> tuple[GANState, dict]:
    concrete = not checks.is_traced((state, batch))
    if pending:
      first_call(state, batch, concrete)
      pending.clear()
    return compiled(state, batch) if concrete else core(state, batch)

  return step


# ----------------------------------------------------------------------------
# The two-stage players
# ----------------------------------------------------------------------------


def d_player_loss(
  game: Game,
  d_params: PyTree,
  d_model_state: dict,
  real: Array,
  fake: Array,
  key: Array,
  real_label: Array | None = None,
  fake_label: Array | None = None,
) -> tuple[Array, tuple[dict, dict]]:
  """D's loss with every game transform: DiffAugment, the DAT perturbation, regularizers.

  Args:
    game: the GAN problem.
    d_params: D's params (differentiate with respect to these).
    d_model_state: D's other collections.
    real: real batch ``[B, H, W, C]``.
    fake: fake batch ``[B, H, W, C]`` (detach it for two-stage training).
    key: split into the input key (augmentation, perturbation) and the
      regularizers' key.
    real_label: labels ``[B]`` of the reals (conditional games).
    fake_label: labels ``[B]`` of the fakes (conditional games).

  Returns:
    ``(loss, (new_model_state, metrics))``; metrics ``d_loss`` (adversarial
    part), ``d_reg``, ``d_real``/``d_fake`` (mean logits).
  """
  k_in, k_reg = jax.random.split(key)
  d_vars = {'params': d_params, **d_model_state}
  real_aug, fake_aug, real_in, fake_in = d_inputs(
    game, d_vars, real, fake, k_in, real_label, fake_label
  )
  q, p, new_ms = d_forward(game, d_params, d_model_state, real_in, fake_in, real_label, fake_label)
  reg = d_regularization(game, d_vars, real_aug, fake_aug, k_reg, real_label, fake_label)
  adv = game.loss.d_loss(q, p)
  return adv + reg, (
    new_ms,
    {'d_loss': adv, 'd_reg': reg, 'd_real': jnp.mean(q), 'd_fake': jnp.mean(p)},
  )


def g_player_loss(
  game: Game,
  g_params: PyTree,
  g_model_state: dict,
  d_variables: dict,
  z: PyTree,
  key: Array,
  label: Array | None = None,
) -> tuple[Array, tuple[dict, dict]]:
  """G's loss through D (with DiffAugment) plus the game's G regularizers.

  Args:
    game: the GAN problem.
    g_params: G's params (differentiate with respect to these).
    g_model_state: G's other collections.
    d_variables: D's variables (stop their gradient yourself if needed).
    z: G's input, e.g. ``game.sample_latents(key, B)``.
    key: split into the augmentation key and the regularizers' key.
    label: fake labels ``[B]`` (conditional games).

  Returns:
    ``(loss, (new_model_state, metrics))``; metrics ``g_loss`` (adversarial
    part), ``g_reg`` and ``df``, the mean logit of D on these fakes.
  """
  k_aug, k_reg = jax.random.split(key)
  g_vars = {'params': g_params, **g_model_state}
  fake, new_ms = game.g_apply(g_vars, z, train=True, **label_kwargs(label))
  fake_in = fake if game.d_input_transform is None else game.d_input_transform(fake, k_aug)
  p, _ = game.d_apply(d_variables, fake_in, train=True, **label_kwargs(label))
  reg = g_regularization(game, g_vars, d_variables, z, k_reg, label)
  adv = game.loss.g_loss(p)
  return adv + reg, (
    merge_model_state(g_model_state, new_ms),
    {'g_loss': adv, 'g_reg': reg, 'df': jnp.mean(p)},
  )


def d_gradients(
  game: Game,
  d_variables: dict,
  real: Array,
  fake: Array,
  key: Array,
  *,
  real_label: Array | None = None,
  fake_label: Array | None = None,
) -> tuple[PyTree, dict, dict]:
  """Gradient of :func:`d_player_loss` with respect to ``d_variables['params']``.

  Returns:
    ``(grads, new_model_state, metrics)``: grads shaped like D's params, D's
    collections after its forwards (``{}`` when it has none), the metrics of
    :func:`d_player_loss`.
  """
  check_image_batch(real, where='d_gradients')
  params, model_state = split_variables(d_variables)
  loss_fn = lambda dp: d_player_loss(game, dp, model_state, real, fake, key, real_label, fake_label)
  grads, (new_ms, metrics) = jax.grad(loss_fn, has_aux=True)(params)
  return grads, new_ms, metrics


def g_gradients(
  game: Game,
  g_variables: dict,
  d_variables: dict,
  z: PyTree,
  key: Array,
  *,
  label: Array | None = None,
) -> tuple[PyTree, dict, dict]:
  """Gradient of :func:`g_player_loss` with respect to ``g_variables['params']``.

  Returns:
    ``(grads, new_model_state, metrics)`` as :func:`d_gradients`, for G.
  """
  params, model_state = split_variables(g_variables)
  split_variables(d_variables)
  loss_fn = lambda gp: g_player_loss(game, gp, model_state, d_variables, z, key, label)
  grads, (new_ms, metrics) = jax.grad(loss_fn, has_aux=True)(params)
  return grads, new_ms, metrics


# ----------------------------------------------------------------------------
# The two-stage step
# ----------------------------------------------------------------------------


def two_stage_step(
  game: Game,
  g_tx: optax.GradientTransformation,
  d_tx: optax.GradientTransformation,
  *,
  n_dis: int = 1,
  ema_decay: float | None = None,
  axis_name: str | None = None,
  weight_clip: float | None = None,
  measure_balance: bool = False,
) -> Step:
  """Builds the alternating GAN step: ``n_dis`` D updates, then one G update.

  Each D update draws its own ``z`` and uses its own real batch; G's update
  draws a fresh ``z`` and goes through the updated D (the reference order).
  The gradients are :func:`d_gradients` and :func:`g_gradients`.

  Args:
    game: the GAN problem.
    g_tx: G's optimizer; ``d_tx``: D's.
    n_dis: D updates per G update; ``batch['image']`` must hold
      ``n_dis * B`` rows.
    ema_decay: EMA decay of G's params when the state keeps an EMA (``None``:
      :data:`DEFAULT_EMA_DECAY`; module docstring).
    axis_name: when called under ``pmap``/``shard_map``, the data axis over
      which gradients, statistics and metrics are averaged.
    weight_clip: clamp D's params to ``[-c, c]`` after each update (WGAN).
    measure_balance: also report the DDST balance triple (two extra
      forwards without gradients).

  With ``batch['latent']`` (a pytree of ``[n_dis * B, ...]`` leaves, see
  :func:`split_latents`) G's inputs come from the batch instead of
  ``game.sample_latents``: the ``k``-th D update uses the ``k``-th block of
  ``B`` rows, and G's update (and its ``g_regularizers``) the last block.

  Returns:
    ``step(state, batch) -> (state, metrics)`` (module docstring: checks,
    compilation).
  """
  ema_decay = validate_common(n_dis, ema_decay, weight_clip)
  check_label_regularizers(game, 'two_stage_step')
  opts = StepOptions(n_dis, ema_decay, axis_name, weight_clip, measure_balance)

  def step(state: GANState, batch: dict) -> tuple[GANState, dict]:
    return _two_stage_iteration(game, g_tx, d_tx, opts, state, batch)

  def first_call(state, batch, concrete):
    first_call_checks(game, g_tx, d_tx, state, batch, concrete=concrete, where='two_stage_step')

  return checked_step(step, first_call)


def _two_stage_d_update(game, d_tx, opts, d_player, g_vars, real, key, z, y_real):
  """One D update of the two-stage step on one real batch, with fresh fakes."""
  k_z, k_loss = jax.random.split(key)
  if z is None:
    z = game.sample_latents(k_z, real.shape[0])
  y_fake = fake_labels(game, k_z, real.shape[0])
  fake, _ = game.g_apply(g_vars, z, train=True, **label_kwargs(y_fake))
  checks.check_fake_shape(fake, real, where='two_stage_step')
  fake = jax.lax.stop_gradient(fake)
  grads, new_ms, m = d_gradients(
    game, d_player.variables, real, fake, k_loss, real_label=y_real, fake_label=y_fake
  )
  grads, new_ms, m = cross_replica_mean((grads, new_ms, m), opts.axis_name)
  return apply_gradients(d_player, d_tx, grads, new_ms, weight_clip=opts.weight_clip), m


def _two_stage_iteration(game, g_tx, d_tx, opts, state, batch):
  """The body of :func:`two_stage_step`: ``n_dis`` D updates, then G's."""
  where, n_dis = 'two_stage_step', opts.n_dis
  reals = split_dis_batches(batch['image'], n_dis, where=where)
  latents = split_latents(batch, n_dis, where=where)
  ys = split_labels(batch, game, n_dis, where=where)
  k_d, k_z, k_g, k_bal = jax.random.split(step_key(state, opts.axis_name), 4)
  g_vars = jax.lax.stop_gradient(state.g.variables)
  # A Python loop, not lax.scan: XLA on CPU runs convolutions inside a while
  # loop far slower (the DCGAN-28 step took 100 s instead of 2 s here), and n_dis is small.
  d_player = state.d
  for i, (real, k) in enumerate(zip(reals, jax.random.split(k_d, n_dis))):
    z_i = None if latents is None else jax.tree.map(lambda x, i=i: x[i], latents)
    y_i = None if ys is None else ys[i]
    d_player, d_metrics = _two_stage_d_update(game, d_tx, opts, d_player, g_vars, real, k, z_i, y_i)

  if latents is None:
    z = game.sample_latents(k_z, reals.shape[1])
  else:  # the last D batch's latents (n_dis = 1: D and G see the same z, as in CUT)
    z = jax.tree.map(lambda x: x[-1], latents)
  y_g = fake_labels(game, k_z, reals.shape[1])
  d_vars = jax.lax.stop_gradient(d_player.variables)
  grads, g_ms, g_metrics = g_gradients(game, state.g.variables, d_vars, z, k_g, label=y_g)
  grads, g_ms, g_metrics = cross_replica_mean((grads, g_ms, g_metrics), opts.axis_name)
  g_player = apply_gradients(state.g, g_tx, grads, g_ms)
  df = g_metrics.pop('df')
  new_state = next_state(state, g_player, d_player, opts.ema_decay)
  metrics = {**d_metrics, **g_metrics}
  if opts.measure_balance:
    y_last = None if ys is None else ys[-1]
    triple = balance_triple(
      game, new_state, z, reals[-1], k_bal, df=df, real_label=y_last, fake_label=y_g
    )
    metrics.update(cross_replica_mean(triple, opts.axis_name))
  return new_state, metrics
