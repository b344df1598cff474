"""R1 and WGAN-GP in a run: ``config.r1_weight`` and ``config.gp_weight`` (0: off)."""

from __future__ import annotations

from jaxgan.wiring.base import Technique, fail, is_number

FIELDS = ('r1_weight', 'gp_weight')


class Penalties(Technique):
  """D's gradient penalties (:mod:`jaxgan.regularizers`), R1 before GP."""

  @classmethod
  def enabled(cls, config) -> bool:
    return any(is_number(config.get(field, 0.0)) and config.get(field, 0.0) > 0 for field in FIELDS)

  @classmethod
  def validate(cls, config) -> None:
    for field in FIELDS:
      if not is_number(config[field]) or config[field] < 0:
        fail(field, config[field], 'use a value >= 0 (0 turns it off).')

  def game(self, game, g_module, d_module, image_shape):
    from jaxgan import regularizers
    from jaxgan.game import make_apply

    d_apply, regs = make_apply(d_module), []
    if self.config.r1_weight > 0:
      regs.append(regularizers.r1_penalty(d_apply, self.config.r1_weight))
    if self.config.gp_weight > 0:
      regs.append(regularizers.wgan_gp_penalty(d_apply, self.config.gp_weight))
    return game.replace(d_regularizers=(*game.d_regularizers, *regs))
