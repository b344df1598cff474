"""DiffAugment in a run: ``config.diffaugment`` names the policy (:mod:`jaxgan.augment`)."""

from __future__ import annotations

import difflib

from jaxgan.wiring.base import Technique, fail

OPS = (
  'brightness',
  'color',
  'contrast',
  'cutout',
  'saturation',
  'translation',
)  # augment.POLICY_OPS


class DiffAugment(Technique):
  """D's input transform: the same random augmentation of everything D sees."""

  @classmethod
  def enabled(cls, config) -> bool:
    return bool(config.get('diffaugment', ''))

  @classmethod
  def validate(cls, config) -> None:
    policy = config.get('diffaugment', '')
    if not isinstance(policy, str):
      fail('diffaugment', policy, "give a policy string, e.g. 'color,translation,cutout'.")
    unknown = [p.strip() for p in policy.split(',') if p.strip() and p.strip() not in OPS]
    if unknown:
      close = difflib.get_close_matches(unknown[0], OPS, n=1)
      hint = f' (did you mean {close[0]!r}?)' if close else ''
      fail(
        'diffaugment',
        policy,
        f'unknown op {unknown[0]!r}{hint}; use a comma-separated list of {OPS}, e.g. '
        "'color,translation,cutout'.",
      )

  def game(self, game, g_module, d_module, image_shape):
    from jaxgan import augment

    return game.replace(d_input_transform=augment.make_diff_augment(self.config.diffaugment))
