"""One-stage GAN training: both players from one pass.

Shen, Yin, Wang, Li, Song and Song, "Training Generative Adversarial Networks in One Stage"
(CVPR 2021). One G forward, one D forward on the reals and the fakes and one backward of D's
loss (explicit :func:`jax.vjp`) give D its gradient; the cotangent reaching G's output is made
G's own by the rule ``mode`` names:

* ``'symmetric'`` (minimax, WGAN: ``g = -f``): negated, a gradient reversal; exact for any D.
* ``'asymmetric'`` (non-saturating, LSGAN): each fake's cotangent scaled by the stop-gradient
  ``gamma_i = g'(p_i) / f'(p_i)`` (the paper's gradient decomposition); exact only for a D that
  treats samples independently and gives each one logit, so refused for a batch-coupled D, for
  patch logits (``Game.d_patch_logits``) and for hinge (``f' = 0``).
* ``'exact'`` (beyond the paper): D's backward taken again with G's cotangent ``g'(p) / B``
  (``/ (B * patches)`` with patch logits); exact for any loss and any D.
* ``'auto'``: ``symmetric`` for symmetric losses, ``asymmetric`` when exact, else ``exact``.

It is simultaneous gradient descent: G's gradient goes through this iteration's D on the same
``z``. DiffAugment sits inside the one backward; with DAT, D's loss is taken at the perturbed
inputs and G's cotangent at the clean fakes. ``docs/TECHNIQUES.md`` (One-stage training) gives
the derivation, the costs and the reference's learning rates.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxgan import checks
from jaxgan.game import Game, check_label_regularizers, label_kwargs
from jaxgan.losses import slope_vanishes
from jaxgan.state import GANState
from jaxgan.steps import (
  GANGradients,
  Step,
  StepOptions,
  apply_gan_gradients,
  augment_inputs,
  balance_triple,
  checked_step,
  cross_replica_mean,
  d_forward,
  d_inputs,
  d_regularization,
  first_call_checks,
  frozen_logits_fn,
  g_regularization,
  merge_model_state,
  one_pass_inputs,
  split_variables,
  step_key,
  validate_common,
)

Array = jax.Array
PyTree = Any

MODES = ('auto', 'symmetric', 'asymmetric', 'exact')


@jax.custom_vjp
def grad_reverse(x):
  """Identity forward; negates the cotangent on the way back."""
  return x


def _grad_reverse_fwd(x):
  return x, None


def _grad_reverse_bwd(_, ct):
  return (jax.tree.map(jnp.negative, ct),)


grad_reverse.defvjp(_grad_reverse_fwd, _grad_reverse_bwd)


def _checked_mode(game: Game, mode: str) -> str:
  """``mode`` after the checks that need no D: ``'auto'``/``'asymmetric'`` may still
  depend on whether D couples the batch (asymmetric losses)."""
  loss = game.loss
  if mode not in MODES:
    raise ValueError(f'unknown one-stage mode {mode!r}; choose one of {MODES}.')
  if loss.symmetric:
    return 'symmetric' if mode == 'auto' else mode
  if mode == 'symmetric':
    raise ValueError(
      f"one-stage mode 'symmetric' needs a symmetric loss (minimax, wgan), got {loss.name!r}; "
      "use mode='asymmetric' (gradient decomposition) or mode='exact'."
    )
  if mode in ('auto', 'asymmetric') and game.d_patch_logits:
    if mode == 'auto':
      return 'exact'
    raise ValueError(
      f'the asymmetric one-stage rule is not exact for patch logits (Game.d_patch_logits) '
      f"with the {loss.name!r} loss: gamma = g'/f' differs from patch to patch, and one "
      "cotangent per image cannot carry it. Use mode='exact' (or 'auto', which picks it)."
    )
  if mode in ('auto', 'asymmetric') and slope_vanishes(loss):
    if mode == 'auto':
      return 'exact'
    raise ValueError(
      f'the asymmetric one-stage rule is undefined for the {loss.name!r} loss: its D term on '
      "fakes has f'(p) = 0 on a range of logits (as hinge for p <= -1), so gamma = g'/f' is "
      "infinite there. Use mode='exact' (exact for any loss) or mode='auto'."
    )
  return mode


def needs_coupling(game: Game, mode: str) -> bool:
  """Whether :func:`resolve_mode` needs to know if D couples the batch."""
  return game.d_batch_coupled is None and _checked_mode(game, mode) in ('auto', 'asymmetric')


def resolve_mode(game: Game, mode: str, d_coupled: bool | None = None) -> str:
  """Checks ``mode`` against the game and returns the concrete mode.

  Args:
    game: the GAN problem.
    mode: one of :data:`MODES`.
    d_coupled: whether D couples the batch, when ``game.d_batch_coupled`` is
      ``None`` (:func:`jaxgan.checks.d_batch_coupled` finds it); the game's
      flag wins when set.

  Raises:
    ValueError: for an unknown mode, the symmetric rule with an asymmetric
      loss, or the asymmetric rule where it is not exact (batch-coupled D,
      a loss whose ``f'`` vanishes on a region such as hinge); and when the
      answer depends on batch coupling that is neither declared nor given.
  """
  mode = _checked_mode(game, mode)
  if mode not in ('auto', 'asymmetric') or game.loss.symmetric:
    return mode
  coupled = game.d_batch_coupled if game.d_batch_coupled is not None else d_coupled
  if coupled is None:
    raise ValueError(
      f'one-stage mode {mode!r} depends on whether D couples the samples of a batch, and '
      'Game.d_batch_coupled is None: pass d_coupled=jaxgan.checks.d_batch_coupled(game, '
      'd_variables, images), or set Game(d_batch_coupled=...).'
    )
  if not coupled:
    return 'asymmetric'
  if mode == 'auto':
    return 'exact'
  raise ValueError(
    f'the asymmetric one-stage rule is not exact for a batch-coupled D (BatchNorm in train '
    f"mode, minibatch-stddev: D's logit for one sample depends on the others) with the "
    f'{game.loss.name!r} loss: per-sample gamma scaling gives a wrong G gradient. Use '
    "mode='exact' (or 'auto', which picks it), or a D with GroupNorm, LayerNorm, spectral norm "
    "or no normalization (e.g. d_norm='group'). If D does not couple samples, set "
    'Game(d_batch_coupled=False).'
  )


def mode_for(game: Game, mode: str, d_variables: dict, batch: dict) -> str:
  """:func:`resolve_mode`, finding batch coupling from D when it matters."""
  if not needs_coupling(game, mode):
    return resolve_mode(game, mode)
  real = batch['image']
  label = batch.get('label') if game.conditional else None
  return resolve_mode(game, mode, checks.d_batch_coupled(game, d_variables, real, label))


def gradients(
  game: Game,
  g_variables: dict,
  d_variables: dict,
  batch: dict,
  key: Array,
  mode: str = 'auto',
) -> GANGradients:
  """Both players' one-stage gradients from one G forward, one D forward and one backward.

  This is what :func:`one_stage_step` applies; call it from your own train
  step to update a ``TrainState``, an ``nnx.Optimizer`` or any optax chain.

  Args:
    game: the GAN problem.
    g_variables: ``{'params': ..., **model_state}`` of G (e.g.
      ``{'params': train_state.params}``).
    d_variables: the same for D.
    batch: ``{'image': [B, H, W, C]}`` in [-1, 1]; ``'label'`` ``[B]`` int
      (conditional games); ``'latent'`` (pytree of ``[B, ...]`` leaves) to
      feed G instead of ``game.sample_latents``.
    key: this iteration's key, e.g. ``fold_in(base_key, step)``; it is split
      five ways (latents, D's inputs, D's and G's regularizers, the balance
      measurement of the step).
    mode: ``'auto'``, ``'symmetric'``, ``'asymmetric'`` or ``'exact'``
      (module docstring). Whether D couples the batch is found from D on
      first use when ``game.d_batch_coupled`` is ``None``.

  Returns:
    :class:`jaxgan.steps.GANGradients` ``(g_grads, d_grads, model_states, metrics)``.
    Under ``pmap``/``shard_map`` average them over the data axis yourself.
  """
  where = 'onestage.gradients'
  checks.check_batch(batch, where=where)
  if not checks.is_traced(batch):
    checks.check_batch_values(batch, game, where=where)
  check_label_regularizers(game, where)
  mode = mode_for(game, mode, d_variables, batch)
  return _one_stage_pass(game, g_variables, d_variables, batch, key, mode, where=where)[0]


def _inputs(game: Game, batch: dict, key: Array, where: str):
  """Real images, G's input, labels and keys of one pass (the step's key layout)."""
  k_z, k_in, k_dreg, k_greg, _ = jax.random.split(key, 5)
  real, z, y_real, y_fake = one_pass_inputs(game, batch, k_z, where=where)
  return real, z, y_real, y_fake, (k_in, k_dreg, k_greg)


def _mean_term_grad(term, logits: Array) -> Array:
  """Gradient of ``mean term(logits)`` (an elementwise loss term) with respect to ``logits``.

  The mean runs over every logit: samples ``[B]``, or samples and patches with patch logits.
  """
  return jax.grad(lambda x: jnp.sum(term(x)))(logits) / logits.size


def _g_cotangent(game, mode, fake, real, ct_fake, d_vjp, p, ct_q, ct_p, d_vars, k_in, y_fake):
  """The cotangent reaching G's output under ``mode`` (or DAT), with G's logits and gamma.

  Returns ``(ct_g, p_g, gamma, dropped)``.
  """
  loss, b = game.loss, p.shape[0]
  zero = jnp.zeros((), jnp.float32)
  if game.d_perturbation is not None:
    # DAT: G's cotangent at the clean fakes (module docstring).
    d_logits = frozen_logits_fn(game, d_vars, y_fake)
    p_g, clean_vjp = jax.vjp(lambda xf: d_logits(augment_inputs(game, real, xf, k_in)[1]), fake)
    (ct_g,) = clean_vjp(_mean_term_grad(loss.g_fake, p_g))
    return ct_g, p_g, loss.gamma(p_g), zero
  if mode == 'symmetric':
    return -ct_fake, p, -jnp.ones_like(p), zero
  if mode == 'asymmetric':
    gamma = jax.lax.stop_gradient(loss.gamma(p))
    bad = ~jnp.isfinite(gamma) | ~jnp.isfinite(ct_p)
    if loss.gamma_singular is not None:
      bad = bad | loss.gamma_singular(p)
    gamma = jnp.where(bad, 0.0, gamma)
    dropped = jnp.sum(bad).astype(jnp.float32)
    return gamma.reshape((b,) + (1,) * (fake.ndim - 1)) * ct_fake, p, gamma, dropped
  # exact: D's backward again with G's own cotangent at p.
  _, ct_g = d_vjp((jnp.zeros_like(ct_q), _mean_term_grad(loss.g_fake, p)))
  return ct_g, p, loss.gamma(p), zero


def _regularizer_grads(game, g_vars, d_vars, real, fake, z, keys, y_real, y_fake):
  """Values and gradients of the game's D and G regularizers (``None`` grads if none)."""
  k_in, k_dreg, k_greg = keys
  (d_params, d_ms), (g_params, g_ms) = split_variables(d_vars), split_variables(g_vars)
  d_reg, d_reg_grads = jnp.zeros((), jnp.float32), None
  if game.d_regularizers:
    real_aug, fake_aug = augment_inputs(game, real, jax.lax.stop_gradient(fake), k_in)
    d_reg, d_reg_grads = jax.value_and_grad(
      lambda dp: d_regularization(
        game, {'params': dp, **d_ms}, real_aug, fake_aug, k_dreg, y_real, y_fake
      )
    )(d_params)
  g_reg, g_reg_grads = jnp.zeros((), jnp.float32), None
  if game.g_regularizers:
    frozen_d = jax.lax.stop_gradient(d_vars)
    g_reg, g_reg_grads = jax.value_and_grad(
      lambda gp: g_regularization(game, {'params': gp, **g_ms}, frozen_d, z, k_greg, y_fake)
    )(g_params)
  return d_reg, d_reg_grads, g_reg, g_reg_grads


