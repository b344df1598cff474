"""CoopInit: cooperative initialization of a GAN (an EBM taught by MCMC).

Zhao, Xie and Li, "CoopInit: Initializing Generative Adversarial Networks via Cooperative
Learning" (AAAI 2023), built on CoopNets (Xie, Lu, Gao, Zhu and Wu, AAAI 2018). For the first
``t_init`` iterations D's logit is the negative energy ``f`` of an energy-based model and G is
its MCMC initializer; then the run switches to any adversarial step with the same parameters.
One cooperative iteration (:func:`coop_step`; :func:`gradients` without a ``GANState``):

1. ``z ~ p(z)``, ``x_hat = G(z)``;
2. ``x_tilde``: K Langevin steps ``x <- clip(x + (delta^2 / 2) grad_x f(x) + sigma eps)`` from
   ``x_hat`` under D before its update, with no gradient through the chain (:func:`langevin_revise`);
3. D descends :func:`ebm_d_loss`, ``mean f(x_tilde) - mean f(x_real)``;
4. G descends :func:`teaching_g_loss`, the regression of ``G(z)`` onto ``x_tilde``.

The phase lives in ``state.extra['coopinit']``: :func:`make_phased_step` runs the cooperative
step while ``state.step < t_init`` and the adversarial one after, switching once
(:func:`switch_to_adversarial`) as the state says, so a resumed run behaves like an
uninterrupted one. The cooperative phase shows D raw images (DiffAugment and DAT belong to the
adversarial phase); optimizer-side state such as sparse masks acts in both phases.
``docs/TECHNIQUES.md`` (CoopInit) lists the knobs and their defaults.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgan import checks
from jaxgan.game import Game, check_label_regularizers, label_kwargs, sample_logits
from jaxgan.state import GANState
from jaxgan.steps import (
  GANGradients,
  Step,
  StepOptions,
  apply_gan_gradients,
  checked_step,
  d_forward,
  d_regularization,
  first_call_checks,
  frozen_logits_fn,
  merge_model_state,
  one_pass_inputs,
  split_dis_batches,
  split_labels,
  split_latents,
  split_variables,
  step_key,
  validate_common,
)

Array = jax.Array
PyTree = Any

EXTRA_KEY = 'coopinit'
PHASE_COOP = 0
PHASE_ADVERSARIAL = 1
LANGEVIN_STATS = ('eval', 'batch')
TEACH_REDUCTIONS = ('sum', 'mean')


# ----------------------------------------------------------------------------
# Langevin revision
# ----------------------------------------------------------------------------


def _check_langevin(n_steps, step_size, noise_scale, ref_sigma, clip) -> None:
  if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 0:
    raise ValueError(f'Langevin n_steps must be an int >= 0, got {n_steps!r} (typical: 10-30).')
  if not isinstance(step_size, int | float) or not math.isfinite(step_size) or step_size < 0:
    raise ValueError(
      f'Langevin step_size must be a finite float >= 0, got {step_size!r}; the drift is '
      'step_size**2 / 2 times grad_x f.'
    )
  if noise_scale is not None and (
    not isinstance(noise_scale, int | float) or not math.isfinite(noise_scale) or noise_scale < 0
  ):
    raise ValueError(
      f'Langevin noise_scale must be None (= step_size) or a float >= 0, got {noise_scale!r}.'
    )
  if ref_sigma is not None and (not isinstance(ref_sigma, int | float) or not ref_sigma > 0):
    raise ValueError(
      f'Langevin ref_sigma must be None (no reference term) or > 0, got {ref_sigma!r} '
      '(CoopNets: 0.016).'
    )
  if clip is not None:
    ok = isinstance(clip, tuple | list) and len(clip) == 2 and float(clip[0]) < float(clip[1])
    if not ok:
      raise ValueError(f'Langevin clip must be None or (low, high) with low < high, got {clip!r}.')


@dataclasses.dataclass(frozen=True)
class LangevinConfig:
  """Settings of the Langevin chain of :func:`langevin_revise`.

  Attributes:
    step_size: delta; the drift is ``delta**2 / 2 * grad_x f``.
    n_steps: K, the number of steps.
    noise_scale: std of the Gaussian noise added per step; ``None`` means
      ``step_size`` (exact Langevin), 0 turns the noise off.
    ref_sigma: s of the Gaussian reference term ``-||x||^2 / (2 s^2)`` added
      to f; ``None`` for none.
    clip: ``(low, high)`` range every step is clamped to, or ``None``.
  """

  step_size: float
  n_steps: int = 10
  noise_scale: float | None = None
  ref_sigma: float | None = None
  clip: tuple[float, float] | None = (-1.0, 1.0)

  def __post_init__(self):
    _check_langevin(self.n_steps, self.step_size, self.noise_scale, self.ref_sigma, self.clip)


def langevin_revise(
  d_logits_fn: Callable[[Array], Array],
  x0: Array,
  key: Array | None,
  *,
  n_steps: int,
  step_size: float,
  noise_scale: float | None = None,
  ref_sigma: float | None = None,
  clip: tuple[float, float] | None = (-1.0, 1.0),
  unroll: int = 32,
) -> Array:
  """Revises ``x0`` by K Langevin steps that ascend ``f = d_logits_fn``.

  ``x_{k+1} = clip(x_k + (delta^2/2) grad_x f(x_k) + sigma eps_k)``, with
  ``f(x) = d_logits_fn(x) - ||x||^2 / (2 s^2)`` when ``ref_sigma = s`` is given
  and ``eps_k`` drawn from ``jax.random.split(key, n_steps)[k]``. The gradient
  is that of ``sum_j f(x_j)``, i.e. per-sample when ``d_logits_fn`` does not
  mix the batch. The chain is a ``lax.scan`` under ``stop_gradient``: nothing
  differentiates through it.

  Args:
    d_logits_fn: ``x [B, ...] -> f [B]``, the negative energy (D's logit with
      frozen statistics).
    x0: chain start ``[B, H, W, C]`` (or any ``[B, ...]``), e.g. ``G(z)``.
    key: PRNG key of the chain (``None`` allowed when the noise is off).
    n_steps: K >= 0 (0 returns ``x0``).
    step_size: delta >= 0.
    noise_scale: sigma >= 0, or ``None`` for ``sigma = delta``.
    ref_sigma: s > 0 of the Gaussian reference term, or ``None``.
    clip: ``(low, high)`` applied after every step, or ``None``.
    unroll: steps per iteration of the scan (``lax.scan(unroll=...)``). On a
      CPU, XLA runs a convolutional D about 2x faster unrolled than inside a
      loop, so chains of up to ``unroll`` steps are unrolled whole; longer
      chains loop over blocks of ``unroll`` steps, which bounds compile time
      and memory (a 2,000-step chain unrolled whole does not fit in 24 GiB).

  Returns:
    The revised samples, same shape and dtype as ``x0``, without gradient.
  """
  _check_langevin(n_steps, step_size, noise_scale, ref_sigma, clip)
  sigma = step_size if noise_scale is None else noise_scale
  x0 = jax.lax.stop_gradient(x0)
  body = _langevin_step(d_logits_fn, x0.shape[0], step_size, sigma, ref_sigma, clip)
  if n_steps == 0:
    return x0
  if isinstance(unroll, bool) or not isinstance(unroll, int) or unroll < 1:
    raise ValueError(f'langevin_revise: unroll must be an int >= 1, got {unroll!r} (default 32).')
  unroll = min(unroll, n_steps)
  if not sigma:  # deterministic ascent: no key needed, none consumed
    x, _ = jax.lax.scan(lambda x, _: body(x, None), x0, None, length=n_steps, unroll=unroll)
  elif key is None:
    raise ValueError(
      f'langevin_revise: a PRNG key is needed for noise_scale={sigma}; pass key= or '
      'noise_scale=0.0 for deterministic gradient ascent.'
    )
  else:
    x, _ = jax.lax.scan(body, x0, jax.random.split(key, n_steps), unroll=unroll)
  return jax.lax.stop_gradient(x)


def _langevin_step(d_logits_fn, batch: int, step_size, sigma, ref_sigma, clip):
  """One step of :func:`langevin_revise` as a scan body ``(x, key) -> (x, None)``."""
  drift = 0.5 * step_size**2

  def neg_energy_sum(x):
    f = d_logits_fn(x)
    if f.shape != (batch,):
      raise ValueError(
        f'langevin_revise: d_logits_fn must return one value per sample, shape ({batch},), '
        f'got {f.shape}; squeeze a trailing axis of D (logits[:, 0]).'
      )
    total = jnp.sum(f)
    if ref_sigma is not None:
      total = total - 0.5 * jnp.sum(jnp.square(x)) / ref_sigma**2
    return total

  grad_f = jax.grad(neg_energy_sum)

  def body(x, k):
    x = x + drift * grad_f(x)
    if sigma:
      x = x + sigma * jax.random.normal(k, x.shape, x.dtype)
    if clip is not None:
      x = jnp.clip(x, clip[0], clip[1])
    return x, None

  return body


# ----------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------


def ebm_d_loss(f_real: Array, f_revised: Array) -> Array:
  """Maximum-likelihood loss of the EBM ``p(x) ~ exp(f(x))``, for D to descend.

  ``mean_j f(x_tilde_j) - mean_i f(x_i)``: its gradient is the negative
  log-likelihood gradient with the model expectation estimated by the revised
  samples (which must carry no gradient: pass ``f`` of stop-gradient samples).

  Args:
    f_real: D's logits on data, ``[B]``.
    f_revised: D's logits on the Langevin-revised samples, ``[B']``.

  Returns:
    Scalar loss (mean over each batch).
  """
  if f_real.ndim != 1 or f_revised.ndim != 1:
    raise ValueError(
      f'ebm_d_loss takes per-sample logits [B], got shapes {f_real.shape} and '
      f"{f_revised.shape}; squeeze D's output to [B]."
    )
  return jnp.mean(f_revised) - jnp.mean(f_real)


def teaching_g_loss(
  fake: Array, target: Array, *, sigma: float = 0.3, reduction: str = 'sum'
) -> Array:
  """MCMC-teaching loss of G: regression of ``G(z)`` onto the revised samples.

  ``1/(2 sigma^2) * mean_j R(||stop_gradient(target_j) - fake_j||^2)``, with ``R``
  the sum over the non-batch axes (``reduction='sum'``, TF CoopNets: the value
  scales with ``H * W * C``) or their mean (``'mean'``, a pixel-mean MSE,
  ``H * W * C`` times smaller). Always a mean over the batch.

  Args:
    fake: ``G(z)``, ``[B, H, W, C]``.
    target: the revised samples from the same ``z``, same shape.
    sigma: sigma_g > 0 (CoopNets: 0.3).
    reduction: ``'sum'`` or ``'mean'`` over the non-batch axes.

  Returns:
    Scalar loss.
  """
  _check_teach(sigma, reduction)
  if fake.shape != target.shape:
    raise ValueError(
      f'teaching_g_loss: G(z) {fake.shape} and the revised samples {target.shape} must have '
      'the same shape (the target must come from the same z).'
    )
  sq = jnp.square(jax.lax.stop_gradient(target) - fake)
  axes = tuple(range(1, fake.ndim))
  per_sample = jnp.sum(sq, axis=axes) if reduction == 'sum' else jnp.mean(sq, axis=axes)
  return 0.5 / sigma**2 * jnp.mean(per_sample)


def _check_teach(sigma, reduction) -> None:
  if not isinstance(sigma, int | float) or not sigma > 0:
    raise ValueError(f'teaching sigma must be > 0, got {sigma!r} (CoopNets: 0.3).')
  if reduction not in TEACH_REDUCTIONS:
    raise ValueError(f'teaching reduction must be one of {TEACH_REDUCTIONS}, got {reduction!r}.')


# ----------------------------------------------------------------------------
# The cooperative step
# ----------------------------------------------------------------------------


def energy_fn(
  game: Game, d_variables: dict, langevin_stats: str = 'eval', label: Array | None = None
) -> Callable[[Array], Array]:
  """D as the chain's ``x -> f [B]``: stop-gradient params, no state update.

  A game with ``d_patch_logits`` gives each sample the mean of its patch logits.

  Args:
    game: the GAN problem (its ``d_apply``).
    d_variables: ``{'params': ..., **model_state}`` of D.
    langevin_stats: ``'eval'`` calls D with ``train=False`` (running
      statistics); ``'batch'`` with ``train=True``, dropping the new state.
    label: the class labels ``[B]`` of the chains (conditional games).
  """
  if langevin_stats not in LANGEVIN_STATS:
    raise ValueError(f'langevin_stats must be one of {LANGEVIN_STATS}, got {langevin_stats!r}.')
  if langevin_stats == 'batch':
    logits = frozen_logits_fn(game, d_variables, label)
    return lambda x: sample_logits(logits(x))
  frozen = jax.lax.stop_gradient(d_variables)
  return lambda x: sample_logits(game.d_apply(frozen, x, train=False, **label_kwargs(label))[0])


class _Options(NamedTuple):
  """The options of a cooperative iteration (see :func:`coop_step`)."""

  langevin: LangevinConfig
  teach_sigma: float
  teach_reduction: str
  langevin_stats: str
  use_d_regularizers: bool
  logit_penalty: float

  def check(self, game: Game, where: str) -> None:
    if not isinstance(self.langevin, LangevinConfig):
      raise ValueError(
        f'{where}: langevin must be a LangevinConfig, got {type(self.langevin).__name__}; '
        'e.g. langevin=LangevinConfig(step_size=0.05).'
      )
    _check_teach(self.teach_sigma, self.teach_reduction)
    penalty = self.logit_penalty
    if not isinstance(penalty, int | float) or not penalty >= 0:
      raise ValueError(f'{where}: logit_penalty must be a float >= 0, got {penalty!r}.')
    if self.langevin_stats not in LANGEVIN_STATS:
      raise ValueError(
        f'langevin_stats must be one of {LANGEVIN_STATS}, got {self.langevin_stats!r}.'
      )
    if self.use_d_regularizers:
      check_label_regularizers(game.replace(g_regularizers=()), where)


def _check_chain_coupling(langevin_stats: str, coupled: bool, where: str) -> None:
  if langevin_stats == 'batch' and coupled:
    raise ValueError(
      f"{where}: langevin_stats='batch' with a batch-coupled D (BatchNorm in train mode, "
      'minibatch-stddev) couples the chains: grad_x of sum_j f(x_j) is not the per-sample '
      "energy gradient. Use langevin_stats='eval' (running statistics) or a D without batch "
      'statistics.'
    )


def _chain_coupling_checked(game, langevin_stats, d_variables, batch, where) -> None:
  """Refuses batch-statistics chains through a coupled D (found from D if undeclared)."""
  if langevin_stats != 'batch':
    return
  label = batch.get('label') if game.conditional else None
  coupled = checks.d_batch_coupled(game, d_variables, batch['image'], label)
  _check_chain_coupling(langevin_stats, coupled, where)


def ebm_gradients(
  game: Game,
  d_variables: dict,
  real: Array,
  revised: Array,
  key: Array,
  *,
  logit_penalty: float = 0.0,
  use_d_regularizers: bool = False,
  real_label: Array | None = None,
  fake_label: Array | None = None,
) -> tuple[PyTree, dict, dict]:
  """D's gradient of :func:`ebm_d_loss` (plus the optional penalties) on real and revised.

  D's forward on ``real`` then ``revised`` (statistics threaded) is the one
  that updates its model state.

  Args:
    game: the GAN problem (``d_apply`` and, if used, ``d_regularizers``).
    d_variables: ``{'params': ..., **model_state}`` of D.
    real: data ``[B, H, W, C]``.
    revised: the Langevin-revised samples ``[B, H, W, C]`` (no gradient).
    key: the regularizers' key.
    logit_penalty: lambda of ``lambda (mean f(x)^2 + mean f(x_tilde)^2)``.
    use_d_regularizers: add ``game.d_regularizers`` with ``revised`` as fakes.
    real_label: labels ``[B]`` of the data (conditional games).
    fake_label: labels ``[B]`` of the revised samples (conditional games).

  Returns:
    ``(grads, new_model_state, metrics)``; metrics ``coop/ebm_loss``,
    ``coop/d_reg`` and ``d_real``/``d_fake`` (mean logit on data / revised).
  """
  params, model_state = split_variables(d_variables)

  def loss_fn(d_params):
    q, p, new_ms = d_forward(game, d_params, model_state, real, revised, real_label, fake_label)
    q, p = sample_logits(q), sample_logits(p)  # the energies (patch logits: their mean)
    loss = ebm_d_loss(q, p)
    reg = jnp.zeros((), loss.dtype)
    if logit_penalty:
      reg = reg + logit_penalty * (jnp.mean(jnp.square(q)) + jnp.mean(jnp.square(p)))
    if use_d_regularizers:
      d_vars = {'params': d_params, **model_state}
      reg = reg + d_regularization(game, d_vars, real, revised, key, real_label, fake_label)
    metrics = {'coop/ebm_loss': loss, 'coop/d_reg': reg}
    return loss + reg, (new_ms, {**metrics, 'd_real': jnp.mean(q), 'd_fake': jnp.mean(p)})

  grads, (new_ms, metrics) = jax.grad(loss_fn, has_aux=True)(params)
  return grads, new_ms, metrics


def gradients(
  game: Game,
  g_variables: dict,
  d_variables: dict,
  batch: dict,
  key: Array,
  *,
  langevin: LangevinConfig,
  teach_sigma: float = 0.3,
  teach_reduction: str = 'sum',
  langevin_stats: str = 'eval',
  use_d_regularizers: bool = False,
  logit_penalty: float = 0.0,
) -> GANGradients:
  """One cooperative iteration's gradients: D's EBM gradient and G's teaching gradient.

  ``z``, ``x_hat = G(z)`` (one forward, kept for G's gradient); ``x_tilde`` =
  Langevin from ``x_hat`` under D before its update; D's gradient of
  :func:`ebm_d_loss` (:func:`ebm_gradients`); G's gradient of
  :func:`teaching_g_loss` towards ``x_tilde`` through the same forward.

  Args:
    game: the GAN problem (``d_input_transform``/``d_perturbation`` belong to
      the adversarial phase and are not used).
    g_variables: ``{'params': ..., **model_state}`` of G; ``d_variables``: D's.
    batch: ``{'image': [B, H, W, C]}`` (``'label'``, ``'latent'`` as in
      :func:`jaxgan.onestage.gradients`).
    key: this iteration's key, split into latents, chain and regularizers.
    langevin: the chain's settings.
    teach_sigma: sigma_g of the teaching loss; ``teach_reduction``: ``'sum'``
      or ``'mean'`` over pixels (:func:`teaching_g_loss`).
    langevin_stats: ``'eval'`` or ``'batch'`` statistics in the chain
      (``'batch'`` is refused for a batch-coupled D, found from D when
      ``game.d_batch_coupled`` is ``None``).
    use_d_regularizers: add ``game.d_regularizers`` (``x_tilde`` as fakes).
    logit_penalty: lambda of ``lambda * (mean f(x)^2 + mean f(x_tilde)^2)``
      in D's loss (0: off). The EBM loss ignores a constant offset of f, so
      without it D's logits can drift from the adversarial scale.

  Returns:
    :class:`jaxgan.steps.GANGradients` ``(g_grads, d_grads, model_states, metrics)``;
    metrics ``coop/ebm_loss``, ``coop/teach_loss``, ``coop/d_reg``,
    ``d_real``/``d_fake`` (mean logit on data / on ``x_tilde`` in D's loss
    forward), ``coop/f_init``/``coop/f_revised`` (mean f on ``x_hat``/``x_tilde``
    under the chain's D) and ``coop/revision_dist`` (``mean_j ||x_tilde_j -
    x_hat_j||_2``).
  """
  where = 'coopinit.gradients'
  opts = _Options(
    langevin, teach_sigma, teach_reduction, langevin_stats, use_d_regularizers, logit_penalty
  )
  opts.check(game, where)
  checks.check_batch(batch, where=where)
  if not checks.is_traced(batch):
    checks.check_batch_values(batch, game, where=where)
  _chain_coupling_checked(game, langevin_stats, d_variables, batch, where)
  return _coop_pass(game, g_variables, d_variables, batch, key, opts, where)


def _coop_pass(game, g_variables, d_variables, batch, key, opts: _Options, where: str):
  """:func:`gradients` after its checks."""
  k_z, k_chain, k_reg = jax.random.split(key, 3)
  real, z, y_real, y_fake = one_pass_inputs(game, batch, k_z, where=where)
  g_params, g_ms = split_variables(g_variables)
  x_hat, g_vjp, g_new_ms = jax.vjp(
    lambda gp: game.g_apply({'params': gp, **g_ms}, z, train=True, **label_kwargs(y_fake)),
    g_params,
    has_aux=True,
  )
  checks.check_fake_shape(x_hat, real, where=where)
  f = energy_fn(game, d_variables, opts.langevin_stats, y_fake)
  x_tilde = langevin_revise(f, x_hat, k_chain, **dataclasses.asdict(opts.langevin))
  d_grads, d_ms, d_metrics = ebm_gradients(
    game,
    d_variables,
    real,
    x_tilde,
    k_reg,
    logit_penalty=opts.logit_penalty,
    use_d_regularizers=opts.use_d_regularizers,
    real_label=y_real,
    fake_label=y_fake,
  )
  teach, ct = jax.value_and_grad(teaching_g_loss)(
    x_hat, x_tilde, sigma=opts.teach_sigma, reduction=opts.teach_reduction
  )
  (g_grads,) = g_vjp(ct)
  dist = jnp.sqrt(jnp.sum(jnp.square(x_tilde - x_hat), axis=tuple(range(1, x_hat.ndim))))
  metrics = {
    'coop/ebm_loss': d_metrics['coop/ebm_loss'],
    'coop/teach_loss': teach,
    'coop/d_reg': d_metrics['coop/d_reg'],
    'd_real': d_metrics['d_real'],
    'd_fake': d_metrics['d_fake'],
    'coop/f_init': jnp.mean(f(x_hat)),
    'coop/f_revised': jnp.mean(f(x_tilde)),
    'coop/revision_dist': jnp.mean(dist),
  }
  model_states = {'g': merge_model_state(g_ms, g_new_ms), 'd': d_ms}
  return GANGradients(g_grads, d_grads, model_states, metrics)


def coop_step(
  game: Game,
  g_tx: optax.GradientTransformation,
  d_tx: optax.GradientTransformation,
  *,
  langevin: LangevinConfig,
  teach_sigma: float = 0.3,
  teach_reduction: str = 'sum',
  langevin_stats: str = 'eval',
  use_d_regularizers: bool = False,
  logit_penalty: float = 0.0,
  n_dis: int = 1,
  ema_decay: float | None = None,
  axis_name: str | None = None,
) -> Step:
  """Builds one cooperative-initialization iteration (CoopNets order): :func:`gradients`, applied.

  D's loss forward (real, then ``x_tilde``) is the only one that updates D's
  model state; G's is that of its one forward.

  Args:
    game, langevin, teach_sigma, teach_reduction, langevin_stats,
      use_d_regularizers, logit_penalty: as in :func:`gradients`.
    g_tx: G's optimizer; ``d_tx``: D's (the adversarial phase's ones).
    n_dis: rows of ``batch['image']`` are ``n_dis * B`` (the adversarial
      step's layout); the first ``B`` (and the first ``B`` rows of
      ``batch['latent']``) are this iteration's.
    ema_decay: EMA decay of G's params when the state keeps an EMA (``None``:
      :data:`jaxgan.steps.DEFAULT_EMA_DECAY`).
    axis_name: data axis for ``pmap``/``shard_map``: gradients, new model
      states and metrics are averaged over it.

  Returns:
    ``step(state, batch) -> (state, metrics)``, the metrics of :func:`gradients`.
  """
  where = 'coop_step'
  opts = _Options(
    langevin, teach_sigma, teach_reduction, langevin_stats, use_d_regularizers, logit_penalty
  )
  opts.check(game, where)
  ema_decay = validate_common(n_dis, ema_decay, None)
  step_opts = StepOptions(n_dis, ema_decay, axis_name, None, False)
  if game.d_batch_coupled:
    _check_chain_coupling(langevin_stats, True, where)

  def step(state: GANState, batch: dict) -> tuple[GANState, dict]:
    block = _first_block(game, batch, n_dis)
    return _coop_iteration(game, g_tx, d_tx, opts, step_opts, state, block)

  def first_call(state, batch, concrete):
    first_call_checks(game, g_tx, d_tx, state, batch, concrete=concrete, where=where)
    block = _first_block(game, batch, n_dis)
    _chain_coupling_checked(game, langevin_stats, state.d.variables, block, where)

  return checked_step(step, first_call)


def _coop_iteration(game, g_tx, d_tx, opts, step_opts, state, block):
  """The body of :func:`coop_step` on the iteration's ``B`` rows ``block``."""
  g_vars, d_vars, key = state.g.variables, state.d.variables, step_key(state)
  grads = _coop_pass(game, g_vars, d_vars, block, key, opts, 'coop_step')
  return apply_gan_gradients(state, grads, g_tx, d_tx, step_opts)


def _first_block(game: Game, batch: dict, n_dis: int) -> dict:
  """The first ``B`` of the ``n_dis * B`` rows of a batch: the real batch of an iteration."""
  where = 'coop_step'
  block = {'image': split_dis_batches(batch['image'], n_dis, where=where)[0]}
  latents = split_latents(batch, n_dis, where=where)
  if latents is not None:
    block['latent'] = jax.tree.map(lambda x: x[0], latents)
  ys = split_labels(batch, game, n_dis, where=where)
  if ys is not None:
    block['label'] = ys[0]
  return block


# ----------------------------------------------------------------------------
# The phase and the switch
# ----------------------------------------------------------------------------


def init_coop_state() -> dict:
  """The CoopInit entry of ``state.extra``: ``{'phase': int32 0}`` (cooperative)."""
  return {'phase': jnp.asarray(PHASE_COOP, jnp.int32)}


def with_coop_state(state: GANState) -> GANState:
  """``state`` with ``extra['coopinit']`` set to :func:`init_coop_state`."""
  return state.replace(extra={**state.extra, EXTRA_KEY: init_coop_state()})


def _coop_entry(state: GANState) -> dict:
  if EXTRA_KEY not in state.extra:
    raise ValueError(
      f"the state has no extra['{EXTRA_KEY}'] entry (extra keys: {sorted(state.extra)}); "
      "create it with create_state(..., extra={'coopinit': coopinit.init_coop_state()}) or "
      'coopinit.with_coop_state(state).'
    )
  return state.extra[EXTRA_KEY]


def _reinit_opt_state(tx: optax.GradientTransformation, params, old_state):
  """``tx.init(params)`` with the boolean leaves (masks) of ``old_state`` kept."""
  fresh = tx.init(params)
  if jax.tree.structure(fresh) != jax.tree.structure(old_state):
    raise ValueError(
      'reset_moments: the optimizer state does not have the structure of tx.init(params); '
      'pass the g_tx/d_tx the run was built with.'
    )
  keep = lambda new, old: old if jnp.result_type(old) == jnp.bool_ else new
  return jax.tree.map(keep, fresh, old_state)


def switch_to_adversarial(
  state: GANState,
  *,
  g_tx: optax.GradientTransformation,
  d_tx: optax.GradientTransformation,
  reset_moments: bool,
  reset_ema: bool = True,
) -> GANState:
  """Marks the cooperative phase as finished; parameters are kept as they are.

  Pure and jit-able; the returned pytree has the structure of ``state``.

  Args:
    state: a state in the cooperative phase.
    g_tx: G's optimizer; ``d_tx``: D's (used only when resetting).
    reset_moments: re-initialize both optimizer states from the current
      params (``tx.init(params)``: Adam moments and counts to zero), keeping
      every boolean leaf of the old state (sparse masks, which prune/regrow
      may have changed since ``init``); False keeps the states as they are.
    reset_ema: restart G's EMA from G's current params (when kept at all).

  Returns:
    The state with ``extra['coopinit']['phase'] = 1``.
  """
  entry = _coop_entry(state)
  g, d = state.g, state.d
  if reset_moments:
    g = g.replace(opt_state=_reinit_opt_state(g_tx, g.params, g.opt_state))
    d = d.replace(opt_state=_reinit_opt_state(d_tx, d.params, d.opt_state))
  ema = state.ema_params
  if reset_ema and ema is not None:
    # A copy, not a view: run eagerly, asarray would alias G's buffers, and a step that
    # donates its state cannot take the same buffer twice.
    ema = jax.tree.map(lambda p, e: jnp.array(p, dtype=e.dtype, copy=True), g.params, ema)
  entry = {**entry, 'phase': jnp.asarray(PHASE_ADVERSARIAL, jnp.int32)}
  return state.replace(g=g, d=d, ema_params=ema, extra={**state.extra, EXTRA_KEY: entry})


def _host_scalar(x) -> int:
  # Replicated (pmap) states carry a leading device axis; all copies agree.
  return int(np.asarray(x).reshape(-1)[0])


def make_phased_step(
  coop: Step,
  adversarial: Step,
  t_init: int,
  *,
  g_tx: optax.GradientTransformation,
  d_tx: optax.GradientTransformation,
  reset_moments: bool = False,
  reset_ema: bool = True,
  jit: bool = True,
) -> Step:
  """Host-side two-phase step: ``coop`` while ``step < t_init``, then ``adversarial``.

  The phase is read from the state (``step`` and ``extra['coopinit']['phase']``),
  so a run resumed from a checkpoint continues exactly where it was: inside the
  cooperative phase it keeps cooperating; a state restored at ``step >=
  t_init`` that is still in phase 0 (saved right at the switch) is switched
  before its first adversarial step. :func:`switch_to_adversarial` runs once,
  right before the adversarial step of iteration ``t_init``.

  Each of the three functions is compiled once (``jit=True``). To avoid a
  device-to-host sync per call, the step number is read from the device only
  when the incoming state is not the one this wrapper returned last.

  Args:
    coop: the cooperative step (:func:`coop_step`).
    adversarial: any adversarial step of the library (two-stage, one-stage,
      with DAT/DiffAugment/sparse optimizers as configured).
    t_init: number of cooperative iterations (>= 0).
    g_tx: G's optimizer; ``d_tx``: D's (the ones the steps use).
    reset_moments: re-initialize the optimizer states at the switch.
    reset_ema: restart G's EMA from G's params at the switch.
    jit: compile the steps and the switch with ``jax.jit``; pass False when
      the given steps are already compiled (then the switch runs eagerly).

  Returns:
    ``step(state, batch) -> (state, metrics)``.
  """
  if isinstance(t_init, bool) or not isinstance(t_init, int | np.integer) or t_init < 0:
    raise ValueError(f'make_phased_step: t_init must be an int >= 0, got {t_init!r}.')
  t_init = int(t_init)
  switch = functools.partial(
    switch_to_adversarial, g_tx=g_tx, d_tx=d_tx, reset_moments=reset_moments, reset_ema=reset_ema
  )
  if jit:
    coop, adversarial, switch = jax.jit(coop), jax.jit(adversarial), jax.jit(switch)
  # (step array returned last, its value, its phase): lets us skip reading the device.
  last = {'step': None, 'value': None, 'phase': None}

  def phased(state: GANState, batch: dict) -> tuple[GANState, dict]:
    return _phased_call(coop, adversarial, switch, t_init, last, state, batch)

  return phased


def _phased_call(coop, adversarial, switch, t_init, last, state, batch):
  """One call of :func:`make_phased_step`'s step; ``last`` caches the host's step and phase."""
  entry = _coop_entry(state)
  if last['step'] is not None and state.step is last['step']:
    t, phase = last['value'], last['phase']
  else:
    t, phase = _host_scalar(state.step), _host_scalar(entry['phase'])
  if t < t_init:
    if phase != PHASE_COOP:
      raise ValueError(
        f'state at step {t} is already in the adversarial phase but t_init={t_init}: the '
        'cooperative phase cannot restart. Resume with the t_init the run was started with '
        f'(at most {t}).'
      )
    new, metrics = coop(state, batch)
    phase = PHASE_COOP
  else:
    if phase == PHASE_COOP:
      state = switch(state)
    new, metrics = adversarial(state, batch)
    phase = PHASE_ADVERSARIAL
  last.update(step=new.step, value=t + 1, phase=phase)
  return new, metrics
