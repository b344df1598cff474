"""A DDST run checkpoints before its first D-density decision (found by the sparse study)."""

import numpy as np

from experiments.configs import default
from jaxgan import train


def test_ddst_run_saves_checkpoints_before_the_first_balance_ratio(tmp_path):
  c = default.get_config()
  c.model_kwargs.width = 8
  c.batch_size, c.num_steps, c.log_every = 16, 4, 1
  c.eval_samples, c.sample_every, c.checkpoint_every = 0, 0, 2
  c.sparse.enabled, c.sparse.variant, c.sparse.g_density = True, 'relax', 0.2
  c.sparse.g_update_every, c.sparse.d_control_every = 2, 10
  c.sparse.br_window, c.sparse.br_freq = 10, 1
  state = train.train_and_evaluate(c, tmp_path)  # DivergenceError at step 2 before the fix
  assert int(state.step) == 4
  assert np.isnan(float(state.extra['ddst'].br))  # no decision yet: the documented NaN
  assert (tmp_path / 'checkpoints' / '4').exists()
