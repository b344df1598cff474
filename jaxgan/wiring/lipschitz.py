"""The input-gradient monitor in a run: ``config.monitor_lipschitz`` (:mod:`jaxgan.lipschitz`)."""

from __future__ import annotations

from jaxgan.wiring.base import Technique, fail


def gradient_norms(game):
  """Jitted ``(state, real) -> lipschitz/*``: D's input-gradient norms at the state.

  D is frozen (:func:`jaxgan.steps.frozen_logits_fn`) and scored where D's loss sees its inputs:
  real ``[B, ...]`` and fresh fakes of G (train mode, statistics not stored) through the game's
  input transform (DiffAugment; :func:`jaxgan.steps.augment_inputs`). Keys come from
  ``fold_in(step_key(state), 103)``.
  """
  import jax

  from jaxgan import lipschitz
  from jaxgan.steps import augment_inputs, frozen_logits_fn, step_key

  @jax.jit
  def norms(state, real):
    key = jax.random.fold_in(step_key(state), 103)
    k_z, k_eps = jax.random.split(key)
    z = game.sample_latents(k_z, real.shape[0])
    fake, _ = game.g_apply(state.g.variables, z, train=True)
    real_in, fake_in = augment_inputs(
      game, real, jax.lax.stop_gradient(fake), jax.random.fold_in(key, 1)
    )
    d_fn = frozen_logits_fn(game, state.d.variables)
    return lipschitz.input_gradient_norms(d_fn, real_in, fake_in, k_eps)

  return norms


class Lipschitz(Technique):
  """Logs D's input-gradient norms on the real batch and fresh fakes at every log step."""

  free_on_resume = ('monitor_lipschitz',)

  @classmethod
  def enabled(cls, config) -> bool:
    return bool(config.get('monitor_lipschitz', False))

  def setup(self, run) -> None:
    if run.game.conditional:
      fail(
        'monitor_lipschitz',
        True,
        'the input-gradient monitor scores one batch with one D function and does not take '
        'class labels yet: turn it off for a class-conditional model.',
      )
    self.norms = gradient_norms(run.game)

  def after_step(self, state, info):
    import jax

    c, done = self.config, info.step + 1
    if done % c.log_every and done != c.num_steps:
      return state, {}
    return state, jax.device_get(self.norms(state, info.batch['image'][: c.batch_size]))
