"""CoopInit in a run: ``config.coopinit`` (:mod:`jaxgan.coopinit`).

The cooperative step runs until ``t_init``, the adversarial one after it; the phase lives in
the state, so a resumed run continues in the phase it was in.
"""

from __future__ import annotations

from jaxgan.wiring.base import TOY_DATASETS, Technique, fail, is_int, is_number


class CoopInit(Technique):
  """The cooperative warm-up phase and the switch to the adversarial game."""

  section = 'coopinit'

  @classmethod
  def validate(cls, config) -> None:
    coop = config.get('coopinit')
    if coop is None or not coop.enabled:
      return
    if not is_int(coop.t_init) or coop.t_init < 0:
      fail('coopinit.t_init', coop.t_init, 'use a number of cooperative iterations >= 0.')
    if coop.t_init >= config.num_steps:
      fail(
        'coopinit.t_init',
        coop.t_init,
        f'it is not below num_steps={config.num_steps}, so adversarial training would never '
        f'start: use t_init < num_steps (e.g. {max(0, config.num_steps // 10)}).',
      )
    if not is_int(coop.n_steps) or coop.n_steps < 1:
      fail('coopinit.n_steps', coop.n_steps, 'use a positive number of Langevin steps.')
    for field in ('step_size', 'teach_sigma'):
      if not is_number(coop[field]) or coop[field] <= 0:
        fail(f'coopinit.{field}', coop[field], 'use a positive value.')
    for field in ('noise_scale', 'logit_penalty'):
      if not is_number(coop[field]) or coop[field] < 0:
        fail(f'coopinit.{field}', coop[field], 'use a value >= 0 (0: off).')

  def setup(self, run) -> None:
    from jaxgan import coopinit

    config, c = self.config, self.config.coopinit
    self.txs = run.g_tx, run.d_tx
    self.coop = coopinit.coop_step(
      run.game,
      run.g_tx,
      run.d_tx,
      langevin=coopinit.LangevinConfig(
        step_size=c.step_size,
        n_steps=c.n_steps,
        noise_scale=c.noise_scale,
        clip=None if config.dataset in TOY_DATASETS else (-1.0, 1.0),
      ),
      teach_sigma=c.teach_sigma,
      logit_penalty=c.logit_penalty,
      ema_decay=config.ema_decay if config.ema_decay > 0 else None,
    )

  def init_state(self, state):
    from jaxgan import coopinit

    return coopinit.with_coop_state(state)

  def warmup_steps(self) -> int:
    return self.config.coopinit.t_init

  def wrap_step(self, step, mesh):
    from jaxgan import coopinit, parallel

    c, (g_tx, d_tx) = self.config.coopinit, self.txs
    return coopinit.make_phased_step(
      parallel.jit_data_parallel(self.coop, mesh),
      step,
      c.t_init,
      g_tx=g_tx,
      d_tx=d_tx,
      reset_moments=c.reset_moments,
      jit=False,
    )
