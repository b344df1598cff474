"""Checkpoints of a whole run with orbax.

A checkpoint holds the complete :class:`~jaxgan.state.GANState` (params, model
statistics, optimizer moments, sparse masks, EMA, technique state), the data
position and the config, so a restarted run continues exactly where the
checkpoint was taken. Two managers live in the work directory:

* ``checkpoints/``: the last ``keep`` checkpoints, saved asynchronously;
* ``best/``: the single best checkpoint by an evaluation metric (optional).

Saves are atomic (orbax writes to a temporary folder and renames it). On
restore, a latest checkpoint that cannot be read is reported and the previous
one is used; the unreadable ones are moved to ``unreadable_checkpoints/`` so
that the resumed run saves those steps again (orbax never saves a step at or
below the newest one on disk). A checkpoint whose arrays do not match the
current config's state (different model shapes) is refused with the differing
entries named. A checkpoint saved with or without ``optax.apply_if_finite``
around the optimizers restores into a state built the other way (the wrapper's
counters start afresh), so ``skip_nonfinite_updates`` can be switched on resume.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import flax.serialization
import jax
import numpy as np
import optax
import orbax.checkpoint as ocp

from jaxgan.config_checks import ConfigError

PyTree = Any
log = logging.getLogger(__name__)

UNREADABLE_DIR = 'unreadable_checkpoints'
_SKIP_FIELDS = frozenset(optax.ApplyIfFiniteState._fields)


class CheckpointMismatchError(ConfigError):
  """The checkpoint's state does not fit the state the config builds."""


class CheckpointSaveError(RuntimeError):
  """orbax declined to save a checkpoint."""


def _short(err: BaseException, limit: int = 160) -> str:
  """``Type: first line of the message``, cut to ``limit`` characters."""
  text = (str(err).strip().splitlines() or [''])[0]
  text = text if len(text) <= limit else text[: limit - 3] + '...'
  return f'{type(err).__name__}: {text}'


def _state_dict(state: PyTree) -> dict:
  return flax.serialization.to_state_dict(state)


def _flat_shapes(tree: PyTree) -> dict[str, tuple]:
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {jax.tree_util.keystr(path): (tuple(leaf.shape), str(leaf.dtype)) for path, leaf in flat}


def describe_mismatch(saved: dict[str, tuple], expected: dict[str, tuple], limit: int = 8) -> str:
  """One line listing the entries whose presence, shape or dtype differ (``; ``-separated)."""
  items = []
  for key in sorted(set(saved) | set(expected)):
    a, b = saved.get(key), expected.get(key)
    if a == b:
      continue
    if a is None:
      items.append(f'{key}: not in the checkpoint; config expects {b[0]} {b[1]}')
    elif b is None:
      items.append(f'{key}: in the checkpoint ({a[0]} {a[1]}) but not in the config state')
    else:
      items.append(f'{key}: checkpoint {a[0]} {a[1]}, config {b[0]} {b[1]}')
  more = len(items) - limit
  items = items[:limit] + ([f'and {more} more'] if more > 0 else [])
  return '; '.join(items)


def _is_skip_state(node) -> bool:
  return isinstance(node, dict) and set(node) == _SKIP_FIELDS


def match_skip_layout(tree: PyTree, like: PyTree) -> PyTree:
  """``tree`` (a state dict) with ``optax.apply_if_finite`` states where ``like`` has them.

  A wrapper state only in ``like`` is added around ``tree``'s optimizer state,
  with ``like``'s counters; one only in ``tree`` is replaced by its inner
  state. Everything else is left as it is (so real differences still show).
  """
  if _is_skip_state(like) and not _is_skip_state(tree):
    counters = {k: like[k] for k in _SKIP_FIELDS - {'inner_state'}}
    return {**counters, 'inner_state': match_skip_layout(tree, like['inner_state'])}
  if _is_skip_state(tree) and not _is_skip_state(like):
    return match_skip_layout(tree['inner_state'], like)
  if isinstance(tree, dict) and isinstance(like, dict):
    return {k: match_skip_layout(v, like[k]) if k in like else v for k, v in tree.items()}
  return tree


