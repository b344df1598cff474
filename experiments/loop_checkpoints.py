"""Checkpoints for the loops of the experiment scripts that train outside the training program
(``translate_mnist``, ``dfad_mnist``): the state and the script's own progress (its curve so
far, its training seconds), so a killed run continues from its last save on the same batches.
Saved with :class:`jaxgan.checkpoint.RunCheckpointer` (atomic, asynchronous, one kept).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from jaxgan import checkpoint


def settings_digest(settings: dict) -> str:
  """A short name for a run's settings (JSON values), to key its files by them."""
  return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


class LoopCheckpoints:
  """The newest checkpoint of one run in ``directory``."""

  def __init__(self, directory: str | Path):
    self.directory = Path(directory)
    self._ckpt = checkpoint.RunCheckpointer(self.directory, keep=1)

  def restore(self, state: Any, progress: dict) -> tuple[Any, dict, int]:
    """``(state, progress, iteration)`` of the newest checkpoint, else the given ones at 0."""
    found = self._ckpt.restore(state)
    if found is None:
      return state, progress, 0
    state, saved, _, iteration = found
    return state, saved, iteration

  def save(self, iteration: int, state: Any, progress: dict) -> None:
    self._ckpt.save(iteration, state, progress, '{}')

  def close(self) -> None:
    """Waits for a save in flight (call it also when the loop is interrupted)."""
    self._ckpt.close()

  def remove(self) -> None:
    """Deletes the checkpoints of a finished run."""
    self.close()
    shutil.rmtree(self.directory, ignore_errors=True)
