"""CUT on the MNIST translation task, with and without CoopInit.

Task (:mod:`jaxgan.data.mnist_translation`): plain MNIST-5k digits (domain A, half 1)
to thick, inverted digits (domain B, half 2), unpaired. Model (:mod:`jaxgan.translation`):
CUT's ResNet G (with PatchNCE heads) and PatchGAN D, LSGAN on every patch logit (``--per-patch
0``: on each image's mean patch logit), Adam(2e-4, b1 0.5, b2 0.999) with CUT's
schedule (constant, then linear decay to 0 over the second half; ``--lr-decay-from``),
``lambda_GAN = lambda_NCE = 1``, ``nce_T = 0.07``, identity NCE on real B, trained with the
library's two-stage step (one D update, then one G update on the same A batch). With
``--coopinit 1`` the first ``--t_init`` iterations are CoopInit's cooperative step
(:func:`jaxgan.coopinit.coop_step`: D is an EBM with energy ``-mean patch logit``, G is
taught to reproduce the Langevin revisions of ``G(A)``, without the NCE term), then the
same adversarial step (:func:`jaxgan.coopinit.make_phased_step`).

Scores per seed (:mod:`jaxgan.translation.metrics`), on the 500 test-A images translated
at the end: ``fid_b`` (FID to the 500 real test-B images in the project's MNIST
classifier features), ``content_acc`` (domain-B classifier agrees with the source
label; real test-B: 0.978), ``fid_b_bclf`` (FID in the domain-B classifier's features),
and the wall-clock (training only); with ``--eval-every N`` the same scores every N iterations
as ``curve``. Reference points printed with the table: the untranslated test-A
images and the exact appearance map of test-A ("oracle").

Defaults are small for a 2-core CPU: G width 16 with 2 blocks, D width 16 with 2 layers
(5x5 patches), batch 32, 400 iterations, 64 NCE patches per layer (CUT: 256 at 256x256
with batch 1; a 28x28 map has 784, 196 and 49 positions). Each finished run is stored as
JSON in ``--workdir`` and reused when its configuration matches; an interrupted run resumes
from its last checkpoint there (saved at every evaluation).

Run: ``python -m experiments.translate_mnist --seeds 0,1,2 --steps 400 --coopinit 1
--t_init 20 [--workdir runs/translate_mnist] [--json summary.json]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np

from experiments.loop_checkpoints import LoopCheckpoints, settings_digest
from experiments.timing import machine
from jaxgan import coopinit
from jaxgan import translation as tr
from jaxgan.data import mnist_translation
from jaxgan.data.images import to_float
from jaxgan.metrics import mnist as mnist_metrics
from jaxgan.steps import two_stage_step
from jaxgan.translation import metrics as tr_metrics

IMAGE_SHAPE = (28, 28, 1)
SCORES = ('fid_b', 'content_acc', 'fid_b_bclf', 'wall_seconds')


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--seeds', default='0,1,2', help='comma list of seeds')
  p.add_argument('--steps', type=int, default=400, help='iterations (G updates)')
  p.add_argument('--coopinit', type=int, choices=(0, 1), default=0)
  p.add_argument('--t_init', type=int, default=20, help='cooperative iterations (--coopinit 1)')
  p.add_argument('--workdir', default='runs/translate_mnist')
  p.add_argument('--json', default=None, help='write the summary here')
  p.add_argument('--batch-size', type=int, default=32)
  p.add_argument('--width', type=int, default=16, help='G width (ngf; CUT: 64)')
  p.add_argument('--n-blocks', type=int, default=2, help='G ResNet blocks (CUT: 9)')
  p.add_argument('--d-width', type=int, default=16, help='D width (ndf; CUT: 64)')
  p.add_argument('--d-layers', type=int, default=2, help='PatchGAN stride-2 layers (CUT: 3)')
  p.add_argument('--num-patches', type=int, default=64, help='NCE patches per layer (CUT: 256)')
  p.add_argument('--lambda-nce', type=float, default=1.0)
  p.add_argument(
    '--nce-idt', type=int, choices=(0, 1), default=1, help='identity NCE on real B (CUT: 1)'
  )
  p.add_argument('--lr', type=float, default=2e-4)
  p.add_argument(
    '--lr-decay-from',
    type=float,
    default=0.5,
    help='fraction of --steps after which the lr decays linearly to 0 (CUT: 0.5; 1: constant)',
  )
  p.add_argument(
    '--init-gain',
    default='0.02',
    help="networks' initial kernels: Xavier normal times this gain (CUT: 0.02), or 'flax'",
  )
  p.add_argument(
    '--per-patch',
    type=int,
    choices=(0, 1),
    default=1,
    help="D's loss on every patch logit (CUT: 1) or on each image's mean patch logit (0)",
  )
  p.add_argument('--langevin-step', type=float, default=1.0, help='CoopInit delta (drift d^2/2)')
  p.add_argument('--langevin-noise', type=float, default=0.01, help='CoopInit chain noise std')
  p.add_argument('--langevin-steps', type=int, default=10, help='CoopInit K')
  p.add_argument('--log-every', type=int, default=50)
  p.add_argument(
    '--checkpoint-every',
    type=int,
    default=100,
    help='iterations between checkpoints when --eval-every is 0 (else at every evaluation)',
  )
  p.add_argument(
    '--eval-every',
    type=int,
    default=0,
    help='also score FID to B and content accuracy every N iterations (0: only at the end)',
  )
  p.add_argument('--data-dir', default=None)
  args = p.parse_args(argv)
  try:
    args.seed_list = [int(s) for s in args.seeds.split(',') if s != '']
  except ValueError:
    raise SystemExit(f'--seeds must be a comma list of ints, got {args.seeds!r}.') from None
  if not args.seed_list:
    raise SystemExit('--seeds is empty; e.g. --seeds 0,1,2.')
  names = ('steps', 'batch_size', 'width', 'n_blocks', 'd_width', 'd_layers', 'log_every')
  for name in (*names, 'checkpoint_every'):
    if getattr(args, name) < 1:
      raise SystemExit(f'--{name.replace("_", "-")} must be >= 1, got {getattr(args, name)}.')
  if args.init_gain != 'flax':
    try:
      args.init_gain = float(args.init_gain)
    except ValueError:
      raise SystemExit(
        f"--init-gain must be a number > 0 or 'flax', got {args.init_gain!r}."
      ) from None
    if not args.init_gain > 0:
      raise SystemExit(f"--init-gain must be > 0 or 'flax', got {args.init_gain}.")
  if not 0.0 <= args.lr_decay_from <= 1.0:
    raise SystemExit(f'--lr-decay-from must be in [0, 1] (CUT: 0.5), got {args.lr_decay_from}.')
  if args.eval_every < 0:
    raise SystemExit(f'--eval-every must be >= 0 (0: only at the end), got {args.eval_every}.')
  if args.coopinit and not 0 <= args.t_init <= args.steps:
    raise SystemExit(f'--t_init must be in [0, --steps={args.steps}], got {args.t_init}.')
  return args


def run_config(args, seed: int) -> dict:
  """Everything that determines one run's result."""
  keys = (
    'steps',
    'coopinit',
    'batch_size',
    'width',
    'n_blocks',
    'd_width',
    'd_layers',
    'num_patches',
    'lambda_nce',
    'nce_idt',
    'lr',
    'lr_decay_from',
    'per_patch',
    'init_gain',
  )
  config = {k: getattr(args, k) for k in keys}
  if args.coopinit:
    config.update(
      t_init=args.t_init,
      langevin_step=args.langevin_step,
      langevin_noise=args.langevin_noise,
      langevin_steps=args.langevin_steps,
    )
  return {**config, 'seed': seed}