def _one_stage_pass(game, g_variables, d_variables, batch, key, mode, *, where):
  """:func:`gradients` for a resolved ``mode``; also returns what the step's balance needs."""
  loss = game.loss
  real, z, y_real, y_fake, keys = _inputs(game, batch, key, where)
  k_in = keys[0]
  (g_params, g_ms), (d_params, d_ms) = split_variables(g_variables), split_variables(d_variables)

  # One G forward.
  fake, g_vjp, g_new_ms = jax.vjp(
    lambda gp: game.g_apply({'params': gp, **g_ms}, z, train=True, **label_kwargs(y_fake)),
    g_params,
    has_aux=True,
  )
  checks.check_fake_shape(fake, real, where=where)

  # One D forward on real and fake (two calls, statistics threaded).
  def d_fwd(dp, xf):
    d_vars = {'params': dp, **d_ms}
    _, _, real_in, fake_in = d_inputs(game, d_vars, real, xf, k_in, y_real, y_fake)
    q, p, ms = d_forward(game, dp, d_ms, real_in, fake_in, y_real, y_fake)
    return (q, p), ms

  (q, p), d_vjp, d_new_ms = jax.vjp(d_fwd, d_params, fake, has_aux=True)

  # One backward of L_D: D's gradient and the image cotangent.
  ct_q = _mean_term_grad(loss.d_real, q)
  ct_p = _mean_term_grad(loss.d_fake, p)
  d_grads, ct_fake = d_vjp((ct_q, ct_p))
  d_vars = {'params': d_params, **d_ms}
  ct_g, p_g, gamma, dropped = _g_cotangent(
    game, mode, fake, real, ct_fake, d_vjp, p, ct_q, ct_p, d_vars, k_in, y_fake
  )
  (g_grads,) = g_vjp(ct_g)

  regs = _regularizer_grads(game, g_variables, d_vars, real, fake, z, keys, y_real, y_fake)
  d_reg, d_reg_grads, g_reg, g_reg_grads = regs
  if d_reg_grads is not None:
    d_grads = jax.tree.map(jnp.add, d_grads, d_reg_grads)
  if g_reg_grads is not None:
    g_grads = jax.tree.map(jnp.add, g_grads, g_reg_grads)
  metrics = {
    'd_loss': loss.d_loss(q, p),
    'd_reg': d_reg,
    'g_loss': loss.g_loss(p_g),
    'g_reg': g_reg,
    'd_real': jnp.mean(q),
    'd_fake': jnp.mean(p),
    'onestage/gamma_mean': jnp.mean(jnp.where(jnp.isfinite(gamma), gamma, 0.0)),
    'onestage/gamma_dropped': dropped,
  }
  model_states = {'g': merge_model_state(g_ms, g_new_ms), 'd': d_new_ms}
  out = GANGradients(g_grads, d_grads, model_states, metrics)
  return out, (z, fake, real, y_real, y_fake)


