"""FLOPs of dense and sparse G and D, counted as the DDST/ADAPT reference's tables count them.

Wang et al., "Balanced Training for Sparse GANs" (NeurIPS 2023), Table 3, computed by the
authors' ``flops_calculator``: per example and forward, a linear or conv kernel costs one FLOP per
multiply-accumulate scaled by its density, biases and BatchNorm parameters ``features *
positions``, activations, pooling and embeddings nothing. :func:`count_forward_flops` finds the
layers by intercepting Flax calls under ``jax.eval_shape`` (nothing is computed); a transposed
convolution costs ``kernel.size * P_in``, its true multiply-accumulate count (the reference skips
``ConvTranspose2d``). :func:`gan_iteration_flops` scales G by ``bs_D * n_critic + 3 * bs_G`` and D
by ``3 * bs_D * n_critic + bs_G`` per iteration, and :func:`reference_training_flops` totals a run
as the reference does (2.67e17 for dense CIFAR-10 SNGAN). ``docs/TECHNIQUES.md`` (Sparse training).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax

from jaxgan.sparse._masks import PyTree, layer_densities

__all__ = [
  'FlopsTable',
  'count_forward_flops',
  'gan_iteration_flops',
  'reference_training_flops',
]


@dataclasses.dataclass(frozen=True)
class FlopsTable:
  """Forward FLOPs of one network for one example.

  Attributes:
    weights: ``{param path: FLOPs}`` of the kernels (scale with density).
    fixed: FLOPs of biases and normalization parameters (never sparse).
  """

  weights: dict[str, float]
  fixed: float

  def forward(self, densities: Mapping[str, float] | None = None) -> float:
    """Forward FLOPs per example; kernels scaled by ``densities`` (default 1)."""
    densities = densities or {}
    unknown = sorted(set(densities) - set(self.weights))
    if unknown:
      raise ValueError(f'densities name layers the FLOPs table does not know: {unknown[:5]}.')
    return self.fixed + sum(f * densities.get(name, 1.0) for name, f in self.weights.items())

  @property
  def dense(self) -> float:
    return self.forward(None)


def _positions(shape: tuple) -> int:
  return math.prod(shape[1:-1]) if len(shape) > 2 else 1


def count_forward_flops(
  apply_fn: nn.Module | Callable[[dict, jax.Array], Any],
  variables: PyTree,
  example_input: jax.Array,
  **apply_kwargs,
) -> FlopsTable:
  """Counts the forward FLOPs of a Flax network for one example.

  Args:
    apply_fn: a Linen module (called as ``module.apply(variables, x,
      **apply_kwargs)``) or a function ``(variables, x) -> out`` that calls
      Linen modules (e.g. ``lambda v, x: game.d_apply(v, x, train=False)``).
    variables: ``{'params': ..., ...}`` (arrays or ``ShapeDtypeStruct``).
    example_input: an input; only ``example_input[:1]``'s shape is used.
    **apply_kwargs: extra arguments for ``module.apply`` (e.g. ``train=False``).

  Returns:
    The :class:`FlopsTable` keyed by param paths (``'Conv_0/kernel'``), the
    same paths as the mask trees.
  """
  if isinstance(apply_fn, nn.Module):
    module = apply_fn

    def run(v, x):
      return module.apply(v, x, **apply_kwargs)
  else:
    if apply_kwargs:
      raise ValueError(
        'apply_kwargs are only for a Linen module; close over them in your function.'
      )
    run = apply_fn

  recorder = _LayerRecorder()
  x1 = jax.ShapeDtypeStruct((1, *example_input.shape[1:]), example_input.dtype)
  with nn.intercept_methods(recorder):
    jax.eval_shape(run, variables, x1)
  if not recorder.weights:
    raise ValueError(
      'no layer with a kernel was seen: count_forward_flops needs Flax Linen modules '
      '(Dense/Conv/... or modules owning a kernel param).'
    )
  return FlopsTable(weights=recorder.weights, fixed=recorder.fixed)


class _LayerRecorder:
  """A Linen method interceptor adding up the FLOPs of every parameter-owning call."""

  def __init__(self):
    self.weights: dict[str, float] = {}
    self.fixed = 0.0

  def __call__(self, next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name != '__call__' or not args or not hasattr(args[0], 'shape'):
      return out
    y = out[0] if isinstance(out, tuple) and out and hasattr(out[0], 'shape') else out
    if not hasattr(y, 'shape'):
      return out
    try:
      own = context.module.variables.get('params', {})
    except Exception:  # an unbound or parameterless module
      return out
    self._add(
      context.module.path, own, _positions(tuple(args[0].shape)), _positions(tuple(y.shape))
    )
    return out

  def _add(self, module_path: tuple, own: Mapping, p_in: int, p_out: int) -> None:
    prefix = '/'.join(str(p) for p in module_path)
    for name, leaf in own.items():
      if isinstance(leaf, Mapping) or name == 'embedding':
        continue
      size = math.prod(leaf.shape)
      path = f'{prefix}/{name}' if prefix else name
      if len(leaf.shape) >= 2:
        self.weights[path] = self.weights.get(path, 0.0) + float(size * min(p_in, p_out))
      else:
        self.fixed += float(size * p_out)


def _densities_of(masks: PyTree | None) -> dict[str, float]:
  """``{path: density}`` from a mask tree (``{}`` for ``None``: dense)."""
  return {} if masks is None else layer_densities(masks)


def gan_iteration_flops(
  g_table: FlopsTable,
  d_table: FlopsTable,
  *,
  batch_size: int,
  n_critic: int,
  g_batch_size: int | None = None,
  g_masks: PyTree | None = None,
  d_masks: PyTree | None = None,
) -> dict[str, float]:
  """Training and inference FLOPs of G and D for one iteration.

  Args:
    g_table, d_table: from :func:`count_forward_flops`.
    batch_size: D's batch ``bs_D`` per D step.
    n_critic: D steps per iteration.
    g_batch_size: G's batch ``bs_G`` (default ``batch_size``).
    g_masks, d_masks: current mask trees (``None``: dense).

  Returns:
    ``flops/{g,d}_inference[_dense]`` (per example),
    ``flops/{g,d}_train[_dense]`` and ``flops/train[_dense]`` (per
    iteration), and ``flops/train_ratio`` (sparse / dense).
  """
  for name, v in (('batch_size', batch_size), ('n_critic', n_critic)):
    if not isinstance(v, int) or v < 1:
      raise ValueError(f'{name} must be a positive int, got {v!r}.')
  bs_g = batch_size if g_batch_size is None else g_batch_size
  g_mult = batch_size * n_critic + 3 * bs_g
  d_mult = 3 * batch_size * n_critic + bs_g
  g_inf, d_inf = g_table.forward(_densities_of(g_masks)), d_table.forward(_densities_of(d_masks))
  out = {
    'flops/g_inference': g_inf,
    'flops/g_inference_dense': g_table.dense,
    'flops/d_inference': d_inf,
    'flops/d_inference_dense': d_table.dense,
    'flops/g_train': g_inf * g_mult,
    'flops/g_train_dense': g_table.dense * g_mult,
    'flops/d_train': d_inf * d_mult,
    'flops/d_train_dense': d_table.dense * d_mult,
  }
  out['flops/train'] = out['flops/g_train'] + out['flops/d_train']
  out['flops/train_dense'] = out['flops/g_train_dense'] + out['flops/d_train_dense']
  out['flops/train_ratio'] = out['flops/train'] / out['flops/train_dense']
  return out


def reference_training_flops(
  g_train: float, d_train: float, iterations: int, n_critic: int
) -> float:
  """A run's training FLOPs the way the reference totals them.

  ``g_train * iterations + d_train * iterations * n_critic``: the reference
  adds D's per-iteration count once per D step.
  """
  return g_train * iterations + d_train * iterations * n_critic
