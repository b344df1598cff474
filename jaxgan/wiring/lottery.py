"""A lottery ticket in a run: ``config.lottery.ticket`` (:mod:`jaxgan.sparse.lottery`).

G trains from ``theta0 * mask`` (the seed's initial weights, i.e. rewound) with the
ticket's masks fixed; pruned weights get no gradient and no Adam moments (the reference).
"""

from __future__ import annotations

from pathlib import Path

from jaxgan.wiring.base import Technique, fail, get


class Lottery(Technique):
  """G's optimizer masked by a saved ticket; G (and its EMA) start rewound."""

  section = 'lottery'

  @classmethod
  def enabled(cls, config) -> bool:
    return bool(get(config, 'lottery.ticket', ''))

  @classmethod
  def validate(cls, config) -> None:
    ticket = get(config, 'lottery.ticket', '')
    if not ticket:
      return
    if not Path(ticket).is_file():
      fail(
        'lottery.ticket', ticket, 'give the .npz of G masks written by experiments.lottery_mnist.'
      )
    if get(config, 'sparse.enabled', False):
      fail('lottery.ticket', ticket, "a ticket fixes G's masks: set sparse.enabled=False with it.")

  def optimizers(self, g_tx, d_tx):
    import numpy as np

    from jaxgan import sparse
    from jaxgan.sparse import lottery

    with np.load(self.config.lottery.ticket) as f:
      arrays = {k: f[k] for k in f.files}
    masks = lambda params: lottery.masks_from_arrays(arrays, params)
    return sparse.masked_optimizer(g_tx, masks, grad_mode='masked'), d_tx

  def init_state(self, state):
    from jaxgan import sparse

    return sparse.sparsify_state(state)  # rewinding: theta0 * mask, EMA = rewound G
