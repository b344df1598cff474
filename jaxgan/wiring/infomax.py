"""InfoMax-GAN's contrastive losses in a run: ``config.infomax`` (:mod:`jaxgan.infomax`)."""

from __future__ import annotations

from jaxgan.wiring.base import Technique, fail, is_number, refuse_labels

NEGATIVES = ('same_position', 'all_positions')  # jaxgan.infomax.NEGATIVES


class InfoMax(Technique):
  """D's and G's InfoNCE terms between local and global features of clean images."""

  section = 'infomax'

  @classmethod
  def validate(cls, config) -> None:
    im = config.get('infomax')
    if im is None or not im.enabled:
      return
    if not is_number(im.weight) or im.weight < 0:
      fail('infomax.weight', im.weight, 'use a value >= 0 (Mimicry: 0.2).')
    if im.get('negatives', 'same_position') not in NEGATIVES:
      fail('infomax.negatives', im.negatives, f'choose one of {NEGATIVES}.')

  @classmethod
  def d_heads(cls, config) -> tuple[str, ...]:
    return ('infomax',)

  def game(self, game, g_module, d_module, image_shape):
    from jaxgan import infomax
    from jaxgan.game import make_apply
    from jaxgan.models import selfsup

    refuse_labels(self.section, game)
    im = self.config.infomax
    if im.weight <= 0:
      return game
    feats, neg = selfsup.infomax_apply(d_module), im.get('negatives', 'same_position')
    d_reg = infomax.make_d_regularizer(feats, im.weight, neg)
    g_reg = infomax.make_g_regularizer(
      make_apply(g_module), feats, im.weight, neg, game.d_input_transform
    )
    return game.replace(
      d_regularizers=(*game.d_regularizers, d_reg), g_regularizers=(*game.g_regularizers, g_reg)
    )
