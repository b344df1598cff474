"""DFAD on MNIST: two-stage (the reference schedule) against one-stage distillation.

Teacher: the project's LeNet-5 trained on the offline MNIST-5k train split
(``jaxgan.metrics.mnist.mnist_classifier``, cached; trained once if missing).
Student: the half-width LeNet-5, trained without data from a DFAD generator
(``jaxgan.distill.DFADGenerator``). Every schedule runs the same number of
iterations (one iteration = one G update) from the same initialization; the
student's top-1 accuracy on the 1,000 MNIST-5k test images and the wall-clock
are printed for each, then the per-iteration time of every step measured
interleaved (median), as jaxgan measures speed.

Schedules (``--schedules``): ``two_stage:K`` is DFAD's (K student updates on
detached samples, then one G update); ``one_stage:K`` makes K - 1 such student
updates and then one shared pass that updates the student and G together
(``one_stage:1``, every update shared, is OSGAN's form).

Reference settings (``DFAD_mnist.py``): batch 512, nz 100, student SGD 0.01
(momentum 0.9, weight decay 1e-4), G Adam 1e-3, 5 student updates per G update,
40 x 50 iterations. The defaults here are smaller so a run takes minutes on a
shared CPU. A killed run resumes from its checkpoint in ``--workdir`` (saved at every
evaluation, removed when the run ends).

Run: ``python -m experiments.dfad_mnist [--iters 300]
[--schedules two_stage:5,one_stage:1,one_stage:5] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import numpy as np
import optax

from experiments.loop_checkpoints import LoopCheckpoints, settings_digest
from jaxgan import distill
from jaxgan.game import make_apply
from jaxgan.metrics import mnist as mnist_metrics
from jaxgan.metrics.classifier_training import classifier_accuracy
from jaxgan.models.classifier import LeNet5Half
from jaxgan.state import create_state

IMAGE_SHAPE = (28, 28, 1)


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--iters', type=int, default=300, help='G updates per schedule')
  p.add_argument('--batch-size', type=int, default=128)
  p.add_argument('--nz', type=int, default=100)
  p.add_argument('--ngf', type=int, default=32, help='generator width (reference: 64)')
  p.add_argument(
    '--student-steps', type=int, default=5, help='two-stage student updates per G update'
  )
  p.add_argument(
    '--one-stage-student-steps',
    type=int,
    default=1,
    help='one-stage student updates per G update, the last shared with G (default 1: all shared)',
  )
  p.add_argument('--lr-s', type=float, default=0.01, help='student SGD learning rate')
  p.add_argument('--lr-g', type=float, default=1e-3, help='generator Adam learning rate')
  p.add_argument('--weight-decay', type=float, default=1e-4)
  p.add_argument(
    '--no-output-norm',
    action='store_true',
    help='end G at tanh ([-1, 1]) instead of the reference affine-free BatchNorm',
  )
  p.add_argument(
    '--schedules',
    default='two_stage,one_stage',
    help='comma list of two_stage / one_stage, each optionally :K for K student updates per '
    'G update (default K: --student-steps / --one-stage-student-steps), e.g. '
    'two_stage:5,one_stage:1,one_stage:5',
  )
  p.add_argument('--eval-every', type=int, default=50)
  p.add_argument('--bench-rounds', type=int, default=20, help='interleaved timing rounds (0: skip)')
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--data-dir', default=None)
  p.add_argument('--json', default=None, help='write the results here')
  p.add_argument(
    '--workdir',
    default='runs/dfad_mnist',
    help='checkpoints of unfinished runs (one per schedule and settings), to resume a killed run',
  )
  args = p.parse_args(argv)
  for name in (
    'iters',
    'batch_size',
    'nz',
    'ngf',
    'student_steps',
    'one_stage_student_steps',
    'eval_every',
  ):
    if getattr(args, name) < 1:
      raise SystemExit(f'--{name.replace("_", "-")} must be >= 1, got {getattr(args, name)}.')
  args.runs = parse_schedules(args)
  return args


def parse_schedules(args) -> list[tuple[str, str, int]]:
  """``--schedules`` -> ``[(label, 'two_stage' | 'one_stage', k)]``."""
  default_k = {'two_stage': args.student_steps, 'one_stage': args.one_stage_student_steps}
  runs = []
  for entry in args.schedules.split(','):
    name, _, k = entry.partition(':')
    if name not in default_k or (k and (not k.isdigit() or int(k) < 1)):
      raise SystemExit(
        f'--schedules: bad entry {entry!r}; use two_stage or one_stage, optionally with :K '
        '(K >= 1), e.g. two_stage:5,one_stage:1.'
      )
    k = int(k) if k else default_k[name]
    runs.append((f'{name}:{k}', name, k))
  if len({label for label, _, _ in runs}) != len(runs):
    raise SystemExit(f'--schedules: repeated entry in {args.schedules!r}.')
  return runs


def build(args, teacher_module, teacher_params, schedule: str, k: int):
  """The jitted step and the initial state of one schedule (the same init for all)."""
  generator = distill.DFADGenerator(
    ngf=args.ngf, channels=1, image_size=IMAGE_SHAPE[0], output_norm=not args.no_output_norm
  )
  student = LeNet5Half()
  g_tx = optax.adam(args.lr_g)
  s_tx = optax.chain(
    optax.add_decayed_weights(args.weight_decay), optax.sgd(args.lr_s, momentum=0.9)
  )
  state = create_state(
    jax.random.PRNGKey(args.seed),
    g_module=generator,
    d_module=student,
    g_tx=g_tx,
    d_tx=s_tx,
    latent_dim=args.nz,
    image_shape=IMAGE_SHAPE,
    use_ema=False,
  )
  if schedule == 'two_stage':
    builder = distill.two_stage_distill_step
  else:
    builder = distill.one_stage_distill_step
  step = builder(
    make_apply(generator),
    make_apply(student),
    make_apply(teacher_module),
    {'params': teacher_params},
    g_tx,
    s_tx,
    student_steps=k,
    batch_size=args.batch_size,
    latent_dim=args.nz,
  )
  return jax.jit(step, donate_argnums=0), state, student


def checkpoint_dir(args, label: str) -> Path:
  """Where the run of schedule ``label`` with these settings keeps its checkpoints."""
  skip = ('json', 'workdir', 'runs', 'bench_rounds')
  digest = settings_digest({k: v for k, v in vars(args).items() if k not in skip})
  return Path(args.workdir) / f'{label.replace(":", "")}_seed{args.seed}_{digest}'


def train(args, label, schedule, k, teacher_module, teacher_params, test):
  """One schedule's run, resumed from its last checkpoint (saved at every evaluation)."""
  step, state, student = build(args, teacher_module, teacher_params, schedule, k)
  t0 = time.perf_counter()
  compiled = step.lower(state).compile()
  compile_s = time.perf_counter() - t0
  accuracy = lambda st: classifier_accuracy(student, st.d.params, test['image'], test['label'])
  ckpts = LoopCheckpoints(checkpoint_dir(args, label))
  state, progress, start = ckpts.restore(state, {'curve': [], 'train_seconds': 0.0})
  curve, train_s = progress['curve'], progress['train_seconds']
  if start:
    print(f'  [{label}] resumed at iteration {start} from {ckpts.directory}', flush=True)
  try:
    for i in range(start, args.iters):
      t0 = time.perf_counter()
      state, metrics = compiled(state)
      jax.block_until_ready(state)
      train_s += time.perf_counter() - t0
      if (i + 1) % args.eval_every == 0 or i + 1 == args.iters:
        acc = accuracy(state)
        curve.append([i + 1, acc])
        print(
          f'  [{label}] iter {i + 1:5d}  L {float(metrics["distill/student_loss"]):.4f}  '
          f'student acc {acc:.4f}  train {train_s:.1f}s',
          flush=True,
        )
        if i + 1 < args.iters:
          ckpts.save(i + 1, state, {'curve': curve, 'train_seconds': train_s})
  finally:
    ckpts.close()
  ckpts.remove()
  result = {
    'schedule': label,
    'student_updates_per_iter': int(metrics['distill/student_updates']),
    'final_accuracy': curve[-1][1],
    'best_accuracy': max(a for _, a in curve),
    'curve': curve,
    'train_seconds': train_s,
    'compile_seconds': compile_s,
  }
  return result, compiled, state


