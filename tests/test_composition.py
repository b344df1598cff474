"""One run with every technique: CoopInit, one-stage, DDST sparsity, DAT, DiffAugment."""

from __future__ import annotations

import json

import jax
import numpy as np

from experiments.configs import everything
from jaxgan import coopinit, sparse, train

T_INIT, STEPS = 3, 12


def small_config():
  c = everything.get_config()
  c.model_kwargs.width = 8
  c.batch_size = 16
  c.num_steps = STEPS
  c.coopinit.t_init = T_INIT
  c.coopinit.n_steps = 2
  c.sparse.g_update_every = 2
  c.sparse.d_control_every = 10
  c.sparse.br_freq = 1
  c.sparse.br_window = 2
  c.ema_decay = 0.9
  c.log_every = 1
  c.sample_every = 0
  c.eval_samples = 0
  c.checkpoint_every = STEPS
  return c


def _pruned_are_zero(params, masks) -> bool:
  leaves = jax.tree.leaves(masks, is_leaf=lambda m: m is None)
  return all(
    m is None or not np.any(np.asarray(w)[~np.asarray(m)])
    for w, m in zip(jax.tree.leaves(params), leaves)
  )


def test_every_technique_in_one_run(tmp_path):
  state = jax.device_get(train.train_and_evaluate(small_config(), tmp_path))
  rows = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  by_step = {r['step']: r for r in rows}
  assert sorted(by_step) == list(range(1, STEPS + 1))

  # CoopInit: cooperative losses exactly up to T_INIT, adversarial one-stage after.
  for t, r in by_step.items():
    assert ('coop/ebm_loss' in r) == (t <= T_INIT), t
    assert ('onestage/gamma_mean' in r) == (t > T_INIT), t
    assert all(np.isfinite(v) for v in r.values() if isinstance(v, float)), t
  assert int(state.extra[coopinit.EXTRA_KEY]['phase']) == 1

  # One-stage: gamma is finite and no sample's G gradient was dropped.
  for t in range(T_INIT + 1, STEPS + 1):
    assert by_step[t]['onestage/gamma_mean'] < 0
    assert by_step[t]['onestage/gamma_dropped'] == 0

  # DDST: pruned weights are exactly zero in G, its EMA and D; G keeps its density.
  g_masks, d_masks = sparse.get_masks(state.g.opt_state), sparse.get_masks(state.d.opt_state)
  assert _pruned_are_zero(state.g.params, g_masks)
  assert _pruned_are_zero(state.ema_params, g_masks)
  assert _pruned_are_zero(state.d.params, d_masks)
  g_density = sparse.count_alive(g_masks) / sparse.num_maskable(g_masks)
  assert abs(float(g_density) - 0.3) < 0.01
  assert 'sparse/d_density' in by_step[STEPS]