def run_path(workdir: Path, config: dict) -> Path:
  digest = settings_digest(config)
  tag = f'coop{config["coopinit"]}_t{config.get("t_init", 0)}_steps{config["steps"]}'
  return workdir / f'run_{tag}_seed{config["seed"]}_{digest}.json'


def build(args, seed: int):
  gain = None if args.init_gain == 'flax' else args.init_gain
  g_module = tr.ResnetGenerator(width=args.width, n_blocks=args.n_blocks, init_gain=gain)
  d_module = tr.PatchDiscriminator(width=args.d_width, n_layers=args.d_layers, init_gain=gain)
  tx = tr.cut_optimizer(args.lr, total_steps=args.steps, decay_from=args.lr_decay_from)
  game = tr.cut_game(
    g_module,
    d_module,
    lambda_nce=args.lambda_nce,
    num_patches=args.num_patches,
    per_patch=bool(args.per_patch),
  )
  state = tr.create_translation_state(
    jax.random.PRNGKey(seed),
    g_module=g_module,
    d_module=d_module,
    g_tx=tx,
    d_tx=tx,
    image_shape=IMAGE_SHAPE,
  )
  adversarial = two_stage_step(game, tx, tx)
  if args.coopinit:
    langevin = coopinit.LangevinConfig(
      step_size=args.langevin_step,
      n_steps=args.langevin_steps,
      noise_scale=args.langevin_noise,
    )
    coop = coopinit.coop_step(game, tx, tx, langevin=langevin)
    step = coopinit.make_phased_step(coop, adversarial, args.t_init, g_tx=tx, d_tx=tx)
    state = coopinit.with_coop_state(state)
  else:
    step = jax.jit(adversarial)
  return g_module, step, state


