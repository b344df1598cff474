"""Sparse GAN training: masks, a masked optimizer, prune/regrow, DDST, lottery tickets.

The flat names are the whole public surface:

* masks mirror the params (``True`` = alive, ``None`` = dense leaf): :func:`dense_masks`,
  :func:`random_masks` with :func:`erk_densities` / :func:`uniform_densities`,
  :func:`apply_masks` and the counts;
* :func:`masked_optimizer` wraps any optax transformation so pruned weights stay exactly zero
  and carries the masks in its state (:func:`get_masks`, :func:`replace_masks`);
* prune/regrow (:func:`dst_update`, :func:`set_density` on a player; :func:`dst_masks`,
  :func:`prune_by_magnitude`, :func:`grow_by_score` on masks) and their schedules;
* the SDST/DDST loop API (:func:`ddst_config`, :func:`ddst_optimizers`,
  :func:`init_sparse_state`, :func:`sparse_after_step`).

Three submodules hold the larger tools: :mod:`jaxgan.sparse.ddst` (the controller's parts),
:mod:`jaxgan.sparse.lottery` (iterative magnitude pruning with rewinding) and
:mod:`jaxgan.sparse.flops` (the FLOPs tables). Modules whose names start with ``_`` are private.
Wang et al. (NeurIPS 2023) and Chen et al. (NeurIPS 2021) are the papers; ``docs/TECHNIQUES.md``
explains both.
"""

from jaxgan.sparse import ddst, flops, lottery
from jaxgan.sparse._distributions import erk_densities, uniform_densities
from jaxgan.sparse._masks import (
  apply_masks,
  count_alive,
  dense_masks,
  global_density,
  layer_densities,
  num_maskable,
  random_masks,
)
from jaxgan.sparse._optimizer import (
  SparseState,
  get_masks,
  mask_initializer,
  masked_optimizer,
  replace_masks,
  sparsify_player,
  sparsify_state,
)
from jaxgan.sparse._prune_regrow import (
  dst_masks,
  dst_update,
  grow_by_score,
  prune_by_magnitude,
  set_density,
)
from jaxgan.sparse._schedules import cosine_drop_fraction, is_update_step
from jaxgan.sparse.ddst import (
  DDST_KEY,
  DDSTConfig,
  ddst_config,
  ddst_optimizers,
  init_sparse_state,
  sparse_after_step,
)

__all__ = [
  'DDSTConfig',
  'DDST_KEY',
  'SparseState',
  'apply_masks',
  'cosine_drop_fraction',
  'count_alive',
  'ddst',
  'ddst_config',
  'ddst_optimizers',
  'dense_masks',
  'dst_masks',
  'dst_update',
  'erk_densities',
  'flops',
  'get_masks',
  'global_density',
  'grow_by_score',
  'init_sparse_state',
  'is_update_step',
  'layer_densities',
  'lottery',
  'mask_initializer',
  'masked_optimizer',
  'num_maskable',
  'prune_by_magnitude',
  'random_masks',
  'replace_masks',
  'set_density',
  'sparse_after_step',
  'sparsify_player',
  'sparsify_state',
  'uniform_densities',
]
