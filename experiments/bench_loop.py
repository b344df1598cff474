"""Times the training program's steady-state step against the bare jitted step (idle machine).

  python -m experiments.bench_loop [--steps 300] [--warmup 30] [--out docs/results/timing.json]

For the MNIST study setting of :mod:`experiments.reproduce` (``FULL.mnist``), two-stage and
one-stage, three figures per trainer:

* ``bare``: the program's own compiled step (``Run.compiled_step``: EMA in the step, state
  donated) called back to back on one pre-sharded batch, its metrics fetched every step as
  the program does;
* ``loop``: :func:`jaxgan.train.train_and_evaluate` with data feeding, logging and EMA on,
  evaluation, sampling and the input-gradient monitor off; the time between consecutive
  calls of the compiled step, averaged after ``--warmup`` steps (one checkpoint, at the
  end, falls outside the measured steps);
* ``study``: the same loop in the exact study configuration (input-gradient monitor on at
  log steps), the seconds per iteration that convert the studies' iteration counts into
  wall-clock.

Rounds alternate (bare, loop, study) twice and the medians are reported. The program is
within 5% of the bare step when ``loop / bare <= 1.05``. The load average at the start is
recorded: figures from a machine with load above 0.5 are marked as such, and
``experiments.reproduce`` shows them only with that mark.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from experiments.reproduce import FULL, mnist_config
from experiments.timing import machine
from jaxgan import parallel, run_setup, train

TRAINERS = {'two-stage': 'two_stage', 'one-stage': 'one_stage'}


def bench_config(trainer: str, steps: int, monitor: bool):
  c = mnist_config(FULL.mnist, 0)
  c.trainer = trainer
  c.num_steps = steps
  c.eval_samples = 0
  c.eval_every = 0
  c.sample_every = 0
  c.checkpoint_every = steps
  c.monitor_lipschitz = monitor
  return c


def time_bare(cfg, steps: int, warmup: int) -> float:
  """Mean seconds per call of the program's compiled step in a tight loop."""
  run = run_setup.build_run(cfg)
  mesh = parallel.make_mesh()
  state = parallel.replicate(run.init_state(jax.random.PRNGKey(cfg.seed)), mesh)
  step = run.compiled_step(mesh)
  batches = run.make_batches(process_index=0, process_count=1)
  batch = parallel.shard_batch(batches.next(), mesh)
  for _ in range(warmup):
    state, metrics = step(state, batch)
    jax.device_get(metrics)
  t0 = time.perf_counter()
  for _ in range(steps):
    state, metrics = step(state, batch)
    jax.device_get(metrics)
  return (time.perf_counter() - t0) / steps


def time_loop(cfg, warmup: int) -> float:
  """Mean seconds between consecutive step calls inside ``train_and_evaluate``."""
  calls: list[float] = []
  original = run_setup.Run.compiled_step

  def timed_compiled_step(self, mesh):
    step = original(self, mesh)

    def wrapped(state, batch):
      calls.append(time.perf_counter())
      return step(state, batch)

    return wrapped

  run_setup.Run.compiled_step = timed_compiled_step
  try:
    with tempfile.TemporaryDirectory() as workdir:
      train.train_and_evaluate(cfg, workdir)
  finally:
    run_setup.Run.compiled_step = original
  gaps = np.diff(calls)[warmup:]
  return float(np.mean(gaps))


def main(argv=None) -> dict:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--steps', type=int, default=300, help='measured steps per round')
  ap.add_argument('--warmup', type=int, default=30)
  ap.add_argument('--rounds', type=int, default=2)
  ap.add_argument('--out', default='', help='write the figures as JSON here')
  args = ap.parse_args(argv)
  load = os.getloadavg()[0]
  print(machine())
  print(f'load average at start: {load:.2f}')
  total = args.warmup + args.steps
  results: dict[str, dict[str, list[float]]] = {}
  for label, trainer in TRAINERS.items():
    r = results[label] = {'bare': [], 'loop': [], 'study': []}
    for _ in range(args.rounds):
      r['bare'].append(time_bare(bench_config(trainer, total, False), args.steps, args.warmup))
      r['loop'].append(time_loop(bench_config(trainer, total, False), args.warmup))
      r['study'].append(time_loop(bench_config(trainer, total, True), args.warmup))
  med = {k: {m: float(np.median(v)) for m, v in r.items()} for k, r in results.items()}
  print('\n| trainer | bare step (ms) | program loop (ms) | loop / bare | study config (ms) |')
  print('|---|---|---|---|---|')
  for label, m in med.items():
    print(
      f'| {label} | {1e3 * m["bare"]:.2f} | {1e3 * m["loop"]:.2f} | '
      f'{m["loop"] / m["bare"]:.3f} | {1e3 * m["study"]:.2f} |'
    )
  idle = load <= 0.5
  out = {
    'machine': machine(),
    'load_average': load,
    'idle': idle,
    'note': 'idle machine'
    if idle
    else f'LOADED machine (load average {load:.1f}): indicative only',
    'setting': FULL.mnist.describe(),
    'bare_seconds_per_step': {k: m['bare'] for k, m in med.items()},
    'loop_nomonitor_seconds_per_step': {k: m['loop'] for k, m in med.items()},
    'loop_seconds_per_step': {k: m['study'] for k, m in med.items()},
    'rounds': results,
    'date': time.strftime('%Y-%m-%d %H:%M'),
  }
  if args.out:
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
  return out


if __name__ == '__main__':
  main()
