"""Checks of what users hand to the steps and gradient functions, run before compilation.

Shapes, dtypes and structures are checked when a step or gradient function is
traced (abstract values suffice, so this also holds under a caller's
``jax.jit``, ``pmap`` or ``shard_map``). Values (images in [-1, 1], labels in
``[0, K)``) can only be read from concrete arrays: the steps read them on their
first call outside a trace, and the gradient functions whenever they are called
on concrete arrays. Each error names the offending value and the fix.

Batch coupling (does D's logit for one sample depend on the other samples of
its batch?) is found from D itself by :func:`detect_batch_coupling` and cached
per D and input shape; ``Game.d_batch_coupled`` overrides it.
"""

from __future__ import annotations

import functools
import math
import warnings
import weakref
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgan.game import Game, label_kwargs

Array = jax.Array
PyTree = Any

# Relative slack of the range check (float rounding of a [0, 1] -> [-1, 1] conversion).
_RANGE_SLACK = 1e-6
_PROBE_SEED = 20240618
# Slack of the coupling probe, in units of the logits' float eps (relative).
_ULPS = 16


def is_traced(tree: PyTree) -> bool:
  """True when any leaf of ``tree`` is a tracer (inside ``jit``, ``grad``, ``pmap``...)."""
  return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(tree))


def check_batch(batch: Any, *, where: str) -> None:
  """A batch is a dict with an ``'image'`` entry ``[N, ...]``."""
  if not isinstance(batch, dict) or 'image' not in batch:
    got = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
    raise ValueError(
      f'{where}: the batch must be a dict with an "image" entry ([N, H, W, C] floats in '
      f"[-1, 1]), got {got}; e.g. step(state, {{'image': images}})."
    )
  check_image_batch(batch['image'], where=where)


def check_image_batch(images: Array, *, where: str) -> None:
  """Raises early for a batch that is not ``[N, ...]`` float with ``N > 0``.

  Images are ``[N, H, W, C]``; 2-D toy data are ``[N, 2]``.
  """
  shape = tuple(jnp.shape(images))
  if len(shape) not in (2, 4):
    raise ValueError(
      f'{where}: batch["image"] must be [N, H, W, C] images (or [N, D] points), got shape '
      f'{shape}; add a channel axis for grayscale images (x[..., None]).'
    )
  if not shape[0]:
    raise ValueError(
      f'{where}: batch["image"] is empty (shape {shape}); feed at least one image per '
      'D batch (n_dis * batch_size rows).'
    )
  dtype = jnp.result_type(images)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(
      f'{where}: batch["image"] must be float in [-1, 1], got dtype {dtype}; '
      'convert uint8 images with jaxgan.data.to_float.'
    )


def check_batch_values(batch: dict, game: Game, *, where: str) -> None:
  """Concrete values: images ``[N, H, W, C]`` in [-1, 1] and labels in ``[0, K)``.

  A batch of images without a single negative pixel (images in [0, 1]) gets a
  warning. Points (``[N, D]``, toy data) have no fixed range and are not checked.
  """
  images = np.asarray(batch['image'])
  if images.ndim == 4:
    low, high = float(images.min()), float(images.max())
    if not (-1.0 - _RANGE_SLACK <= low and high <= 1.0 + _RANGE_SLACK):
      raise ValueError(
        f'{where}: batch["image"] spans [{low:.4g}, {high:.4g}], outside [-1, 1]; scale uint8 '
        'images with jaxgan.data.to_float and floats in [0, 1] with x * 2 - 1.'
      )
    if low >= 0.0:
      warnings.warn(
        f'{where}: batch["image"] spans [{low:.4g}, {high:.4g}] with no negative pixel: these '
        'look like images in [0, 1], and jaxgan expects [-1, 1]; convert them with x * 2 - 1.',
        stacklevel=2,
      )
  if game.conditional and 'label' in batch:
    labels = np.asarray(batch['label'])
    if labels.size and (labels.min() < 0 or labels.max() >= game.num_classes):
      raise ValueError(
        f'{where}: batch["label"] spans [{labels.min()}, {labels.max()}], outside [0, '
        f'{game.num_classes}); labels must index the num_classes={game.num_classes} classes.'
      )


def check_fake_shape(fake: Array, real: Array, *, where: str) -> None:
  """G's output ``[B, ...]`` must have the per-sample shape of the real images."""
  if tuple(fake.shape[1:]) != tuple(real.shape[1:]):
    raise ValueError(
      f'{where}: G returns samples of shape {tuple(fake.shape[1:])} but the real images are '
      f'{tuple(real.shape[1:])}; make G output the data shape (image_shape).'
    )


def _describe(tree: PyTree, depth: int = 2) -> str:
  """Short name of an optimizer state: its (named) tuple types, two levels deep."""
  if isinstance(tree, tuple) and not hasattr(tree, '_fields') and depth:
    return '(' + ', '.join(_describe(t, depth - 1) for t in tree) + ')'
  return type(tree).__name__