def interleaved_step_times(runners: dict, rounds: int) -> dict:
  """Median seconds per iteration of each compiled step, run alternately.

  Args:
    runners: ``{schedule: [compiled_step, state]}``; the states advance.
    rounds: iterations per schedule.
  """
  times = {name: [] for name in runners}
  for _ in range(rounds):
    for name, runner in runners.items():
      t0 = time.perf_counter()
      runner[1], _ = runner[0](runner[1])
      jax.block_until_ready(runner[1])
      times[name].append(time.perf_counter() - t0)
  return {name: float(np.median(t)) for name, t in times.items()}


def main(argv=None) -> dict:
  args = parse_args(argv)
  print(
    f'machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, '
    f'jax {jax.__version__}, backend {jax.default_backend()}'
  )
  print(f'config: {vars(args)}')
  teacher_module, teacher_params, meta = mnist_metrics.mnist_classifier(
    args.data_dir, variant='lenet5', log=print
  )
  _, test = mnist_metrics.load_mnist_splits(args.data_dir)
  teacher_acc = classifier_accuracy(teacher_module, teacher_params, test['image'], test['label'])
  print(f'teacher LeNet-5 (sha256 {meta["sha256"][:12]}): test accuracy {teacher_acc:.4f}')

  config = {key: value for key, value in vars(args).items() if key != 'runs'}
  results = {'config': config, 'teacher_accuracy': teacher_acc, 'runs': []}
  runners = {}
  for label, schedule, k in args.runs:
    print(f'{label}:', flush=True)
    run, compiled, state = train(args, label, schedule, k, teacher_module, teacher_params, test)
    results['runs'].append(run)
    runners[label] = [compiled, state]
  if args.bench_rounds:
    results['median_iter_seconds'] = interleaved_step_times(runners, args.bench_rounds)

  print(f'\nDFAD MNIST, {args.iters} iterations, batch {args.batch_size}, seed {args.seed}')
  print(f'teacher accuracy {teacher_acc:.4f}')
  print(
    f'{"schedule":<12} {"S/G":>4} {"final acc":>9} {"best acc":>9} {"train s":>8} '
    f'{"compile s":>9} {"median s/iter":>13}'
  )
  for run in results['runs']:
    median = results.get('median_iter_seconds', {}).get(run['schedule'], float('nan'))
    print(
      f'{run["schedule"]:<12} {run["student_updates_per_iter"]:>4} '
      f'{run["final_accuracy"]:>9.4f} {run["best_accuracy"]:>9.4f} '
      f'{run["train_seconds"]:>8.1f} {run["compile_seconds"]:>9.1f} {median:>13.4f}'
    )
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(results, f, indent=2)
  return results


if __name__ == '__main__':
  main()
