"""AdvAug in a run: ``config.advaug`` (:mod:`jaxgan.advaug`)."""

from __future__ import annotations

from jaxgan.wiring.base import Technique, refuse_labels


class AdvAug(Technique):
  """PGD on G's and D's features: one D and one G regularizer."""

  section = 'advaug'

  def game(self, game, g_module, d_module, image_shape):
    import jax.numpy as jnp

    from jaxgan import advaug
    from jaxgan.game import make_apply

    refuse_labels(self.section, game)
    c, latent_dim = self.config.advaug, self.config.latent_dim
    cfg = advaug.AdvAugConfig(
      steps=c.steps, step_size=c.step_size, norm=c.norm, direction=c.direction, weight=c.weight
    )
    g_apply, d_apply = make_apply(g_module), make_apply(d_module)
    d_template = advaug.perturbation_template(d_module, jnp.zeros((2, *image_shape)))
    g_template = advaug.perturbation_template(g_module, jnp.zeros((2, latent_dim)))
    d_reg = advaug.make_d_regularizer(d_apply, game.loss, cfg, d_template)
    # DiffAugment reaches G's clean loss only: the reference's adversarial G branch augments nothing.
    g_reg = advaug.make_g_regularizer(g_apply, d_apply, game.loss, cfg, g_template)
    return game.replace(
      d_regularizers=(*game.d_regularizers, d_reg), g_regularizers=(*game.g_regularizers, g_reg)
    )
