"""Deterministic, resumable minibatches, each process taking its rows of the global batch.

Epoch ``e`` visits the examples in the order
``np.random.default_rng([seed, e]).permutation(N)`` (or ``0..N-1`` without
shuffling); global batch ``t`` of the epoch is that order's rows
``[t B, (t + 1) B)``. Process ``p`` of ``P`` keeps rows
``[p B/P, (p + 1) B/P)`` of every global batch, so the processes' batches are
disjoint and together form the global batch, whatever ``P`` is.

The position is one integer, the number of global batches already produced;
an iterator restored at position ``k`` (``set_state`` or ``start_step=k``)
yields exactly what an uninterrupted iterator yields from ``k`` on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxgan.data.images import to_float


def _positive_int(name: str, value) -> int:
  if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
    raise ValueError(f'{name} must be a positive integer; got {value!r}.')
  return int(value)


def _as_batch(rows: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  out = dict(rows)
  image = np.asarray(out['image'])
  if image.dtype == np.uint8:
    out['image'] = to_float(image)
  elif np.issubdtype(image.dtype, np.floating):
    out['image'] = image.astype(np.float32, copy=False)
  else:
    raise ValueError(f"'image' must be uint8 or float; got dtype {image.dtype}.")
  if 'label' in out:
    out['label'] = np.asarray(out['label']).astype(np.int32, copy=False)
  return out


def _rows_of(data) -> tuple[dict | None, Any, int]:
  """``(arrays, source, number of rows)`` of a dict of arrays or a random-access source."""
  if isinstance(data, Mapping):
    if 'image' not in data:
      raise ValueError(f"data needs an 'image' array; got keys {sorted(data)}.")
    arrays = {key: np.asarray(value) for key, value in data.items()}
    lengths = {key: len(value) for key, value in arrays.items()}
    if len(set(lengths.values())) != 1:
      raise ValueError(f'all arrays must have the same number of rows; got {lengths}.')
    return arrays, None, lengths['image']
  if hasattr(data, '__len__') and hasattr(data, '__getitem__'):
    return None, data, len(data)
  raise ValueError(
    f'data must be a dict of arrays or a random-access source; got {type(data).__name__}.'
  )


def _check_split(
  n: int, batch_size: int, process_count: int, local_device_count: int, drop_remainder: bool
) -> None:
  """Refuses a batch size that the data, the processes or the devices cannot split."""
  if n < 1 or batch_size > n:
    raise ValueError(
      f'batch_size {batch_size} is larger than the dataset ({n} examples); use a batch size '
      f'of at most {n} or more data.'
    )
  if batch_size % process_count:
    raise ValueError(
      f'batch_size {batch_size} is not divisible by the number of processes {process_count}; '
      f'use a multiple of {process_count}.'
    )
  if (batch_size // process_count) % local_device_count:
    raise ValueError(
      f'the per-process batch {batch_size // process_count} (batch_size {batch_size} / '
      f'{process_count} processes) is not divisible by the {local_device_count} local devices; '
      f'use a batch_size that is a multiple of {process_count * local_device_count}.'
    )
  remainder = n % batch_size
  if not drop_remainder and remainder % (process_count * local_device_count):
    raise ValueError(
      f'with drop_remainder=False the last batch of each epoch has {remainder} rows '
      f'({n} examples mod batch_size {batch_size}), which does not split over '
      f'{process_count} processes x {local_device_count} devices; use drop_remainder=True '
      'or a batch size that divides the dataset.'
    )


class Batches:
  """An endless, deterministic, resumable iterator over minibatches.

  Example::

    batches = Batches(arrays, 64, seed=0)
    batch = batches.next()          # {'image': float32 [64, H, W, C], 'label': int32 [64]}
    position = batches.get_state()  # save with the checkpoint
    batches.set_state(position)     # after a restart: continue exactly here

  Args:
    data: either ``{'image': [N, ...], 'label': [N], ...}`` numpy arrays (rows
      are gathered by fancy indexing), or a random-access source (``len`` and
      ``source[i] -> dict``, e.g. :func:`jaxgan.data.open_source`), of which a
      process reads only its own rows.
    batch_size: the global batch size ``B`` (all processes together).
    seed: the example order of every epoch is a function of ``(seed, epoch)``.
    shuffle: reshuffle every epoch; ``False`` keeps the data order.
    drop_remainder: skip the last ``N mod B`` examples of each epoch's order
      (every batch has ``B`` rows). With ``False`` the epoch ends with a
      smaller batch, whose size must also split evenly over processes and
      devices.
    process_index: this process, ``0 <= process_index < process_count``
      (``jax.process_index()``).
    process_count: number of processes (``jax.process_count()``).
    local_device_count: devices this process feeds
      (``jax.local_device_count()``); its batch must split evenly over them.
    start_step: start after this many global batches (same as ``set_state``).

  Each batch is a dict with the same keys as the data: ``'image'`` float32
  ``[B / P, ...]`` in ``[-1, 1]`` (uint8 input is converted with
  :func:`jaxgan.data.to_float`, float input is passed through as float32),
  ``'label'`` int32 ``[B / P]``, other keys unchanged.
  """

  def __init__(
    self,
    data: Mapping[str, np.ndarray] | Sequence[Any],
    batch_size: int,
    *,
    seed: int,
    shuffle: bool = True,
    drop_remainder: bool = True,
    process_index: int = 0,
    process_count: int = 1,
    local_device_count: int = 1,
    start_step: int = 0,
  ):
    self._arrays, self._source, n = _rows_of(data)
    batch_size = _positive_int('batch_size', batch_size)
    process_count = _positive_int('process_count', process_count)
    local_device_count = _positive_int('local_device_count', local_device_count)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
      raise ValueError(f'seed must be a non-negative integer; got {seed!r}.')
    if not 0 <= process_index < process_count:
      raise ValueError(f'process_index must be in [0, {process_count}); got {process_index}.')
    _check_split(n, batch_size, process_count, local_device_count, drop_remainder)
    remainder = n % batch_size
    self.num_examples = n
    self.batch_size = batch_size
    self.seed = int(seed)
    self.shuffle = bool(shuffle)
    self.drop_remainder = bool(drop_remainder)
    self.process_index = int(process_index)
    self.process_count = process_count
    self.local_batch_size = batch_size // process_count
    self.steps_per_epoch = (
      n // batch_size if drop_remainder or not remainder else n // batch_size + 1
    )
    self._order_epoch = -1
    self._order = np.arange(n)
    self._step = 0
    self.set_state({'step': start_step})

  def epoch_order(self, epoch: int) -> np.ndarray:
    """The example indices ``[N]`` in the order epoch ``epoch`` visits them."""
    if not self.shuffle:
      return np.arange(self.num_examples)
    return np.random.default_rng([self.seed, int(epoch)]).permutation(self.num_examples)

  def global_indices(self, step: int) -> np.ndarray:
    """Rows of global batch ``step`` (counted from 0 over all epochs), all processes."""
    epoch, t = divmod(int(step), self.steps_per_epoch)
    if epoch != self._order_epoch:
      self._order, self._order_epoch = self.epoch_order(epoch), epoch
    return self._order[t * self.batch_size : (t + 1) * self.batch_size]

  def local_indices(self, step: int) -> np.ndarray:
    """This process's rows of global batch ``step``."""
    rows = self.global_indices(step)
    per_process = len(rows) // self.process_count
    return rows[self.process_index * per_process : (self.process_index + 1) * per_process]

  def next(self) -> dict[str, np.ndarray]:
    """This process's part of the next global batch."""
    idx = self.local_indices(self._step)
    self._step += 1
    if self._arrays is not None:
      rows = {key: value[idx] for key, value in self._arrays.items()}
    else:
      examples = [self._source[int(i)] for i in idx]
      rows = {key: np.stack([np.asarray(ex[key]) for ex in examples]) for key in examples[0]}
    return _as_batch(rows)

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    return self.next()

  def get_state(self) -> dict[str, int]:
    """The position, as JSON-friendly ints: ``step`` decides; the rest is checked on restore."""
    epoch, index = divmod(self._step, self.steps_per_epoch)
    return {
      'step': self._step,
      'epoch': epoch,
      'step_in_epoch': index,
      'num_examples': self.num_examples,
      'batch_size': self.batch_size,
      'seed': self.seed,
      'shuffle': int(self.shuffle),
    }

  def set_state(self, state: Mapping[str, int]) -> None:
    """Continues from a position saved with :meth:`get_state`.

    Raises:
      ValueError: the position is malformed or was saved by an iterator over
        different data, batch size, seed or shuffling, where it would not mean
        the same batches.
    """
    if not isinstance(state, Mapping) or 'step' not in state:
      raise ValueError(f"state must be a dict from get_state() with a 'step'; got {state!r}.")
    step = state['step']
    if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
      raise ValueError(f"state['step'] must be a non-negative integer; got {step!r}.")
    current = {**self.get_state(), 'step': int(step)}
    current['epoch'], current['step_in_epoch'] = divmod(int(step), self.steps_per_epoch)
    wrong = {
      k: (state[k], current[k]) for k in current if k in state and int(state[k]) != current[k]
    }
    if wrong:
      details = ', '.join(f'{k}: saved {saved}, here {here}' for k, (saved, here) in wrong.items())
      raise ValueError(
        f'cannot resume: the saved data position does not match this iterator ({details}). '
        'Resume with the same dataset, batch size, seed and shuffle setting.'
      )
    self._step = int(step)
