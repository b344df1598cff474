"""One-stage GAN training (OSGAN, Shen et al. CVPR 2021).

G and D are updated from one forward pass of each network and one backward
pass, with explicit :func:`jax.vjp`:

* ``mode='symmetric'`` (minimax, WGAN: ``g == -f``): the cotangent reaching G's
  output is negated, a gradient reversal. Exact for any D, BatchNorm included.
* ``mode='asymmetric'`` (non-saturating, LSGAN): the cotangent of each fake
  sample is scaled by the stop-gradient per-sample ``gamma_i = g'(p_i)/f'(p_i)``
  (closed forms in :mod:`jaxgan.losses`). Exact only when D treats samples
  independently; refused for a batch-coupled D and for hinge (``f' = 0``).
* ``mode='exact'`` (beyond the paper): D's backward is taken a second time with
  G's own cotangent ``g'(p)/B``; exact for any loss and any D. It still saves a
  G forward and a D forward over two-stage training.
* ``mode='auto'``: ``symmetric`` for symmetric losses, ``asymmetric`` when that
  is exact, else ``exact``.

One-stage training is simultaneous gradient descent: G's gradient goes through
the D of the same iteration (before its update) on the same ``z``. The
reference configs use much smaller D learning rates than two-stage (e.g. 1.35e-5
against 2e-4 on MNIST); see ``experiments/configs/osgan_*``.

With DiffAugment (``game.d_input_transform``), the transform sits between G's
output and D inside the one backward; it is per-sample, so the rules stay exact.
With DAT (``game.d_perturbation``) the perturbation applies to D's own
gradient only: D's loss is evaluated at the perturbed inputs, while G's
cotangent is taken at the clean (augmented) fakes, by one more D forward and
input backward on the fake batch with G's own ``g'(p)/B`` (statistics
frozen). G thus gets exactly the gradient of its clean loss through the D of
this iteration, as in two-stage DAT where G's step is unchanged. (Reusing the
perturbed-point cotangent would make G minimize ``g(D(G(z) + delta))``: a
different, look-ahead objective, measured 0.47 relative gradient difference
on a DAT-trained toy D.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxgan.game import Game, check_label_regularizers, label_kwargs
from jaxgan.state import GANState
from jaxgan.steps import (
  Step,
  apply_gradients,
  augment_inputs,
  balance_triple,
  cross_replica_mean,
  d_inputs,
  d_regularization,
  fake_labels,
  frozen_logits_fn,
  g_regularization,
  merge_model_state,
  split_dis_batches,
  split_labels,
  split_latents,
  step_key,
  update_ema,
  validate_common,
)

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


def resolve_mode(game: Game, mode: str) -> str:
  """Checks ``mode`` against the game and returns the concrete mode.

  Raises:
    ValueError: for an unknown mode, the symmetric rule with an asymmetric
      loss, or the asymmetric rule where it is not exact (batch-coupled D,
      a loss whose ``f'`` vanishes on a region such as hinge).
  """
  loss = game.loss
  if mode not in MODES:
    raise ValueError(f'unknown one-stage mode {mode!r}; choose one of {MODES}.')
  if mode == 'auto':
    if loss.symmetric:
      return 'symmetric'
    if game.d_batch_coupled or loss.name == 'hinge':
      return 'exact'
    return 'asymmetric'
  if mode == 'symmetric' and not loss.symmetric:
    raise ValueError(
      f"one-stage mode 'symmetric' needs a symmetric loss (minimax, wgan), got {loss.name!r}; "
      "use mode='asymmetric' (gradient decomposition) or mode='exact'."
    )
  if mode == 'asymmetric' and not loss.symmetric:
    if game.d_batch_coupled:
      raise ValueError(
        f'the asymmetric one-stage rule is not exact for a batch-coupled D (BatchNorm in train '
        f'mode, minibatch-stddev) with the {loss.name!r} loss: samples interact, so per-sample '
        "gamma scaling gives a wrong G gradient. Use mode='exact', or a D with GroupNorm, "
        "LayerNorm, spectral norm or no normalization (e.g. d_norm='group')."
      )
    if loss.name == 'hinge':
      raise ValueError(
        "the asymmetric one-stage rule is undefined for the hinge loss: f'(p) = 0 for p <= -1, "
        "so gamma = g'/f' is infinite there. Use mode='exact' (exact for hinge)."
      )
  return mode


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

  Args:
    game: the GAN problem.
    g_tx: G's optimizer; ``d_tx``: D's. Both step from the same pass.
    mode: ``'auto'``, ``'symmetric'``, ``'asymmetric'`` or ``'exact'``
      (module docstring).
    ema_decay: EMA decay of G's params.
    axis_name: data axis for ``pmap``/``shard_map`` (gradients, statistics
      and metrics are averaged over it).
    weight_clip: clamp D's params to ``[-c, c]`` after the update (WGAN).
    measure_balance: also report the DDST balance triple.

  With ``batch['latent']`` (pytree of ``[B, ...]`` leaves) G's input and the
  ``g_regularizers``' ``z`` come from the batch instead of ``game.sample_latents``.

  Returns:
    ``step(state, batch) -> (state, metrics)``. Metrics include
    ``onestage/gamma_mean`` and ``onestage/gamma_dropped``, the number of
    samples whose gamma was not finite (their G gradient is dropped rather
    than turned into inf/NaN).
  """
  validate_common(1, ema_decay, weight_clip)
  mode = resolve_mode(game, mode)
  check_label_regularizers(game, 'one_stage_step')
  loss = game.loss
  d_real_grad = jax.vmap(jax.grad(loss.d_real))
  d_fake_grad = jax.vmap(jax.grad(loss.d_fake))
  g_fake_grad = jax.vmap(jax.grad(loss.g_fake))

  def step(state: GANState, batch: dict) -> tuple[GANState, dict]:
    real = split_dis_batches(batch['image'], 1, where='one_stage_step')[0]
    latents = split_latents(batch, 1, where='one_stage_step')
    ys = split_labels(batch, game, 1, where='one_stage_step')
    y_real = None if ys is None else ys[0]
    b = real.shape[0]
    key = step_key(state, axis_name)
    k_z, k_in, k_dreg, k_greg, k_bal = jax.random.split(key, 5)
    if latents is None:
      z = game.sample_latents(k_z, b)
    else:
      z = jax.tree.map(lambda x: x[0], latents)
    y_fake = fake_labels(game, k_z, b)
    d_params, d_ms = state.d.params, state.d.model_state

    # One G forward.
    fake, g_vjp, g_new_ms = jax.vjp(
      lambda gp: game.g_apply(
        {'params': gp, **state.g.model_state}, z, train=True, **label_kwargs(y_fake)
      ),
      state.g.params,
      has_aux=True,
    )

    # One D forward on real and fake (two calls, statistics threaded).
    def d_fwd(dp, xf):
      d_vars = {'params': dp, **d_ms}
      _, _, real_in, fake_in = d_inputs(game, d_vars, real, xf, k_in, y_real, y_fake)
      q, ms = game.d_apply(d_vars, real_in, train=True, **label_kwargs(y_real))
      ms = merge_model_state(d_ms, ms)
      p, ms2 = game.d_apply({'params': dp, **ms}, fake_in, train=True, **label_kwargs(y_fake))
      return (q, p), merge_model_state(ms, ms2)

    (q, p), d_vjp, d_new_ms = jax.vjp(d_fwd, d_params, fake, has_aux=True)

    # One backward of L_D: D's gradient and the image cotangent.
    ct_q = d_real_grad(q) / b
    ct_p = d_fake_grad(p) / b
    d_grads, ct_fake = d_vjp((ct_q, ct_p))

    if game.d_perturbation is not None:
      # DAT: G's cotangent at the clean fakes (module docstring).
      d_logits = frozen_logits_fn(game, {'params': d_params, **d_ms}, y_fake)
      p_g, clean_vjp = jax.vjp(lambda xf: d_logits(augment_inputs(game, real, xf, k_in)[1]), fake)
      (ct_g,) = clean_vjp(g_fake_grad(p_g) / b)
      gamma = loss.gamma(p_g)
      dropped = jnp.zeros((), jnp.float32)
    elif mode == 'symmetric':
      p_g = p
      gamma = -jnp.ones_like(p)
      ct_g = -ct_fake
      dropped = jnp.zeros((), jnp.float32)
    elif mode == 'asymmetric':
      p_g = p
      gamma = jax.lax.stop_gradient(loss.gamma(p))
      bad = ~jnp.isfinite(gamma) | ~jnp.isfinite(ct_p)
      if loss.gamma_singular is not None:
        bad = bad | loss.gamma_singular(p)
      gamma = jnp.where(bad, 0.0, gamma)
      dropped = jnp.sum(bad).astype(jnp.float32)
      ct_g = gamma.reshape((b,) + (1,) * (fake.ndim - 1)) * ct_fake
    else:  # exact: D's backward again with G's own cotangent at p.
      p_g = p
      _, ct_g = d_vjp((jnp.zeros_like(ct_q), g_fake_grad(p) / b))
      gamma = loss.gamma(p)
      dropped = jnp.zeros((), jnp.float32)

    (g_grads,) = g_vjp(ct_g)

    d_vars = {'params': d_params, **d_ms}
    d_reg = jnp.zeros((), jnp.float32)
    if game.d_regularizers:
      real_aug, fake_aug = augment_inputs(game, real, jax.lax.stop_gradient(fake), k_in)
      d_reg, reg_grads = jax.value_and_grad(
        lambda dp: d_regularization(
          game, {'params': dp, **d_ms}, real_aug, fake_aug, k_dreg, y_real, y_fake
        )
      )(d_params)
      d_grads = jax.tree.map(jnp.add, d_grads, reg_grads)
    g_reg = jnp.zeros((), jnp.float32)
    if game.g_regularizers:
      frozen_d = jax.lax.stop_gradient(d_vars)
      g_reg, reg_grads = jax.value_and_grad(
        lambda gp: g_regularization(
          game, {'params': gp, **state.g.model_state}, frozen_d, z, k_greg, y_fake
        )
      )(state.g.params)
      g_grads = jax.tree.map(jnp.add, g_grads, reg_grads)

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
    g_ms = merge_model_state(state.g.model_state, g_new_ms)
    d_grads, g_grads, d_new_ms, g_ms, metrics = cross_replica_mean(
      (d_grads, g_grads, d_new_ms, g_ms, metrics), axis_name
    )
    d_player = apply_gradients(state.d, d_tx, d_grads, d_new_ms, weight_clip=weight_clip)
    g_player = apply_gradients(state.g, g_tx, g_grads, g_ms)
    new_state = state.replace(
      step=state.step + 1,
      g=g_player,
      d=d_player,
      ema_params=update_ema(state.ema_params, g_player, ema_decay),
    )
    if measure_balance:
      triple = balance_triple(
        game, new_state, z, real, k_bal, fake_pre=fake, real_label=y_real, fake_label=y_fake
      )
      metrics.update(cross_replica_mean(triple, axis_name))
    return new_state, metrics

  return step
