"""The techniques a training run can use, each wired from its config section.

One module per technique holds its :class:`~jaxgan.wiring.base.Technique`: its config checks
(no JAX), and what it adds to a run (game entries, optimizer wrappers, state, a step wrapper,
per-step work). :data:`TECHNIQUES` lists them in the order the program asks them; a new
technique is one module and one line here (``docs/ARCHITECTURE.md``).
"""

from __future__ import annotations

from jaxgan.wiring import (
  advaug,
  coopinit,
  dat,
  diffaugment,
  infomax,
  lipschitz,
  lottery,
  penalties,
  sparse,
  ssgan,
)
from jaxgan.wiring.base import StepInfo, Technique

# The order is the order of their game entries (R1, GP, AdvAug, SSGAN, InfoMax) and of their
# per-step work (the monitor reads the state before prune/regrow changes it).
TECHNIQUES: tuple[type[Technique], ...] = (
  diffaugment.DiffAugment,
  penalties.Penalties,
  advaug.AdvAug,
  ssgan.SSGAN,
  infomax.InfoMax,
  dat.DAT,
  lipschitz.Lipschitz,
  coopinit.CoopInit,
  sparse.Sparse,
  lottery.Lottery,
)


def validate(config) -> None:
  """Every technique's config checks (no JAX)."""
  for technique in TECHNIQUES:
    technique.validate(config)


def active(config) -> list[Technique]:
  """The techniques ``config`` turns on, one instance each, in registry order."""
  return [technique(config) for technique in TECHNIQUES if technique.enabled(config)]


__all__ = ['TECHNIQUES', 'StepInfo', 'Technique', 'active', 'validate']