class RunCheckpointer:
  """Saves and restores ``(state, data_position, config)`` in ``workdir``.

  Args:
    workdir: the run's directory.
    keep: how many recent checkpoints to keep.
    best_metric: name of an evaluation metric to keep the best checkpoint by
      (``None``: no best checkpoint).
    best_mode: ``'min'`` (FID) or ``'max'``.
  """

  def __init__(
    self,
    workdir: str | Path,
    *,
    keep: int = 3,
    best_metric: str | None = None,
    best_mode: str = 'min',
  ):
    if keep < 1:
      raise ValueError(f'keep must be >= 1, got {keep}.')
    if best_mode not in ('min', 'max'):
      raise ValueError(f"best_mode must be 'min' or 'max', got {best_mode!r}.")
    self.workdir = Path(workdir).absolute()  # orbax needs absolute paths
    self.best_metric = best_metric
    self.set_aside: list[Path] = []  # unreadable checkpoints moved away by restore()
    self._last = ocp.CheckpointManager(
      self.workdir / 'checkpoints',
      options=ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, enable_async_checkpointing=True
      ),
      item_handlers=self._handlers(),
    )
    self._best = None
    if best_metric is not None:
      self._best = ocp.CheckpointManager(
        self.workdir / 'best',
        options=ocp.CheckpointManagerOptions(
          max_to_keep=1,
          create=True,
          best_fn=lambda m: m[best_metric],
          best_mode=best_mode,
          enable_async_checkpointing=False,
        ),
        item_handlers=self._handlers(),
      )

  @staticmethod
  def _handlers() -> dict:
    return {
      'state': ocp.StandardCheckpointHandler(),
      'data': ocp.JsonCheckpointHandler(),
      'config': ocp.JsonCheckpointHandler(),
    }

  def _args(self, state, data_position, config_json):
    return ocp.args.Composite(
      state=ocp.args.StandardSave(_state_dict(state)),
      data=ocp.args.JsonSave(dict(data_position)),
      config=ocp.args.JsonSave({'config': config_json}),
    )

  def save(self, step: int, state: PyTree, data_position: dict, config_json: str) -> None:
    """Saves asynchronously; call :meth:`wait` before reading it back or exiting.

    Raises:
      CheckpointSaveError: orbax declined (a checkpoint at ``step`` or later is
        on disk), rather than dropping the save silently.
    """
    if not self._last.save(step, args=self._args(state, data_position, config_json)):
      raise CheckpointSaveError(
        f'orbax did not save step {step} in {self._last.directory}: it already holds step '
        f'{self._last.latest_step()}. Remove the later checkpoints or use a new --workdir.'
      )

  def save_best(
    self, step: int, state: PyTree, data_position: dict, config_json: str, metrics: dict
  ) -> None:
    """Offers the checkpoint to the best-by-metric manager (kept if best so far)."""
    if self._best is None:
      return
    if self.best_metric not in metrics or not np.isfinite(metrics[self.best_metric]):
      return
    self._best.save(step, args=self._args(state, data_position, config_json), metrics=dict(metrics))

  def wait(self) -> None:
    self._last.wait_until_finished()
    if self._best is not None:
      self._best.wait_until_finished()

  def close(self) -> None:
    self.wait()
    self._last.close()
    if self._best is not None:
      self._best.close()

  def steps(self, which: str = 'last') -> list[int]:
    mngr = self._best if which == 'best' else self._last
    return [] if mngr is None else sorted(mngr.all_steps())

  @staticmethod
  def _readable(mngr: ocp.CheckpointManager, step: int) -> bool:
    """Whether checkpoint ``step`` restores as saved (no target structure)."""
    try:
      mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    except Exception:  # noqa: BLE001 - unreadable for whatever reason
      return False
    return True

  def latest_config(self) -> tuple[int, str] | None:
    """``(step, config_json)`` of the newest checkpoint whose config reads, or ``None``."""
    for step in sorted(self._last.all_steps(), reverse=True):
      try:
        item = self._last.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
      except Exception:  # noqa: BLE001 - restore() reports unreadable checkpoints
        continue
      return step, item['config']['config']
    return None

  def restore(
    self,
    target_state: PyTree,
    *,
    which: str = 'last',
    step: int | None = None,
    set_aside: bool = True,
  ) -> tuple[PyTree, dict, str, int] | None:
    """Restores the newest readable checkpoint into the structure of ``target_state``.

    Args:
      target_state: a state of the right structure (e.g. the freshly
        initialized one, or its ``jax.eval_shape``).
      which: ``'last'`` or ``'best'``.
      step: restore this step only (``None`` if unreadable); default: the
        newest readable one.
      set_aside: move unreadable checkpoints newer than the one restored (all
        of them when none reads) to ``workdir/unreadable_checkpoints/``
        (``which='last'`` only), so the resumed run can save those steps.

    Returns:
      ``(state, data_position, config_json, step)``, or ``None`` when there is
      no readable checkpoint.

    Raises:
      CheckpointMismatchError: the checkpoint's arrays don't fit the target.
    """
    mngr = self._best if which == 'best' else self._last
    if mngr is None:
      raise ValueError("which='best' needs a RunCheckpointer built with best_metric.")
    if step is not None:
      return self._restore_step(mngr, step, target_state)
    unreadable = []
    found = None
    for candidate in sorted(mngr.all_steps(), reverse=True):
      found = self._restore_step(mngr, candidate, target_state)
      if found is not None:
        break
      unreadable.append(candidate)
    if unreadable and which == 'last' and set_aside:
      self._set_aside(unreadable)
    return found

  def _restore_step(self, mngr, step: int, target_state: PyTree):
    """Checkpoint ``step`` restored into ``target_state``'s structure; ``None`` if unreadable."""
    target_dict = _state_dict(target_state)
    try:
      saved_tree = mngr.item_metadata(step)['state'].tree
    except Exception as err:  # noqa: BLE001 - any unreadable checkpoint falls back
      log.warning(
        'checkpoint %d in %s is unreadable (%s); trying the previous one.',
        step,
        mngr.directory,
        _short(err),
      )
      return None
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target_dict)
    sharding = jax.tree.leaves(abstract)[0].sharding
    saved_abstract = jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=sharding), saved_tree
    )
    abstract = match_skip_layout(abstract, saved_abstract)  # the layout on disk
    saved, expected = _flat_shapes(saved_tree), _flat_shapes(abstract)
    if saved != expected:
      if not self._readable(mngr, step):
        log.warning(
          'checkpoint %d in %s is truncated or corrupt; trying the previous one.',
          step,
          mngr.directory,
        )
        return None
      raise CheckpointMismatchError(
        f'checkpoint {step} in {mngr.directory} does not match the state this config builds: '
        f'{describe_mismatch(saved, expected)}. Use the config the run was started with, or a '
        'new --workdir.'
      )
    try:
      restored = mngr.restore(
        step,
        args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract),
          data=ocp.args.JsonRestore(),
          config=ocp.args.JsonRestore(),
        ),
      )
    except Exception as err:  # noqa: BLE001 - a truncated/corrupt checkpoint falls back
      log.warning(
        'checkpoint %d in %s could not be restored (%s); trying the previous one.',
        step,
        mngr.directory,
        _short(err),
      )
      return None
    state_dict = match_skip_layout(restored['state'], target_dict)
    state = flax.serialization.from_state_dict(target_state, state_dict)
    return state, dict(restored['data']), restored['config']['config'], step

  def _set_aside(self, steps: list[int]) -> None:
    """Moves unreadable checkpoints out of the manager's directory (process 0)."""
    if jax.process_index() == 0:
      for step in steps:
        source = Path(self._last.directory) / str(step)
        target = self.workdir / UNREADABLE_DIR / str(step)
        n = 1
        while target.exists():
          target, n = self.workdir / UNREADABLE_DIR / f'{step}.{n}', n + 1
        target.parent.mkdir(parents=True, exist_ok=True)
        source.rename(target)
        self.set_aside.append(target)
        log.warning(
          'moved unreadable checkpoint %d to %s; its steps are trained again.', step, target
        )
    ocp.multihost.sync_global_processes('jaxgan_unreadable_checkpoints_moved')
    self._last.reload()
