"""Input pipeline throughput: jaxgan's numpy batching against grain pipelines.

Issue 19 asked to feed training from grain if that is no slower. This script
measures it, side by side in one process, with the variants' rounds
interleaved after a warm-up (medians over rounds, ratios to jaxgan's
pipeline):

* ``batches/s``: the pipeline alone (``next()`` in a loop), for the
  quickstart's MNIST-5k (uint8 28x28x1, batch 64), a CIFAR-sized uint8 array
  (32x32x3, batch 64) and the 8-ring toy points (float32, batch 256);
* ``steps/s``: the training loop's work per step (next batch, the compiled
  step of the named config, waiting for its metrics), for the quickstart
  (DCGAN-28) and the toy config (MLP), where the pipeline's cost matters most.

Variants:

* ``jaxgan``: :class:`jaxgan.data.Batches` (numpy epoch permutations, rows
  gathered by fancy indexing on the calling thread);
* ``grain t=0`` / ``grain t=1``: :class:`GrainBatches`, the same service
  from grain alone (its shuffle, slicing for the process shard, its iterator
  state), reading on the calling thread or one grain thread ahead;
* ``grain+numpy t=1``: :class:`NumpyOrderGrain`, grain's iterator and reading
  thread over jaxgan's numpy order, which separates the cost of grain's
  per-example shuffle from that of its iterator.

Timings need a quiet machine: on a shared one the table is noise.

Run: ``python -m experiments.bench_input [--rounds 7] [--batches 200] [--steps 40]``.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import numpy as np

from experiments import timing
from experiments.configs import quickstart, toy2d
from jaxgan import data, parallel, run_setup


def _as_batch(rows: dict) -> dict:
  if rows['image'].dtype == np.uint8:
    rows['image'] = data.to_float(rows['image'])
  rows['label'] = rows['label'].astype(np.int32)
  return rows


class GrainBatches:
  """The grain pipeline: ``Batches``' interface and guarantees from grain's own pieces.

  Example ids come from ``grain.MapDataset.range(N).shuffle(s).repeat()``
  (reshuffled every epoch; ``s`` hashed from the seed because grain seeds
  epoch ``e`` with ``s + e``); process ``p`` of ``P`` takes
  ``.batch(B // P)[p::P]``, i.e. block ``p`` of every global batch of ``B``
  consecutive ids, so the global batch does not depend on ``P``; rows are
  gathered in a ``map``. The position is grain's iterator state.
  """

  def __init__(
    self, arrays, batch_size, *, seed, process_index=0, process_count=1, num_threads=1, prefetch=2
  ):
    import grain

    self.arrays = arrays
    order = grain.MapDataset.range(len(arrays['image']))
    order = order.shuffle(int(np.random.SeedSequence(seed).generate_state(1)[0]))
    rows = order.repeat().batch(batch_size // process_count)[process_index::process_count]
    self.dataset = rows.map(self._read)
    options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
    self._iterator = iter(self.dataset.to_iter_dataset(options))

  def _read(self, rows):
    return _as_batch({key: value[rows] for key, value in self.arrays.items()})

  def next(self):
    return next(self._iterator)

  def get_state(self):
    return self._iterator.get_state()

  def set_state(self, state):
    self._iterator.set_state(state)


class NumpyOrderGrain(GrainBatches):
  """grain's iterator and reading threads over ``jaxgan.data.Batches``' numpy order."""

  def __init__(self, arrays, batch_size, *, seed, num_threads=1, prefetch=2):
    import grain

    self.arrays = arrays
    self.order = data.Batches(arrays, batch_size, seed=seed)
    self.dataset = grain.MapDataset.range(sys.maxsize).map(self._step)
    options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
    self._iterator = iter(self.dataset.to_iter_dataset(options))

  def _step(self, step):
    return self._read(self.order.local_indices(step))


def pipelines(arrays: dict, batch_size: int) -> dict:
  return {
    'jaxgan': lambda: data.Batches(arrays, batch_size, seed=0),
    'grain t=0': lambda: GrainBatches(arrays, batch_size, seed=0, num_threads=0),
    'grain t=1': lambda: GrainBatches(arrays, batch_size, seed=0, num_threads=1),
    'grain+numpy t=1': lambda: NumpyOrderGrain(arrays, batch_size, seed=0, num_threads=1),
  }


def interleaved(variants: dict, measure, rounds: int) -> dict:
  """``{name: [rate per round]}``, the variants' rounds interleaved."""
  rates = {name: [] for name in variants}
  for _ in range(rounds):
    for name, variant in variants.items():
      rates[name].append(measure(variant))
  return rates


def batch_rate(make, n: int) -> float:
  batches = make()
  for _ in range(5):  # threads started, first epoch order drawn
    batches.next()
  t = time.perf_counter()
  for _ in range(n):
    batches.next()
  return n / (time.perf_counter() - t)


def step_rate(config, n: int):
  """``measure(make_batches) -> steps/s`` of ``config``'s compiled step fed by the pipeline."""
  run = run_setup.build_run(config)
  mesh = parallel.make_mesh()
  step = run.compiled_step(mesh)
  fresh = parallel.replicate(run.init_state(jax.random.PRNGKey(0)), mesh)

  def measure(make):
    batches = make()
    state = jax.tree.map(lambda x: x.copy(), fresh)  # the step donates its state
    for _ in range(3):  # compile, warm up
      state, metrics = step(state, parallel.shard_batch(batches.next(), mesh))
      jax.device_get(metrics)
    t = time.perf_counter()
    for _ in range(n):
      state, metrics = step(state, parallel.shard_batch(batches.next(), mesh))
      jax.device_get(metrics)
    return n / (time.perf_counter() - t)

  return run, measure


def table_rows(label: str, rates: dict) -> list[str]:
  base = float(np.median(rates['jaxgan']))
  return [
    f'| {label} | {name} | {np.median(r):,.1f} | {np.median(r) / base:.2f} |'
    for name, r in rates.items()
  ]


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--rounds', type=int, default=7)
  parser.add_argument('--batches', type=int, default=200, help='batches per round')
  parser.add_argument('--steps', type=int, default=40, help='training steps per round')
  args = parser.parse_args(argv)

  rng = np.random.default_rng(0)
  mnist = data.load_arrays('mnist5k', 'train')
  cifar_like = {
    'image': rng.integers(0, 256, (10_000, 32, 32, 3), dtype=np.uint8),
    'label': rng.integers(0, 10, 10_000),
  }
  points = data.gaussian_mixture('8ring', 100_000, seed=0)
  toy = {'image': points, 'label': np.zeros(len(points), np.int64)}
  print(timing.machine())
  print('\n| data, batch | pipeline | batches/s | vs jaxgan |\n|---|---|---|---|')
  for label, arrays, bsz in (
    ('MNIST-5k 28x28x1, 64', mnist, 64),
    ('uint8 32x32x3, 64', cifar_like, 64),
    ('8-ring points, 256', toy, 256),
  ):
    rates = interleaved(pipelines(arrays, bsz), lambda m: batch_rate(m, args.batches), args.rounds)
    print('\n'.join(table_rows(label, rates)), flush=True)

  print('\n| config (step) | pipeline | steps/s | vs jaxgan |\n|---|---|---|---|')
  for label, config in (
    ('quickstart (DCGAN-28, batch 64)', quickstart.get_config()),
    ('toy2d (MLP, batch 256)', toy2d.get_config()),
  ):
    config.eval_samples = 0
    run, measure = step_rate(config, args.steps)
    rows = config.batch_size * config.n_dis
    rates = interleaved(pipelines(run.arrays, rows), measure, args.rounds)
    print('\n'.join(table_rows(label, rates)), flush=True)


if __name__ == '__main__':
  main()
