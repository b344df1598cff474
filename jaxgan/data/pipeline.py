"""The input pipeline: grain over in-memory arrays or a tfds random-access source.

One ``grain.MapDataset`` gives the example order, each process's shard, the
reading threads and the iterator state that a checkpoint stores::

  grain.MapDataset.range(N).shuffle(s).repeat()   # example ids, reshuffled every epoch
    .batch(B // P)[p::P]                          # process p: block p of each global batch
    .map(read)                                    # its rows, images as float32 in [-1, 1]
    .to_iter_dataset(ReadOptions(...))            # prefetching; get_state / set_state

Order: epoch ``e`` is grain's permutation of the ``N`` examples for shuffle seed
``s`` and epoch ``e`` (``s`` is derived from ``seed``, so that nearby seeds do
not replay each other's epochs shifted by one: grain seeds epoch ``e`` with
``s + e``). The epochs follow each other without a break, and global batch
``t`` holds positions ``[t B, (t + 1) B)`` of that sequence: a batch may span
two epochs and no example is dropped.

Processes: process ``p`` of ``P`` receives rows ``[p B/P, (p + 1) B/P)`` of
every global batch and reads only those rows, so the global batch (and a run's
result) does not depend on how many processes share it.

Position: the iterator state is grain's, ``{'next_index': k}`` after ``k``
batches, saved together with the fields that fix the order (dataset size,
batch size, seed, shuffling); :meth:`Batches.set_state` refuses a position
saved over other data.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxgan.data.images import to_float
from jaxgan.data.tfds_source import read_examples

log = logging.getLogger(__name__)

# Fields saved with the position: a position means the same batches only with these unchanged.
ORDER_FIELDS = ('num_examples', 'batch_size', 'seed', 'shuffle')


def _positive_int(name: str, value) -> int:
  if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
    raise ValueError(f'{name} must be a positive integer; got {value!r}.')
  return int(value)


def shuffle_seed(seed: int) -> int:
  """The 32-bit grain shuffle seed of a run seed (a hash: seeds 0 and 1 share no epochs)."""
  return int(np.random.SeedSequence(seed).generate_state(1)[0])


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


class Batches:
  """An endless, deterministic, resumable iterator over minibatches, read by grain.

  Example::

    batches = Batches(arrays, 64, seed=0)
    batch = batches.next()          # {'image': float32 [64, H, W, C], 'label': int32 [64]}
    position = batches.get_state()  # save with the checkpoint
    batches.set_state(position)     # after a restart: continue exactly here

  Args:
    data: either ``{'image': [N, ...], 'label': [N], ...}`` numpy arrays, or a
      random-access source (``len`` and ``source[i] -> dict``, e.g.
      :func:`jaxgan.data.open_source`), of which a process reads only its own
      rows (in one batched read when the source has ``__getitems__``).
    batch_size: the global batch size ``B`` (all processes together).
    seed: a non-negative integer; the example order is a function of it.
    shuffle: reshuffle every epoch; ``False`` keeps the data order.
    process_index: this process, ``0 <= process_index < process_count``
      (``jax.process_index()``).
    process_count: number of processes (``jax.process_count()``).
    local_device_count: devices this process feeds
      (``jax.local_device_count()``); its batch must split evenly over them.
    num_threads: grain threads reading the next batches while the current
      one trains (``0``: read on :meth:`next`).
    prefetch: how many batches the threads read ahead.

  Each batch is a dict with the same keys as the data: ``'image'`` float32
  ``[B / P, ...]`` in ``[-1, 1]`` (uint8 input is converted with
  :func:`jaxgan.data.to_float`, float input is passed through as float32),
  ``'label'`` int32 ``[B / P]``, other keys unchanged.

  Attributes:
    dataset: this process's batches as a ``grain.MapDataset`` (random access:
      ``dataset[k]`` is the batch :meth:`next` returns after ``k`` others).
  """

  def __init__(
    self,
    data: Mapping[str, np.ndarray] | Sequence[Any],
    batch_size: int,
    *,
    seed: int,
    shuffle: bool = True,
    process_index: int = 0,
    process_count: int = 1,
    local_device_count: int = 1,
    num_threads: int = 1,
    prefetch: int = 2,
  ):
    if isinstance(data, Mapping):
      if 'image' not in data:
        raise ValueError(f"data needs an 'image' array; got keys {sorted(data)}.")
      self._arrays = {key: np.asarray(value) for key, value in data.items()}
      lengths = {key: len(value) for key, value in self._arrays.items()}
      if len(set(lengths.values())) != 1:
        raise ValueError(f'all arrays must have the same number of rows; got {lengths}.')
      self._source = None
      n = lengths['image']
    elif hasattr(data, '__len__') and hasattr(data, '__getitem__'):
      self._arrays, self._source = None, data
      n = len(data)
    else:
      raise ValueError(
        f'data must be a dict of arrays or a random-access source; got {type(data).__name__}.'
      )
    batch_size = _positive_int('batch_size', batch_size)
    process_count = _positive_int('process_count', process_count)
    local_device_count = _positive_int('local_device_count', local_device_count)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
      raise ValueError(f'seed must be a non-negative integer; got {seed!r}.')
    if not 0 <= process_index < process_count:
      raise ValueError(f'process_index must be in [0, {process_count}); got {process_index}.')
    for name, value in (('num_threads', num_threads), ('prefetch', prefetch)):
      if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f'{name} must be an integer >= 0; got {value!r}.')
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
    import grain  # imported on use: the data extra, about a second to import

    self.num_examples = n
    self.batch_size = batch_size
    self.seed = int(seed)
    self.shuffle = bool(shuffle)
    self.process_index = int(process_index)
    self.process_count = process_count
    self.local_batch_size = batch_size // process_count
    order = grain.MapDataset.range(n)
    if self.shuffle:
      order = order.shuffle(shuffle_seed(self.seed))
    rows = order.repeat().batch(self.local_batch_size)[self.process_index :: process_count]
    self.dataset = rows.map(self._read)
    options = grain.ReadOptions(num_threads=int(num_threads), prefetch_buffer_size=int(prefetch))
    self._iterator = iter(self.dataset.to_iter_dataset(options))

  def _read(self, rows: np.ndarray) -> dict[str, np.ndarray]:
    if self._arrays is not None:
      return _as_batch({key: value[rows] for key, value in self._arrays.items()})
    examples = read_examples(self._source, rows.tolist())
    return _as_batch(
      {key: np.stack([np.asarray(ex[key]) for ex in examples]) for key in examples[0]}
    )

  def next(self) -> dict[str, np.ndarray]:
    """This process's part of the next global batch."""
    return next(self._iterator)

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    return self.next()

  def _order(self) -> dict[str, int]:
    return {
      'num_examples': self.num_examples,
      'batch_size': self.batch_size,
      'seed': self.seed,
      'shuffle': int(self.shuffle),
    }

  def get_state(self) -> dict[str, int]:
    """grain's iterator state (``next_index``) and the order's fields, as JSON-friendly ints."""
    return {**self._iterator.get_state(), **self._order()}

  def set_state(self, state: Mapping[str, int]) -> None:
    """Continues from a position saved with :meth:`get_state`.

    A position saved by jaxgan 0.1's batching (``'step'`` instead of
    ``'next_index'``) continues at the same batch count, with a warning: the
    example order changed with the grain pipeline.

    Raises:
      ValueError: the position is malformed or was saved by an iterator over
        different data, batch size, seed or shuffling, where it would not mean
        the same batches.
    """
    if not isinstance(state, Mapping) or not {'next_index', 'step'} & set(state):
      raise ValueError(f"state must be a dict from get_state() with 'next_index'; got {state!r}.")
    if 'next_index' in state:
      k = state['next_index']
    else:
      k = state['step']
      log.warning(
        'resuming a data position saved by jaxgan 0.1 at batch %s: the example order from here '
        "on is the grain pipeline's, not the one the run started with.",
        k,
      )
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 0 <= k < sys.maxsize:
      raise ValueError(f'the saved position must be a non-negative integer; got {k!r}.')
    here = self._order()
    wrong = {
      key: (state[key], here[key]) for key in here if key in state and state[key] != here[key]
    }
    if wrong:
      details = ', '.join(f'{key}: saved {a}, here {b}' for key, (a, b) in wrong.items())
      raise ValueError(
        f'cannot resume: the saved data position does not match this iterator ({details}). '
        'Resume with the same dataset, batch size, seed and shuffle setting.'
      )
    self._iterator.set_state({'next_index': int(k)})
