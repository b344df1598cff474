"""Checkpoints of a whole run with orbax.

A checkpoint holds the complete :class:`~jaxgan.state.GANState` (params, model
statistics, optimizer moments, sparse masks, EMA, technique state), the data
position and the config, so a restarted run continues exactly where the
checkpoint was taken. Two managers live in the work directory:

* ``checkpoints/``: the last ``keep`` checkpoints, saved asynchronously;
* ``best/``: the single best checkpoint by an evaluation metric (optional).

Saves are atomic (orbax writes to a temporary folder and renames it). On
restore, a latest checkpoint that cannot be read is reported and the previous
one is used. A checkpoint whose arrays do not match the current config's state
(different model shapes) is refused with the differing entries named.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import flax.serialization
import jax
import numpy as np
import orbax.checkpoint as ocp

PyTree = Any
log = logging.getLogger(__name__)


class CheckpointMismatchError(ValueError):
  """The checkpoint's state does not fit the state the config builds."""


def _state_dict(state: PyTree) -> dict:
  return flax.serialization.to_state_dict(state)


def _flat_shapes(tree: PyTree) -> dict[str, tuple]:
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {jax.tree_util.keystr(path): (tuple(leaf.shape), str(leaf.dtype)) for path, leaf in flat}


def describe_mismatch(saved: dict[str, tuple], expected: dict[str, tuple], limit: int = 8) -> str:
  """Human-readable list of entries whose presence, shape or dtype differ."""
  lines = []
  for key in sorted(set(saved) | set(expected)):
    a, b = saved.get(key), expected.get(key)
    if a == b:
      continue
    if a is None:
      lines.append(f'  {key}: not in the checkpoint; config expects {b[0]} {b[1]}')
    elif b is None:
      lines.append(f'  {key}: in the checkpoint ({a[0]} {a[1]}) but not in the config state')
    else:
      lines.append(f'  {key}: checkpoint {a[0]} {a[1]}, config {b[0]} {b[1]}')
  more = len(lines) - limit
  lines = lines[:limit] + ([f'  ... and {more} more'] if more > 0 else [])
  return '\n'.join(lines)


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
    """Saves asynchronously; call :meth:`wait` before reading it back or exiting."""
    self._last.save(step, args=self._args(state, data_position, config_json))

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

  def restore(
    self, target_state: PyTree, *, which: str = 'last'
  ) -> tuple[PyTree, dict, str, int] | None:
    """Restores the newest readable checkpoint into the structure of ``target_state``.

    Args:
      target_state: a state of the right structure (e.g. the freshly
        initialized one, or its ``jax.eval_shape``).
      which: ``'last'`` or ``'best'``.

    Returns:
      ``(state, data_position, config_json, step)``, or ``None`` when there is
      no checkpoint.

    Raises:
      CheckpointMismatchError: the checkpoint's arrays don't fit the target.
    """
    mngr = self._best if which == 'best' else self._last
    if mngr is None:
      raise ValueError("which='best' needs a RunCheckpointer built with best_metric.")
    target_dict = _state_dict(target_state)
    expected = _flat_shapes(target_dict)
    for step in sorted(mngr.all_steps(), reverse=True):
      try:
        saved = _flat_shapes(mngr.item_metadata(step)['state'].tree)
      except Exception as err:  # noqa: BLE001 - any unreadable checkpoint falls back
        log.warning(
          'checkpoint %d in %s is unreadable (%s); trying the previous one.',
          step,
          mngr.directory,
          err,
        )
        continue
      if saved != expected:
        if not self._readable(mngr, step):
          log.warning(
            'checkpoint %d in %s is truncated or corrupt; trying the previous one.',
            step,
            mngr.directory,
          )
          continue
        raise CheckpointMismatchError(
          f'checkpoint {step} in {mngr.directory} does not match the state this config builds:\n'
          f'{describe_mismatch(saved, expected)}\n'
          'Use the config the run was started with, or a new --workdir.'
        )
      abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target_dict)
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
          err,
        )
        continue
      state = flax.serialization.from_state_dict(target_state, restored['state'])
      return state, dict(restored['data']), restored['config']['config'], step
    return None