def scorer(g_module, test: dict, extractors: dict):
  """``score(params)``: the scores of ``G(test-A)`` (``fid_b``, ``content_acc``, ``fid_b_bclf``)."""

  def score(params) -> dict:
    translated = tr_metrics.translate(g_module, params, test['source'])
    return {
      'fid_b': tr_metrics.fid(extractors['mnist'], translated, test['target']),
      'content_acc': tr_metrics.content_accuracy(extractors['b'], translated, test['source_label']),
      'fid_b_bclf': tr_metrics.fid(extractors['b'], translated, test['target']),
    }

  return score


def train_and_score(args, seed: int, score_of, checkpoints: Path) -> dict:
  """Trains one seed and scores it (``score_of(g_module)`` gives ``score(params)``).

  A checkpoint (state, curve so far, training seconds) is saved in ``checkpoints`` at every
  evaluation (every ``--checkpoint-every`` iterations without evaluations), and a restarted run
  continues from the newest one on the same batches; the directory is removed at the end.
  """
  train = mnist_translation.load_task('train', args.data_dir)
  g_module, step, state = build(args, seed)
  score = score_of(g_module)
  batches = mnist_translation.translation_batches(train, args.batch_size, seed=seed)
  every = args.eval_every or args.checkpoint_every
  ckpts = LoopCheckpoints(checkpoints)
  state, progress, start = ckpts.restore(state, {'curve': [], 'train_seconds': 0.0})
  curve, train_seconds = progress['curve'], progress['train_seconds']
  if start:
    for _ in range(start):
      next(batches)
    print(f'  [seed {seed}] resumed at iteration {start} from {checkpoints}', flush=True)
  t0 = time.perf_counter()
  try:
    for i in range(start, args.steps):
      batch = next(batches)
      state, metrics = step(state, {'image': batch['image'], 'latent': batch['latent']})
      if (i + 1) % args.log_every == 0 or i + 1 == args.steps:
        shown = {k: round(float(v), 4) for k, v in metrics.items()}
        print(
          f'  [seed {seed}] iter {i + 1:5d} {shown} {time.perf_counter() - t0:.1f}s', flush=True
        )
      if (i + 1) % every == 0 and i + 1 < args.steps:
        jax.block_until_ready(state)
        train_seconds += time.perf_counter() - t0
        if args.eval_every:
          curve.append({'step': i + 1, **score(state.g.params)})
          print(f'  [seed {seed}] iter {i + 1:5d} scores {curve[-1]}', flush=True)
        ckpts.save(i + 1, state, {'curve': curve, 'train_seconds': train_seconds})
        t0 = time.perf_counter()
    jax.block_until_ready(state)
  finally:
    ckpts.close()
  wall = train_seconds + time.perf_counter() - t0
  final = score(state.g.params)
  if args.eval_every:
    curve.append({'step': args.steps, **final})
  ckpts.remove()
  return {
    **final,
    'curve': curve,
    'wall_seconds': wall,
    'final_metrics': {k: float(v) for k, v in metrics.items()},
  }