def check_opt_state(tx: optax.GradientTransformation, player: Any, *, who: str, where: str) -> None:
  """The player's optimizer state has the structure and shapes of ``tx.init(params)``."""
  params = jax.tree.map(
    lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), player.params
  )
  expected = jax.eval_shape(tx.init, params)
  got = player.opt_state
  same = jax.tree.structure(expected) == jax.tree.structure(got) and all(
    tuple(e.shape) == tuple(jnp.shape(g))
    for e, g in zip(jax.tree.leaves(expected), jax.tree.leaves(got))
  )
  if not same:
    raise ValueError(
      f"{where}: {who.upper()}'s optimizer state does not match {who}_tx: state.{who}.opt_state "
      f'is {_describe(got)} but {who}_tx.init(params) gives {_describe(expected)}. Build the '
      f'state with the same {who}_tx (create_state({who}_tx=...)), or reset it: '
      f'state.{who}.replace(opt_state={who}_tx.init(state.{who}.params)).'
    )


def _random_leaf(a: Any, rng: np.random.Generator, *, param: bool) -> Array:
  shape, dtype = tuple(jnp.shape(a)), jnp.result_type(a)
  if not jnp.issubdtype(dtype, jnp.floating):
    return jnp.zeros(shape, dtype)
  if not param:  # statistics (running means and variances, power-iteration vectors)
    return jnp.asarray(1.0 + 0.1 * np.abs(rng.standard_normal(shape)), dtype)
  scale = 1.0 / math.sqrt(math.prod(shape[:-1])) if len(shape) >= 2 else 0.5
  return jnp.asarray(scale * rng.standard_normal(shape), dtype)


def _random_like(variables: dict, rng: np.random.Generator) -> dict:
  """Concrete stand-ins for traced variables: fan-in scaled params, positive statistics."""
  return {
    name: jax.tree.map(functools.partial(_random_leaf, rng=rng, param=name == 'params'), tree)
    for name, tree in variables.items()
  }


@functools.partial(jax.jit, static_argnums=0)
def _probe_logits(d_apply, variables, batches, label):
  """D's logits (train mode, statistics dropped) on each of ``batches`` ``[K, B, ...]``."""
  return jnp.stack([d_apply(variables, x, train=True, **label_kwargs(label))[0] for x in batches])


def detect_batch_coupling(
  d_apply, d_variables: dict, images: Array, label: Array | None = None
) -> bool:
  """Whether D's logit for one sample depends on the other samples of its batch.

  D runs (train mode, updated statistics dropped) on three batches of the
  shape of ``images``: ``images``; its first row with every other row
  redrawn; its last row with every other row redrawn. D couples the batch
  when the first or the last logit moves by more than a few float ulps
  (relative): a per-sample D computes each row identically whatever the
  other rows hold.
  With concrete arguments this is at the given variables and images; with
  traced ones (inside a caller's ``jit``) at random variables of the same
  shapes and random images, since coupling is a property of the architecture.
  Either way D runs outside the trace, before anything is compiled.

  Args:
    d_apply: D in the apply convention (:mod:`jaxgan.game`).
    d_variables: ``{'params': ..., **model_state}``.
    images: a batch ``[B, ...]`` (only its shape is used when traced).
    label: int labels ``[B]`` of a conditional D, else ``None``.
  """
  b = jnp.shape(images)[0]
  if b < 2:
    return False
  rng, dtype = np.random.default_rng(_PROBE_SEED), jnp.result_type(images)
  with jax.ensure_compile_time_eval():
    if is_traced((d_variables, images, label)):
      d_variables = _random_like(d_variables, rng)
      images = rng.uniform(-1.0, 1.0, jnp.shape(images))
      label = None if label is None else jnp.zeros((b,), jnp.int32)
    x = jnp.asarray(images, dtype)
    other = jnp.asarray(rng.uniform(-1.0, 1.0, x.shape), x.dtype)
    first, last = other.at[0].set(x[0]), other.at[-1].set(x[-1])
    out = np.asarray(_probe_logits(d_apply, d_variables, jnp.stack([x, first, last]), label))
  # A per-sample D computes a row identically whatever the other rows hold (same shapes), so
  # only rounding noise of a nondeterministic backend may remain: a few ulps.
  tol = _ULPS * float(jnp.finfo(out.dtype).eps) * (1.0 + float(np.max(np.abs(out[0]))))
  moved = max(abs(out[1, 0] - out[0, 0]), abs(out[2, -1] - out[0, -1]))
  return not moved <= tol  # NaN counts as coupled


_COUPLING: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def d_batch_coupled(
  game: Game, d_variables: dict, images: Array, label: Array | None = None
) -> bool:
  """``game.d_batch_coupled``, or, when it is ``None``, :func:`detect_batch_coupling`.

  The detection runs once per D and input shape (cached).
  """
  if game.d_batch_coupled is not None:
    return game.d_batch_coupled
  key = (tuple(jnp.shape(images)), str(jnp.result_type(images)), label is None)
  cache = _COUPLING.setdefault(game.d_apply, {})
  if key not in cache:
    cache[key] = detect_batch_coupling(game.d_apply, d_variables, images, label)
  return cache[key]
