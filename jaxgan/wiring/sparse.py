"""Sparse G and D in a run: ``config.sparse`` (SDST and DDST, :mod:`jaxgan.sparse`).

The masks live in the optimizers' states (:func:`jaxgan.sparse.ddst_optimizers`) and the
controller's state in ``state.extra``; after each adversarial step the hook pushes the balance
ratio, regrows G and steers D's density (:func:`jaxgan.sparse.sparse_after_step`). RigL's
growth gradients are those of the losses the steps train (:func:`growth_gradients`).
"""

from __future__ import annotations

from jaxgan.wiring.base import Technique, fail, is_int, is_number

VARIANTS = ('static', 'sdst', 'dda', 'relax', 'strict')  # jaxgan.sparse.ddst.VARIANTS


def growth_gradients(game, batch_size: int):
  """Jitted dense gradients of the players' losses at a state, for growing weights.

  Returns ``(g_grads(state), d_grads(state, real, real_label=None))``: the gradients of
  :func:`jaxgan.steps.g_player_loss` and :func:`jaxgan.steps.d_player_loss` (every game
  transform included: DiffAugment, DAT, regularizers) with respect to G's and D's params, on
  ``batch_size`` fresh latents (G) or fresh fakes against ``real`` ``[B, ...]`` (D). The keys
  come from ``fold_in(step_key(state), 101)`` (G) and ``102`` (D).
  """
  import jax

  from jaxgan.game import label_kwargs, sample_labels
  from jaxgan.steps import d_gradients, g_gradients, step_key

  def latents(state, salt: int, n: int):
    k_z = jax.random.fold_in(step_key(state), salt)
    y = sample_labels(game, jax.random.fold_in(k_z, 1), n)
    return game.sample_latents(k_z, n), y, jax.random.fold_in(k_z, 2)

  @jax.jit
  def g_grads(state):
    z, y, key = latents(state, 101, batch_size)
    d_vars = jax.lax.stop_gradient(state.d.variables)
    return g_gradients(game, state.g.variables, d_vars, z, key, label=y)[0]

  @jax.jit
  def d_grads(state, real, real_label=None):
    z, y, key = latents(state, 102, real.shape[0])
    g_vars = jax.lax.stop_gradient(state.g.variables)
    fake, _ = game.g_apply(g_vars, z, train=True, **label_kwargs(y))
    fake = jax.lax.stop_gradient(fake)
    return d_gradients(
      game, state.d.variables, real, fake, key, real_label=real_label, fake_label=y
    )[0]

  return g_grads, d_grads


class Sparse(Technique):
  """Masked optimizers, the balance measurement, prune/regrow and the D controller."""

  section = 'sparse'
  schedule_spans_num_steps = True  # the prune/regrow schedule is cosine over num_steps

  @classmethod
  def validate(cls, config) -> None:
    sp = config.get('sparse')
    if sp is None or not sp.enabled:
      return
    if sp.variant not in VARIANTS:
      import difflib

      close = difflib.get_close_matches(str(sp.variant), VARIANTS, n=1)
      hint = f' (did you mean {close[0]!r}?)' if close else ''
      fail('sparse.variant', sp.variant, f'choose one of {VARIANTS}{hint}.')
    if not is_number(sp.g_density) or not 0.0 < sp.g_density <= 1.0:
      fail('sparse.g_density', sp.g_density, 'use a density in (0, 1], e.g. 0.1.')
    if not is_number(sp.d_density) or not 0.0 <= sp.d_density <= 1.0:
      fail('sparse.d_density', sp.d_density, 'use a density in (0, 1] (0: the same as G).')
    for field in ('g_update_every', 'd_control_every', 'br_freq', 'br_window'):
      if not is_int(sp[field]) or sp[field] < 1:
        fail(f'sparse.{field}', sp[field], 'use a positive number of steps.')

  def __init__(self, config):
    from jaxgan import sparse

    super().__init__(config)
    sc = config.sparse
    self.ddst = sparse.ddst_config(
      sc.variant,
      total_steps=config.num_steps,
      g_density=sc.g_density,
      d_density=sc.d_density if sc.d_density > 0 else sc.g_density,
      g_update_every=sc.g_update_every,
      d_control_every=sc.d_control_every,
      br_freq=sc.br_freq,
      br_window=sc.br_window,
    )

  def optimizers(self, g_tx, d_tx):
    import jax

    from jaxgan import sparse

    return sparse.ddst_optimizers(g_tx, d_tx, jax.random.PRNGKey(self.config.seed + 1), self.ddst)

  def step_options(self) -> dict:
    return {'measure_balance': self.ddst.d_control is not None}

  def setup(self, run) -> None:
    self.grads = growth_gradients(run.game, self.config.batch_size)
    self.conditional = run.game.conditional

  def init_state(self, state):
    from jaxgan import sparse

    return sparse.init_sparse_state(state, self.ddst)

  def after_step(self, state, info):
    """Prune/regrow and the D controller on adversarial steps (masks stay put before)."""
    import jax.numpy as jnp

    from jaxgan import sparse

    if not info.adversarial:
      return state, {}
    b = self.config.batch_size
    real = info.batch['image'][:b]
    real_label = jnp.asarray(info.batch['label'][:b], jnp.int32) if self.conditional else None
    g_grads, d_grads = self.grads
    return sparse.sparse_after_step(
      state,
      info.metrics,
      info.step + 1,
      self.ddst,
      g_grads_fn=g_grads,
      d_grads_fn=lambda s: d_grads(s, real, real_label),
    )
