"""Dynamic sparse training of GANs: masks, masked optimizer, prune/regrow, DDST.

* :mod:`~jaxgan.sparse.masks`: mask trees mirroring the params, random initial
  masks, counts.
* :mod:`~jaxgan.sparse.distributions`: uniform and ERK per-layer densities.
* :mod:`~jaxgan.sparse.masked_optimizer`: the optax transformation that keeps
  pruned weights exactly zero and carries the masks in its state.
* :mod:`~jaxgan.sparse.prune_regrow`: magnitude prune, gradient (RigL) or random
  (SET) regrow, global or per layer, exact counts, traced counts.
* :mod:`~jaxgan.sparse.schedules`: cosine drop fraction, update steps.
* :mod:`~jaxgan.sparse.balance`: the balance ratio and its window.
* :mod:`~jaxgan.sparse.ddst`: SDST and the DDST/ADAPT controller on a GANState.
* :mod:`~jaxgan.sparse.flops`: dense and sparse FLOPs of G and D.
"""

from jaxgan.sparse.balance import (
  BRWindow,
  balance_ratio,
  init_window,
  push,
  push_if_due,
  window_size,
)
from jaxgan.sparse.ddst import (
  DDST_KEY,
  DDSTConfig,
  DDSTState,
  d_control_due,
  ddst_config,
  ddst_control,
  ddst_control_state,
  ddst_record,
  g_update_due,
  init_ddst_state,
  init_sparse_state,
  sdst_update,
  sparse_after_step,
  sparse_logs,
  sparse_optimizers,
)
from jaxgan.sparse.distributions import (
  erk_densities,
  erk_from_shapes,
  layer_densities_for,
  uniform_densities,
)
from jaxgan.sparse.flops import (
  FlopsTable,
  count_forward_flops,
  gan_iteration_flops,
  reference_training_flops,
)
from jaxgan.sparse.masked_optimizer import (
  SparseState,
  find_mask_state,
  get_masks,
  mask_initializer,
  masked,
  replace_masks,
  reset_moments,
  sparse_optimizer,
  sparsify_player,
  sparsify_state,
)
from jaxgan.sparse.masks import (
  apply_masks,
  count_alive,
  default_filter,
  dense_masks,
  global_density,
  layer_counts,
  layer_densities,
  maskable_tree,
  num_maskable,
  random_masks,
)
from jaxgan.sparse.prune_regrow import (
  dst_masks,
  dst_update,
  grow_by_score,
  newly_alive,
  prune_by_magnitude,
  set_count_masks,
  set_density,
  set_player_masks,
)
from jaxgan.sparse.schedules import cosine_drop_fraction, is_update_step
from jaxgan.sparse.topk import topk_mask

__all__ = [
  'BRWindow',
  'DDSTConfig',
  'DDSTState',
  'DDST_KEY',
  'FlopsTable',
  'SparseState',
  'apply_masks',
  'balance_ratio',
  'cosine_drop_fraction',
  'count_alive',
  'count_forward_flops',
  'd_control_due',
  'ddst_config',
  'ddst_control',
  'ddst_control_state',
  'ddst_record',
  'default_filter',
  'dense_masks',
  'dst_masks',
  'dst_update',
  'erk_densities',
  'erk_from_shapes',
  'find_mask_state',
  'g_update_due',
  'gan_iteration_flops',
  'get_masks',
  'global_density',
  'grow_by_score',
  'init_ddst_state',
  'init_sparse_state',
  'init_window',
  'is_update_step',
  'layer_counts',
  'layer_densities',
  'layer_densities_for',
  'mask_initializer',
  'maskable_tree',
  'masked',
  'newly_alive',
  'num_maskable',
  'prune_by_magnitude',
  'push',
  'push_if_due',
  'random_masks',
  'reference_training_flops',
  'replace_masks',
  'reset_moments',
  'sdst_update',
  'set_count_masks',
  'set_density',
  'set_player_masks',
  'sparse_after_step',
  'sparse_logs',
  'sparse_optimizer',
  'sparse_optimizers',
  'sparsify_player',
  'sparsify_state',
  'topk_mask',
  'uniform_densities',
  'window_size',
]
