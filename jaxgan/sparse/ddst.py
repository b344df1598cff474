"""SDST and DDST/ADAPT: G's dynamic masks and the balance-ratio-driven density of D.

Wang, Wu, Hovakimyan and Sun, "Balanced Training for Sparse GANs" (NeurIPS 2023; v1 "Double
Dynamic Sparse Training for GANs"). :func:`ddst_config` builds the variants ``'static'``,
``'sdst'``, ``'dda'``, ``'relax'`` and ``'strict'`` with the authors' released defaults;
``docs/TECHNIQUES.md`` (Sparse training) gives the balance ratio, the controller and the sources.

How the loop uses it (iteration ``t`` = ``state.step`` after the step; the reference's order)::

    state = sparse.init_sparse_state(state, cfg)          # once, after create_state
    state, metrics = step(state, batch)                   # measure_balance=True
    state, logs = sparse.sparse_after_step(
        state, metrics, t, cfg, g_grads_fn=..., d_grads_fn=...)

:func:`sparse_after_step` pushes the BR triple, runs G's prune/regrow when :func:`g_update_due`
and D's controller when :func:`d_control_due` (host-side checks of ``t``: the per-step program
never changes) and masks G's EMA with G's new mask. The D density, the BR window and the masks live
in the state (``state.extra['ddst']`` and the optimizer states), so a resumed run continues the
same schedule.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgan.sparse import _balance as balance
from jaxgan.sparse._masks import apply_masks, count_alive, global_density, num_maskable
from jaxgan.sparse._optimizer import get_masks, mask_initializer, masked_optimizer, sparsify_state
from jaxgan.sparse._prune_regrow import (
  REGROW,
  SCOPES,
  dst_masks,
  grow_by_score,
  prune_by_magnitude,
  regrow_scores,
  set_player_masks,
)
from jaxgan.sparse._schedules import cosine_drop_fraction, is_update_step
from jaxgan.state import GANState, Player

__all__ = [
  'BALANCE_KEYS',
  'CONTROLS',
  'DDSTConfig',
  'DDSTState',
  'DDST_KEY',
  'EXCHANGE',
  'GROW',
  'KEEP',
  'PRUNE',
  'VARIANTS',
  'WAITING',
  'd_control_due',
  'ddst_config',
  'ddst_control',
  'ddst_control_state',
  'ddst_optimizers',
  'ddst_record',
  'g_update_due',
  'init_ddst_state',
  'init_sparse_state',
  'sdst_update',
  'sparse_after_step',
  'sparse_logs',
]

PyTree = Any
Array = jax.Array

DDST_KEY = 'ddst'
VARIANTS = ('static', 'sdst', 'dda', 'relax', 'strict')
CONTROLS = (None, 'relax', 'strict')
BALANCE_KEYS = ('balance/gf', 'balance/df', 'balance/dr')

# Controller actions (DDSTState.action).
WAITING = -1  # window not yet full: no decision
KEEP = 0
GROW = 1
PRUNE = 2
EXCHANGE = 3  # strict mode at the cap: prune/regrow D

# Densities are floats; "at the cap" and "no change" use this tolerance.
DENSITY_TOL = 1e-6
_G_KEY_TAG = 0x6D57
_D_KEY_TAG = 0xDDC7


@dataclasses.dataclass(frozen=True)
class DDSTConfig:
  """Sparse GAN training settings; defaults are the reference's ADAPT_relax.

  Values from the authors' released scripts (CIFAR-10 SNGAN).

  Attributes:
    total_steps: run length ``T`` in iterations (``max_iter``, 100k).
    g_density: G's global density (0.1; strict 0.3).
    d_density: D's initial global density (= ``g_density``).
    distribution: initial per-layer densities, ``'erk'`` or ``'uniform'``.
    sampling: initial masks ``'exact'`` in count or ``'bernoulli'`` (the
      reference's sampling).
    grad_mode: what the inner optimizer sees, ``'dense'`` (reference) or
      ``'masked'``.
    scope: ranking of prune/regrow exchanges, ``'global'`` (reference) or
      ``'layer'``. D's density changes always rank globally.
    reset_moments: zero the optimizer moments of regrown weights (the
      reference does not).
    g_dst: G prunes/regrows (SDST, ADAPT); ``False`` = static G.
    g_update_every: ``ΔT_G`` (500).
    g_drop_fraction: drop fraction at ``t = 0`` (0.5), cosine-decayed...
    g_drop_fraction_final: ...to this at ``t = T`` (0.005).
    g_regrow: ``'gradient'`` (RigL; reference) or ``'random'`` (SET).
    g_end_step: no G update after this iteration (``None``: until ``T``).
    d_control: ``'relax'``, ``'strict'`` or ``None`` (D's density fixed).
    br_freq: push a BR triple every this many iterations (10).
    br_window: the window in iterations, ``da_iters`` (1000); the queue holds
      ``br_window // br_freq`` entries.
    br_estimator: ``'mean_of_ratios'`` (reference) or ``'ratio_of_means'``.
    d_control_every: ``ΔT_D`` (relax 1000; strict and DDA 2000).
    br_lower: ``B-`` (0.45; DDA 0.5).
    br_upper: ``B+`` (0.55; DDA 0.65).
    d_density_step: ``Δd`` (0.05, constant).
    d_density_min: floor of D's density (0.05 in the code; the poster says 0).
    d_density_max: cap (``None``: 1.0 relax, 0.5 strict).
    d_dst_fraction: strict mode's D exchange fraction at ``t = 0`` (0.5),
      cosine-decayed over ``T``...
    d_dst_fraction_final: ...to this (0.005).
    d_regrow: how D grows, ``'gradient'`` (reference) or ``'random'``.
  """

  total_steps: int = 100_000
  g_density: float = 0.1
  d_density: float = 0.1
  distribution: str = 'erk'
  sampling: str = 'exact'
  grad_mode: str = 'dense'
  scope: str = 'global'
  reset_moments: bool = False
  g_dst: bool = True
  g_update_every: int = 500
  g_drop_fraction: float = 0.5
  g_drop_fraction_final: float = 0.005
  g_regrow: str = 'gradient'
  g_end_step: int | None = None
  d_control: str | None = 'relax'
  br_freq: int = 10
  br_window: int = 1000
  br_estimator: str = 'mean_of_ratios'
  d_control_every: int = 1000
  br_lower: float = 0.45
  br_upper: float = 0.55
  d_density_step: float = 0.05
  d_density_min: float = 0.05
  d_density_max: float | None = None
  d_dst_fraction: float = 0.5
  d_dst_fraction_final: float = 0.005
  d_regrow: str = 'gradient'

  def __post_init__(self):
    def fail(name, fix):
      raise ValueError(f'DDSTConfig.{name}={getattr(self, name)!r} is invalid: {fix}')

    for name in ('total_steps', 'g_update_every', 'br_freq', 'br_window', 'd_control_every'):
      value = getattr(self, name)
      if not isinstance(value, int) or value < 1:
        fail(name, 'use a positive integer.')
    for name in ('g_density', 'd_density'):
      if not 0.0 < getattr(self, name) <= 1.0:
        fail(name, 'densities lie in (0, 1].')
    for name in (
      'g_drop_fraction',
      'g_drop_fraction_final',
      'd_dst_fraction',
      'd_dst_fraction_final',
    ):
      if not 0.0 <= getattr(self, name) <= 1.0:
        fail(name, 'fractions lie in [0, 1].')
    if self.distribution not in ('erk', 'uniform'):
      fail('distribution', "use 'erk' or 'uniform'.")
    if self.sampling not in ('exact', 'bernoulli'):
      fail('sampling', "use 'exact' or 'bernoulli'.")
    if self.grad_mode not in ('dense', 'masked'):
      fail('grad_mode', "use 'dense' (reference) or 'masked'.")
    if self.scope not in SCOPES:
      fail('scope', f'use one of {SCOPES}.')
    for name in ('g_regrow', 'd_regrow'):
      if getattr(self, name) not in REGROW:
        fail(name, f"use one of {REGROW} ('gradient' = RigL, 'random' = SET).")
    if self.d_control not in CONTROLS:
      fail('d_control', f'use one of {CONTROLS}.')
    if self.br_estimator not in balance.ESTIMATORS:
      fail('br_estimator', f'use one of {balance.ESTIMATORS}.')
    if self.br_window < self.br_freq:
      fail(
        'br_window',
        f'it must be at least br_freq={self.br_freq} (the queue holds br_window // br_freq).',
      )
    if self.d_control is not None and self.br_freq > self.d_control_every // 10:
      fail(
        'br_freq',
        f'the reference requires br_freq <= d_control_every // 10 = {self.d_control_every // 10}.',
      )
    if not self.br_lower <= self.br_upper:
      fail('br_lower', f'it must not exceed br_upper={self.br_upper}.')
    if not 0.0 < self.d_density_step <= 1.0:
      fail('d_density_step', 'use a step in (0, 1], e.g. 0.05.')
    if not 0.0 < self.d_density_min <= self.density_cap:
      fail('d_density_min', f'it must lie in (0, cap={self.density_cap}].')
    if self.d_density_max is not None and not 0.0 < self.d_density_max <= 1.0:
      fail('d_density_max', 'use a cap in (0, 1] or None.')

  @property
  def queue_capacity(self) -> int:
    """Q = ``br_window // br_freq`` (100)."""
    return self.br_window // self.br_freq

  @property
  def density_cap(self) -> float:
    """D's density cap: ``d_density_max``, else 0.5 (strict) or 1.0."""
    if self.d_density_max is not None:
      return float(self.d_density_max)
    return 0.5 if self.d_control == 'strict' else 1.0


_PRESETS = {
  'relax': {},
  'strict': dict(g_density=0.3, d_density=0.3, d_control='strict', d_control_every=2000),
  'dda': dict(g_dst=False, br_lower=0.5, br_upper=0.65, d_control_every=2000),
  'sdst': dict(d_control=None),
  'static': dict(g_dst=False, d_control=None),
}


def ddst_config(variant: str = 'relax', **overrides) -> DDSTConfig:
  """The reference settings of a variant, with ``overrides`` applied.

  Args:
    variant: ``'relax'`` (ADAPT_relax), ``'strict'`` (ADAPT_strict),
      ``'dda'`` (static G, BR-driven D), ``'sdst'`` (dynamic G, fixed D) or
      ``'static'``.
    **overrides: any :class:`DDSTConfig` field (e.g. ``total_steps=20000``,
      ``d_density=1.0`` for a dense D).
  """
  if variant not in _PRESETS:
    raise ValueError(f'variant must be one of {VARIANTS}, got {variant!r}.')
  fields = {f.name for f in dataclasses.fields(DDSTConfig)}
  unknown = sorted(set(overrides) - fields)
  if unknown:
    raise ValueError(f'unknown DDSTConfig fields {unknown}; valid fields: {sorted(fields)}.')
  return DDSTConfig(**{**_PRESETS[variant], **overrides})


class DDSTState(NamedTuple):
  """DDST technique state (``state.extra['ddst']``).

  Attributes:
    window: the BR window (:class:`jaxgan.sparse._balance.BRWindow`).
    d_density: D's target density (float32).
    br: BR seen by the last controller call (NaN before any).
    action: the last controller decision (``WAITING``, ``KEEP``, ``GROW``,
      ``PRUNE``, ``EXCHANGE``).
  """

  window: balance.BRWindow
  d_density: Array
  br: Array
  action: Array


def init_ddst_state(config: DDSTConfig, d_density: float | None = None) -> DDSTState:
  """Empty window; D's density ``d_density`` (default ``config.d_density``)."""
  d = config.d_density if d_density is None else d_density
  return DDSTState(
    window=balance.init_window(config.queue_capacity),
    d_density=jnp.asarray(d, jnp.float32),
    br=jnp.full((), jnp.nan, jnp.float32),
    action=jnp.full((), KEEP, jnp.int32),
  )


def init_sparse_state(state: GANState, config: DDSTConfig) -> GANState:
  """Masks the freshly created state's params and adds ``extra['ddst']``.

  Call once after :func:`jaxgan.state.create_state` with optimizers built by
  :func:`ddst_optimizers`. With ``sampling='bernoulli'`` D's target density
  starts at its realised density.
  """
  state = sparsify_state(state)
  if config.d_control is None:
    return state
  d_masks = get_masks(state.d.opt_state)
  if d_masks is None:
    raise ValueError(
      'DDST controls the density of D, but D has no sparse masks: build d_tx with '
      'jaxgan.sparse.ddst_optimizers (or masked_optimizer).'
    )
  d0 = float(global_density(d_masks)) if config.sampling == 'bernoulli' else config.d_density
  return state.replace(extra={**state.extra, DDST_KEY: init_ddst_state(config, d0)})


# ----------------------------------------------------------------------------
# The D controller
# ----------------------------------------------------------------------------


def _decide(ddst_state: DDSTState, step: Any, config: DDSTConfig) -> tuple[Array, Array, Array]:
  """The controller's decision at ``step``: ``(action, new_density, br)``."""
  window = ddst_state.window
  br = balance.balance_ratio(window, step, config.br_estimator)
  full = balance.window_size(window, step) >= config.queue_capacity
  d = ddst_state.d_density
  cap = config.density_cap
  up_target = jnp.minimum(cap, jnp.maximum(d + config.d_density_step, config.d_density_min))
  down_target = jnp.maximum(config.d_density_min, d - config.d_density_step)
  can_grow = up_target > d + DENSITY_TOL
  at_cap = jnp.abs(d - cap) <= DENSITY_TOL
  can_prune = down_target < d - DENSITY_TOL
  strict = config.d_control == 'strict'
  up_action = jnp.where(can_grow, GROW, jnp.where(at_cap & strict, EXCHANGE, KEEP))
  down_action = jnp.where(can_prune, PRUNE, KEEP)
  action = jnp.where(
    br >= config.br_upper, up_action, jnp.where(br <= config.br_lower, down_action, KEEP)
  )
  action = jnp.where(full, action, WAITING).astype(jnp.int32)
  new_d = jnp.where(action == GROW, up_target, jnp.where(action == PRUNE, down_target, d))
  return action, new_d.astype(jnp.float32), br


@functools.partial(jax.jit, static_argnames=('config',))
def ddst_control(
  ddst_state: DDSTState,
  d_player: Player,
  d_grads: PyTree | None,
  *,
  step: Any,
  key: Array | None,
  config: DDSTConfig,
) -> tuple[DDSTState, Player]:
  """One controller decision and its effect on D (pure; jitted).

  The caller decides *when* (``t % d_control_every == 0``, ``t != T``:
  :func:`d_control_due`); this function does nothing until the window holds
  Q entries. No recompilation when the density or masks change.

  Args:
    ddst_state: the DDST state.
    d_player: D (optimizer built with :func:`jaxgan.sparse.masked_optimizer`).
    d_grads: dense gradient of D's loss on its last batch (for growth).
    step: current iteration ``t`` (traced).
    key: PRNG key (random regrowth only).
    config: the settings (static).

  Returns:
    ``(ddst_state, d_player)``.
  """
  masks = get_masks(d_player.opt_state)
  if masks is None:
    raise ValueError(
      'ddst_control: D has no sparse masks; build d_tx with jaxgan.sparse.masked_optimizer.'
    )
  action, new_d, br = _decide(ddst_state, step, config)
  d_player = _apply_action(action, new_d, d_player, masks, d_grads, step, key, config)
  new_state = DDSTState(window=ddst_state.window, d_density=new_d, br=br, action=action)
  return new_state, d_player


def _apply_action(action, new_d, d_player, masks, d_grads, step, key, config) -> Player:
  """D after the controller's ``action``: kept, grown or pruned to ``new_d``, or exchanged."""
  target = jnp.round(new_d * num_maskable(masks)).astype(jnp.int32)
  alive = count_alive(masks)
  rm = config.reset_moments

  def keep(player):
    return player

  def grow(player):
    scores = regrow_scores(masks, d_grads, config.d_regrow, key)
    new = grow_by_score(masks, scores, jnp.maximum(target - alive, 0))
    return set_player_masks(player, new, reset_moments=rm)

  def prune(player):
    new = prune_by_magnitude(player.params, masks, jnp.maximum(alive - target, 0))
    return set_player_masks(player, new, reset_moments=rm)

  def exchange(player):
    f = cosine_drop_fraction(
      step, config.total_steps, config.d_dst_fraction, config.d_dst_fraction_final
    )
    new = dst_masks(
      player.params, masks, d_grads, f, key=key, regrow=config.d_regrow, scope=config.scope
    )
    return set_player_masks(player, new, reset_moments=rm)

  branch = jnp.clip(action, 0, 3)
  return jax.lax.switch(branch, (keep, grow, prune, exchange), d_player)


# ----------------------------------------------------------------------------
# GANState level
# ----------------------------------------------------------------------------


def _key(state: GANState, tag: int) -> Array:
  return jax.random.fold_in(jax.random.fold_in(state.rng, state.step), tag)


def _ddst_state(state: GANState) -> DDSTState:
  if DDST_KEY not in state.extra:
    raise ValueError(
      "state.extra has no 'ddst' entry: call jaxgan.sparse.init_sparse_state(state, config) once."
    )
  return state.extra[DDST_KEY]


def _check_balance_metrics(metrics: dict) -> None:
  """Raises unless the step reported the BR triple."""
  missing = [k for k in BALANCE_KEYS if k not in metrics]
  if missing:
    raise ValueError(
      f'metrics lack {missing}: build the step with measure_balance=True so it reports the '
      'DDST balance triple.'
    )


@functools.partial(jax.jit, static_argnames=('config',))
def _record(state, gf, df, dr, *, config):
  ds = _ddst_state(state)
  window = balance.push_if_due(ds.window, gf, df, dr, state.step, config.br_freq)
  return state.replace(extra={**state.extra, DDST_KEY: ds._replace(window=window)})


def ddst_record(state: GANState, metrics: dict, config: DDSTConfig) -> GANState:
  """Pushes the step's ``(gf, df, dr)`` if ``state.step % br_freq == 0``."""
  _check_balance_metrics(metrics)
  gf, df, dr = (metrics[k] for k in BALANCE_KEYS)
  return _record(state, gf, df, dr, config=config)


@functools.partial(jax.jit, static_argnames=('config',))
def _g_dst(state, g_grads, *, config):
  masks = get_masks(state.g.opt_state)
  f = cosine_drop_fraction(
    state.step, config.total_steps, config.g_drop_fraction, config.g_drop_fraction_final
  )
  new = dst_masks(
    state.g.params,
    masks,
    g_grads,
    f,
    key=_key(state, _G_KEY_TAG),
    regrow=config.g_regrow,
    scope=config.scope,
  )
  g = set_player_masks(state.g, new, reset_moments=config.reset_moments)
  ema = state.ema_params
  if ema is not None:
    ema = apply_masks(ema, new)  # SEMA: the EMA takes G's new mask.
  return state.replace(g=g, ema_params=ema)


def sdst_update(state: GANState, g_grads: PyTree | None, config: DDSTConfig) -> GANState:
  """G's prune/regrow at iteration ``t = state.step`` (jitted).

  Drop fraction ``f_G(t)`` (cosine, :func:`cosine_drop_fraction`), global
  magnitude prune, regrow by ``|g_grads|`` (RigL) or at random (SET); the
  EMA params get G's new mask (SEMA).

  Args:
    state: the run state; G's optimizer must be masked.
    g_grads: dense gradient of G's loss w.r.t. G's params (``None`` for SET).
    config: the settings.
  """
  if get_masks(state.g.opt_state) is None:
    raise ValueError(
      'sdst_update: G has no sparse masks; build g_tx with jaxgan.sparse.ddst_optimizers.'
    )
  if config.g_regrow == 'gradient' and g_grads is None:
    raise ValueError("sdst_update: g_regrow='gradient' (RigL) needs G's dense gradient.")
  return _g_dst(state, g_grads, config=config)


@functools.partial(jax.jit, static_argnames=('config',))
def _d_control(state, d_grads, *, config):
  ds, d = ddst_control(
    _ddst_state(state),
    state.d,
    d_grads,
    step=state.step,
    key=_key(state, _D_KEY_TAG),
    config=config,
  )
  return state.replace(d=d, extra={**state.extra, DDST_KEY: ds})


def ddst_control_state(state: GANState, d_grads: PyTree | None, config: DDSTConfig) -> GANState:
  """:func:`ddst_control` on ``state.d`` and ``state.extra['ddst']`` at ``t = state.step``."""
  if config.d_control is None:
    raise ValueError('ddst_control_state: config.d_control is None (D density fixed).')
  _ddst_state(state)
  if config.d_regrow == 'gradient' and d_grads is None:
    raise ValueError("ddst_control_state: d_regrow='gradient' needs D's dense gradient.")
  return _d_control(state, d_grads, config=config)


def g_update_due(step: int, config: DDSTConfig) -> bool:
  """Host-side: does iteration ``t`` update G's mask?"""
  return config.g_dst and is_update_step(
    step, config.g_update_every, total_steps=config.total_steps, end_step=config.g_end_step
  )


def d_control_due(step: int, config: DDSTConfig) -> bool:
  """Host-side: does iteration ``t`` run D's controller?"""
  return config.d_control is not None and is_update_step(
    step, config.d_control_every, total_steps=config.total_steps
  )


@jax.jit
def _sparse_logs(state):
  out = {}
  for name, player in (('g', state.g), ('d', state.d)):
    masks = get_masks(player.opt_state)
    if masks is not None:
      out[f'sparse/{name}_density'] = global_density(masks)
  if DDST_KEY in state.extra:
    ds = state.extra[DDST_KEY]
    out['ddst/d_target_density'] = ds.d_density
    out['ddst/br'] = balance.balance_ratio(ds.window, state.step)
    out['ddst/br_at_control'] = ds.br
    out['ddst/action'] = ds.action
  return out


def sparse_logs(state: GANState) -> dict:
  """Scalars to log: realised densities of G and D, BR and the last decision.

  A value not defined yet (the BR of the last decision before the first one,
  NaN in the state) is left out rather than logged as NaN.
  """
  logs = jax.device_get(_sparse_logs(state))
  return {k: v for k, v in logs.items() if np.isfinite(v)}


def sparse_after_step(
  state: GANState,
  metrics: dict,
  step: int,
  config: DDSTConfig,
  *,
  g_grads_fn: Callable[[GANState], PyTree] | None = None,
  d_grads_fn: Callable[[GANState], PyTree] | None = None,
) -> tuple[GANState, dict]:
  """Everything sparse after one training step, in the reference's order.

  1. BR triple pushed (``t % br_freq == 0``; needs ``measure_balance=True``);
  2. G prune/regrow if :func:`g_update_due` (with ``g_grads_fn(state)``);
  3. D controller if :func:`d_control_due` (with ``d_grads_fn(state)``).

  The gradient functions are called only on update iterations.

  Args:
    state: the state returned by the step.
    metrics: the step's metrics.
    step: ``t``, iterations done (``int(state.step)``; passed to avoid a
      device sync).
    config: the settings.
    g_grads_fn: ``state -> dense gradient of G's loss`` (RigL growth).
    d_grads_fn: ``state -> dense gradient of D's loss`` on its last batch.

  Returns:
    ``(state, logs)`` with the scalars of :func:`sparse_logs`.
  """
  if config.d_control is not None:
    state = ddst_record(state, metrics, config)
  if g_update_due(step, config):
    grads = None
    if config.g_regrow == 'gradient':
      if g_grads_fn is None:
        raise ValueError(
          "sparse_after_step: g_regrow='gradient' needs g_grads_fn (state -> G's gradient)."
        )
      grads = g_grads_fn(state)
    state = sdst_update(state, grads, config)
  if d_control_due(step, config):
    grads = None
    if config.d_regrow == 'gradient':
      if d_grads_fn is None:
        raise ValueError(
          "sparse_after_step: d_regrow='gradient' needs d_grads_fn (state -> D's gradient)."
        )
      grads = d_grads_fn(state)
    state = ddst_control_state(state, grads, config)
  return state, sparse_logs(state)


def ddst_optimizers(
  g_inner: Any,
  d_inner: Any,
  key: Array,
  config: DDSTConfig,
  *,
  g_exclude: tuple[str, ...] = (),
  d_exclude: tuple[str, ...] = (),
) -> tuple[Any, Any]:
  """Masked G and D optimizers with the config's initial masks.

  G gets ``g_density`` masks; D gets ``d_density`` masks (a D with density 1
  and no controller is left unwrapped, i.e. dense).
  """
  k_g, k_d = jax.random.split(key)

  def with_masks(inner, k, density, exclude):
    init = mask_initializer(
      k, density, distribution=config.distribution, sampling=config.sampling, exclude=exclude
    )
    return masked_optimizer(inner, init, grad_mode=config.grad_mode)

  g_tx = with_masks(g_inner, k_g, config.g_density, g_exclude)
  if config.d_density >= 1.0 and config.d_control is None:
    return g_tx, d_inner
  return g_tx, with_masks(d_inner, k_d, config.d_density, d_exclude)