def one_stage_step(
  game: Game,
  g_tx: optax.GradientTransformation,
  d_tx: optax.GradientTransformation,
  *,
  mode: str = 'auto',
  ema_decay: float | None = None,
  axis_name: str | None = None,
  weight_clip: float | None = None,
  measure_balance: bool = False,
) -> Step:
  """Builds the one-stage step: one G forward, D on real and fake, one backward.

  The gradients are :func:`gradients`; the step applies them with ``g_tx``
  and ``d_tx``, updates the EMA and measures the balance triple.

  Args:
    game: the GAN problem.
    g_tx: G's optimizer; ``d_tx``: D's. Both step from the same pass.
    mode: ``'auto'``, ``'symmetric'``, ``'asymmetric'`` or ``'exact'``
      (module docstring). Modes that need no D are checked here; whether D
      couples the batch is found on the first call (before compiling) when
      ``game.d_batch_coupled`` is ``None``.
    ema_decay: EMA decay of G's params when the state keeps an EMA (``None``:
      :data:`jaxgan.steps.DEFAULT_EMA_DECAY`).
    axis_name: data axis for ``pmap``/``shard_map`` (gradients, statistics
      and metrics are averaged over it).
    weight_clip: clamp D's params to ``[-c, c]`` after the update (WGAN).
    measure_balance: also report the DDST balance triple.

  With ``batch['latent']`` (pytree of ``[B, ...]`` leaves) G's input and the
  ``g_regularizers``' ``z`` come from the batch instead of ``game.sample_latents``.

  Returns:
    ``step(state, batch) -> (state, metrics)`` (checks and compilation as in
    :mod:`jaxgan.steps`). Metrics include ``onestage/gamma_mean`` and
    ``onestage/gamma_dropped``, the number of samples whose gamma was not
    finite (their G gradient is dropped rather than turned into inf/NaN).
  """
  ema_decay = validate_common(1, ema_decay, weight_clip)
  check_label_regularizers(game, 'one_stage_step')
  # Refused modes raise here; only batch coupling, if undeclared, waits for the first call.
  resolved = {} if needs_coupling(game, mode) else {'mode': resolve_mode(game, mode)}
  opts = StepOptions(1, ema_decay, axis_name, weight_clip, measure_balance)

  def step(state: GANState, batch: dict) -> tuple[GANState, dict]:
    return _one_stage_iteration(game, g_tx, d_tx, opts, resolved['mode'], state, batch)

  def first_call(state, batch, concrete):
    where = 'one_stage_step'
    first_call_checks(game, g_tx, d_tx, state, batch, concrete=concrete, where=where)
    if 'mode' not in resolved:
      resolved['mode'] = mode_for(game, mode, state.d.variables, batch)

  return checked_step(step, first_call)


def _one_stage_iteration(game, g_tx, d_tx, opts, mode, state, batch):
  """The body of :func:`one_stage_step` for a resolved ``mode``."""
  key = step_key(state, opts.axis_name)
  grads, aux = _one_stage_pass(
    game, state.g.variables, state.d.variables, batch, key, mode, where='one_stage_step'
  )
  new_state, metrics = apply_gan_gradients(state, grads, g_tx, d_tx, opts)
  if opts.measure_balance:
    z, fake, real, y_real, y_fake = aux
    k_bal = jax.random.split(key, 5)[4]
    triple = balance_triple(
      game, new_state, z, real, k_bal, fake_pre=fake, real_label=y_real, fake_label=y_fake
    )
    metrics.update(cross_replica_mean(triple, opts.axis_name))
  return new_state, metrics
