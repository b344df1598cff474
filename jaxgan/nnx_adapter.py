"""Flax NNX models in jaxgan's apply convention.

``apply, variables = from_nnx(model)`` turns an ``nnx.Module`` (built with its
``nnx.Rngs``) into a pure apply function of :mod:`jaxgan.game`,
``apply(variables, x, *, train, rngs=None, label=None) -> (out, new_model_state)``,
and its variables ``{'params': ..., 'batch_stats': ..., 'rngs': ...}``. The
variables are plain nested dicts of arrays keyed by the model's attribute path,
so optax, the sparse masks, :class:`jaxgan.state.GANState`, the EMA and
checkpoints treat them exactly like a Linen model's. Build the state with
:func:`jaxgan.state.create_state_from_variables`; get a module back, e.g. G with
its EMA params, with :func:`to_nnx`. To keep the model and an
``nnx.Optimizer`` instead, read ``apply.variables_of(model)`` for the gradient
functions and hand their results back as ``apply.state(...)`` (an ``nnx.State``).
:class:`NNXApply` says what a call does and how variable types map to collections.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxgan.game import takes_train

Array = jax.Array

_COLLECTIONS = (
  (nnx.Param, 'params'),
  (nnx.BatchStat, 'batch_stats'),
  (nnx.RngKey, 'rngs'),
  (nnx.RngCount, 'rngs'),
)


def _collection(var_type: type) -> str:
  """The collection a variable type belongs to (:class:`NNXApply`)."""
  for base, name in _COLLECTIONS:
    if issubclass(var_type, base):
      return name
  return re.sub(r'(?<!^)(?=[A-Z])', '_', var_type.__name__).lower()


def _is_key(x: Any) -> bool:
  return jnp.issubdtype(jnp.result_type(x), jax.dtypes.prng_key)


class NNXApply:
  """An ``nnx.Module`` as a jaxgan apply function (see the module docstring).

  A call ``nnx.merge``-es the graph definition with the variables, sets the mode
  (``train=True``: ``model.train()``, dropout on and batch statistics used and
  updated; ``train=False``: ``model.eval()``), calls the model and ``nnx.split``-s
  it again. Collections follow the variable types: ``nnx.Param`` -> ``'params'``,
  ``nnx.BatchStat`` -> ``'batch_stats'``, the RNG streams (``nnx.RngKey``,
  ``nnx.RngCount``) -> ``'rngs'`` (keys stored as their ``uint32`` key data), any
  other type -> its snake-case name. With ``train=True`` the new model state is
  every collection but ``'params'`` after the call, so BatchNorm statistics and
  the dropout streams' counters advance with the state the steps thread through;
  with ``train=False`` it is ``{}``. ``rngs={'dropout': key}`` reseeds those
  streams for the call (``nnx.reseed``). Merging and splitting happen while a step
  is traced, so a compiled step runs only the model's own operations.

  Attributes are the model's static structure only (graph definition, variable
  paths); the arrays live in the variables passed to each call.
  """

  def __init__(self, model: nnx.Module):
    if not isinstance(model, nnx.Module):
      raise TypeError(
        f'from_nnx takes a flax.nnx.Module, got {type(model).__name__}; for a Linen module use '
        'jaxgan.game.make_apply.'
      )
    self._graphdef, state = nnx.split(model)
    leaves, self._treedef = jax.tree.flatten(state)
    flat = nnx.to_flat_state(state)
    if len(flat) != len(leaves):
      raise ValueError(
        f'from_nnx: {type(model).__name__} holds variables without an array value; give every '
        'nnx.Variable an array.'
      )
    self._slots = tuple((_collection(type(v)), tuple(path)) for path, v in flat)
    self._key_impls = tuple(jax.random.key_impl(x) if _is_key(x) else None for x in leaves)
    # Each variable's type and metadata (RNG stream tags...), without its array.
    self._templates = tuple(v.replace(jnp.zeros(())) for _, v in flat)
    self._with_train = takes_train(model.__call__)
    self._name = type(model).__name__

  def _to_variables(self, leaves: list) -> dict:
    variables: dict = {}
    for (collection, path), leaf in zip(self._slots, leaves):
      node = variables.setdefault(collection, {})
      for part in path[:-1]:
        node = node.setdefault(part, {})
      node[path[-1]] = jax.random.key_data(leaf) if _is_key(leaf) else leaf
    return variables

  def _value(self, variables: dict, slot: int) -> Any:
    (collection, path), impl = self._slots[slot], self._key_impls[slot]
    if collection not in variables:
      raise ValueError(
        f'{self._name}: the variables have no {collection!r} collection (got '
        f'{sorted(variables)}); pass the model state from_nnx returned along with the params.'
      )
    node = variables[collection]
    for part in path:
      node = node[part]
    return node if impl is None else jax.random.wrap_key_data(node, impl=impl)

  def _leaves(self, variables: dict) -> list:
    return [self._value(variables, i) for i in range(len(self._slots))]

  def state(self, variables: dict) -> nnx.State:
    """Some collections of variables as an ``nnx.State`` of the model's variable types.

    For a model updated in place: ``nnx.Optimizer.update(model, apply.state({'params':
    grads}))`` applies gradients of :mod:`jaxgan`'s gradient functions, and
    ``nnx.update(model, apply.state(new_model_state))`` stores BatchNorm statistics
    and RNG counters.
    """
    items = [
      (path, self._templates[i].replace(self._value(variables, i)))
      for i, (collection, path) in enumerate(self._slots)
      if collection in variables
    ]
    return nnx.from_flat_state(items)

  def variables_of(self, model: nnx.Module) -> dict:
    """The variables of ``model`` (a module with this graph), e.g. after editing it eagerly."""
    leaves, treedef = jax.tree.flatten(nnx.split(model)[1])
    if treedef != self._treedef:
      raise ValueError(
        f'{self._name}: the model no longer has the variables it had at from_nnx (a Variable '
        'was added, removed or changed type); create every nnx.Variable in __init__.'
      )
    return self._to_variables(leaves)

  def module(self, variables: dict) -> nnx.Module:
    """A module with these variables (``nnx.merge``)."""
    state = jax.tree.unflatten(self._treedef, self._leaves(variables))
    return nnx.merge(self._graphdef, state)

  def __call__(self, variables, x, *, train, rngs=None, label=None):
    model = self.module(variables)
    if train:
      model.train()
    else:
      model.eval()
    if rngs:
      nnx.reseed(model, **rngs)
    args = (x,) if label is None else (x, label)
    out = model(*args, **({'train': train} if self._with_train else {}))
    if not train:
      return out, {}
    new = self.variables_of(model)
    new.pop('params', None)
    return out, new


def from_nnx(model: nnx.Module) -> tuple[NNXApply, dict]:
  """``(apply, variables)`` of an ``nnx.Module`` (module docstring).

  Args:
    model: the module, e.g. ``MyD(rngs=nnx.Rngs(0, dropout=1))``; it is not
      modified.

  Returns:
    ``apply`` in the convention of :mod:`jaxgan.game` (pass it to
    :class:`jaxgan.game.Game` as ``g_apply``/``d_apply``) and the model's
    variables ``{'params': ..., **model_state}``.
  """
  apply = NNXApply(model)
  return apply, apply.variables_of(model)


def to_nnx(apply: NNXApply, variables: dict) -> nnx.Module:
  """The ``nnx.Module`` of ``apply`` with ``variables``, e.g. trained or EMA params.

  Example: ``to_nnx(g_apply, {'params': state.ema_params, **state.g.model_state})``.
  """
  if not isinstance(apply, NNXApply):
    raise TypeError(f'to_nnx takes the apply function from_nnx returned, got {type(apply)}.')
  return apply.module(variables)