def reference_points(test: dict, extractors: dict, data_dir) -> dict:
  """Scores of the untranslated test-A images and of the exact appearance map (oracle)."""
  plain = mnist_metrics.data_lib.load_arrays(mnist_translation.DATASET, 'test', data_dir=data_dir)
  oracle = to_float(mnist_translation.appearance_b(plain['image'][test['source_index']]))
  out = {}
  for name, images in (('identity', test['source']), ('oracle', oracle)):
    out[name] = {
      'fid_b': tr_metrics.fid(extractors['mnist'], images, test['target']),
      'content_acc': tr_metrics.content_accuracy(extractors['b'], images, test['source_label']),
      'fid_b_bclf': tr_metrics.fid(extractors['b'], images, test['target']),
    }
  return out


def summarize(runs: list[dict]) -> dict:
  out = {}
  for key in SCORES:
    values = np.array([r['scores'][key] for r in runs], np.float64)
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0  # sample std over seeds
    out[key] = {'mean': float(values.mean()), 'std': std}
  return out


def table(summary: dict, refs: dict, label: str, n_seeds: int) -> str:
  lines = [
    '| run | seeds | FID to B (MNIST clf) | content acc | FID to B (B clf) | wall s |',
    '|---|---|---|---|---|---|',
  ]
  cells = [f'{summary[k]["mean"]:.2f} ± {summary[k]["std"]:.2f}' for k in SCORES]
  cells[1] = f'{summary["content_acc"]["mean"]:.3f} ± {summary["content_acc"]["std"]:.3f}'
  lines.append(f'| {label} | {n_seeds} | ' + ' | '.join(cells) + ' |')
  for name, r in refs.items():
    lines.append(
      f'| {name} (no training) | - | {r["fid_b"]:.2f} | {r["content_acc"]:.3f} | '
      f'{r["fid_b_bclf"]:.2f} | - |'
    )
  return '\n'.join(lines)


def main(argv=None) -> dict:
  args = parse_args(argv)
  print(machine())
  workdir = Path(args.workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  test = mnist_translation.load_task('test', args.data_dir)
  extractors = {
    'mnist': mnist_metrics.mnist_extractor(args.data_dir),
    'b': tr_metrics.domain_b_classifier(args.data_dir, log=print),
  }
  runs = []
  for seed in args.seed_list:
    config = run_config(args, seed)
    path = run_path(workdir, config)
    if path.exists():
      run = json.loads(path.read_text())
      if run.get('config') == config:
        print(f'seed {seed}: reusing {path}')
        runs.append(run)
        continue
    print(f'seed {seed}: training ({config})', flush=True)
    checkpoints = path.with_name(path.stem.replace('run_', 'checkpoints_', 1))
    scores = train_and_score(args, seed, lambda g: scorer(g, test, extractors), checkpoints)
    run = {
      'config': config,
      'scores': scores,
      'extractors': {k: e.name for k, e in extractors.items()},
      'jax_version': jax.__version__,
    }
    path.write_text(json.dumps(run, indent=2, sort_keys=True))
    print(f'seed {seed}: { ({k: round(scores[k], 4) for k in SCORES}) } -> {path}', flush=True)
    runs.append(run)

  refs = reference_points(test, extractors, args.data_dir)
  summary = summarize(runs)
  label = f'CUT + CoopInit (t_init={args.t_init})' if args.coopinit else 'CUT'
  print(f'\nMNIST A -> B translation, {args.steps} iterations, batch {args.batch_size}\n')
  print(table(summary, refs, label, len(runs)))
  result = {'summary': summary, 'references': refs, 'runs': runs, 'label': label}
  if args.json:
    Path(args.json).write_text(json.dumps(result, indent=2, sort_keys=True))
  return result


if __name__ == '__main__':
  main()
