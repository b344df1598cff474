"""SSGAN's rotation losses in a run: ``config.ssgan`` (:mod:`jaxgan.ssgan`)."""

from __future__ import annotations

from jaxgan.wiring.base import Technique, fail, is_number, refuse_labels

ROTATIONS = ('all', 'quarter')  # jaxgan.ssgan.ROTATIONS


class SSGAN(Technique):
  """D's and G's rotation cross-entropies on clean (not DAT-perturbed) images."""

  section = 'ssgan'

  @classmethod
  def validate(cls, config) -> None:
    ss = config.get('ssgan')
    if ss is None or not ss.enabled:
      return
    for field in ('d_weight', 'g_weight'):
      if not is_number(ss[field]) or ss[field] < 0:
        fail(f'ssgan.{field}', ss[field], 'use a value >= 0 (Mimicry: d_weight 1.0, g_weight 0.2).')
    if ss.get('rotations', 'all') not in ROTATIONS:
      fail('ssgan.rotations', ss.rotations, f'choose one of {ROTATIONS}.')

  @classmethod
  def d_heads(cls, config) -> tuple[str, ...]:
    return ('rotation',)

  def game(self, game, g_module, d_module, image_shape):
    from jaxgan import ssgan
    from jaxgan.game import make_apply
    from jaxgan.models import selfsup

    refuse_labels(self.section, game)
    ss, rot = self.config.ssgan, selfsup.rotation_apply(d_module)
    rotations = ss.get('rotations', 'all')
    d_regs, g_regs = game.d_regularizers, game.g_regularizers
    if ss.d_weight > 0:
      d_regs = (*d_regs, ssgan.make_d_regularizer(rot, ss.d_weight, rotations))
    if ss.g_weight > 0:
      g_apply, transform = make_apply(g_module), game.d_input_transform
      g_regs = (*g_regs, ssgan.make_g_regularizer(g_apply, rot, ss.g_weight, transform, rotations))
    return game.replace(d_regularizers=d_regs, g_regularizers=g_regs)
