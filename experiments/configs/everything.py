"""Every technique at once: CoopInit start, then one-stage updates of a DDST-sparse G and D
with DAT and DiffAugment, on the offline MNIST-5k DCGAN-28.

What runs, in order: ``coopinit.t_init`` cooperative iterations (D as an energy-based
model on Langevin-revised G samples, G taught by them), then one-stage asymmetric
updates (non-saturating loss, GroupNorm D, so gamma scaling is exact) in which D's loss
is taken at DAT-perturbed inputs and D sees DiffAugment'ed reals and fakes. From the
first step G is 30% dense with dynamic prune/regrow and D's density is steered by the
balance ratio (DDST, relaxed). Masks, the CoopInit phase and the BR window are
checkpointed, so the run resumes exactly.

  python -m experiments.main --config experiments/configs/everything.py --workdir runs/everything

2,000 iterations at batch 64 (about 15 minutes on a 2-core CPU); ``tests/test_composition.py``
runs it for a few iterations at a small width.
"""

from experiments.configs import default


def get_config():
  c = default.get_config()
  c.trainer = 'one_stage'
  c.onestage_mode = 'asymmetric'
  c.loss = 'ns'
  c.model_kwargs.d_norm = 'group'
  c.d_optimizer = default.optimizer(lr=5e-5)  # one-stage D learning rate of the reference
  c.diffaugment = 'color,translation,cutout'
  c.dat.enabled = True
  c.coopinit.enabled = True
  c.coopinit.t_init = 200
  c.sparse.enabled = True
  c.sparse.variant = 'relax'
  c.sparse.g_density = 0.3
  c.sparse.g_update_every = 100
  c.sparse.d_control_every = 200
  c.sparse.br_window = 100
  return c
