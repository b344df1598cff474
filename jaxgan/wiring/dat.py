"""DAT in a run: ``config.dat`` (:mod:`jaxgan.dat`)."""

from __future__ import annotations

from jaxgan.wiring.base import Technique, fail, is_int, is_number


class DAT(Technique):
  """D's input perturbation: D's loss at adversarially moved reals and fakes."""

  section = 'dat'

  @classmethod
  def validate(cls, config) -> None:
    dat = config.get('dat')
    if dat is None or not dat.enabled:
      return
    if not is_int(dat.steps) or dat.steps < 1:
      fail('dat.steps', dat.steps, 'use a positive number of attack steps (the paper: 1).')
    if not is_number(dat.step_size) or dat.step_size <= 0:
      fail('dat.step_size', dat.step_size, 'use a positive step size (the paper: 1.0).')
    if not is_number(dat.clip) or dat.clip < 0:
      fail('dat.clip', dat.clip, 'use a value >= 0 (0: no clipping of the perturbation).')

  def game(self, game, g_module, d_module, image_shape):
    from jaxgan import dat

    c = self.config.dat
    perturbation = dat.make_dat_perturbation(
      steps=c.steps,
      step_size=c.step_size,
      clip=c.clip if c.clip > 0 else None,
      clamp_real=c.clamp_real,
    )
    return game.replace(d_perturbation=perturbation)
