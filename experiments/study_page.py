"""Pieces of the results page: claims judged by Welch intervals, tables, baseline curves.

Used by :mod:`experiments.reproduce`; every number comes from stored arm-seed results
(:mod:`experiments.study_runs`) and every verdict from :mod:`experiments.study_stats`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from experiments import study_runs, study_stats

CONVERGED_SPREAD = 0.05  # last three evaluations within 5% of one another
LEGIBLE_TARGET = 0.9
DECIDING_SEEDS = 5  # a verdict with fewer seeds in either arm is shown as provisional


@dataclasses.dataclass
class Claim:
  """One relative claim: ``technique`` arm against ``reference`` arm on one metric.

  ``margin`` (in the metric's units) is how much worse the technique may be and still
  count as equal; 0 for claims of "better".
  """

  text: str
  metric: str
  technique: Sequence[float]
  reference: Sequence[float]
  lower_is_better: bool
  margin: float = 0.0
  margin_note: str = '0'

  def interval(self) -> study_stats.Interval | None:
    if len(self.technique) < 2 or len(self.reference) < 2:
      return None
    return study_stats.welch_interval(self.technique, self.reference)

  def verdict(self) -> str:
    iv = self.interval()
    if iv is None:
      return f'pending ({len(self.technique)} and {len(self.reference)} seeds; 2+ each needed)'
    verdict = study_stats.verdict(iv, lower_is_better=self.lower_is_better, margin=self.margin)
    n = min(len(self.technique), len(self.reference))
    if n < DECIDING_SEEDS:
      return (
        f'provisional: {verdict} ({len(self.technique)} and {len(self.reference)} seeds; '
        f'{DECIDING_SEEDS} each decide)'
      )
    return verdict

  def row(self) -> str:
    iv = self.interval()
    cells = [
      self.text,
      self.metric,
      fmt_mean_std(self.technique),
      fmt_mean_std(self.reference),
      '-' if iv is None else str(iv),
      self.margin_note,
      f'**{self.verdict()}**',
    ]
    return '| ' + ' | '.join(cells) + ' |'

  def record(self) -> dict:
    iv = self.interval()
    return {
      'claim': self.text,
      'metric': self.metric,
      'technique': list(map(float, self.technique)),
      'reference': list(map(float, self.reference)),
      'interval': None if iv is None else dataclasses.asdict(iv),
      'margin': self.margin,
      'verdict': self.verdict(),
    }


CLAIM_HEAD = [
  '| claim | metric | technique (mean ± std, n) | reference (mean ± std, n) | '
  'difference [95% CI] (Welch) | margin | verdict |',
  '|---|---|---|---|---|---|---|',
]


def relative_margin_note(margin: float, reference: Sequence[float]) -> str:
  """The margin column of a claim that allows 5% of the reference arm's mean."""
  return f'5% of the reference ({margin:.2f})' if len(reference) else '5% of the reference arm'


def claims_table(claims: list[Claim]) -> list[str]:
  return CLAIM_HEAD + [c.row() for c in claims]


def fmt_mean_std(values: Sequence[float], digits: int = 2) -> str:
  if not len(values):
    return 'no runs yet'
  m, s = study_stats.mean_std(values)
  if len(values) == 1:  # no spread to show from one seed
    return f'{m:.{digits}f} (n=1)'
  return f'{m:.{digits}f} ± {s:.{digits}f} (n={len(values)})'


def arm_table(
  runs: dict[str, list[dict]],
  columns: list[tuple[str, Callable[[dict], float], int]],
  planned: int,
) -> list[str]:
  """``| arm | seeds | column mean ± std ... |`` from per-run value functions."""
  head = ['arm', f'seeds (of {planned})'] + [label for label, _, _ in columns]
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for arm, rs in runs.items():
    cells = [arm, str(len(rs))]
    for _, fn, digits in columns:
      vals = [fn(r) for r in rs]
      vals = [v for v in vals if v is not None]
      cells.append(fmt_mean_std(vals, digits).rsplit(' (n=', 1)[0] if vals else '-')
    lines.append('| ' + ' | '.join(cells) + ' |')
  return lines


def final(key: str) -> Callable[[dict], float]:
  return lambda r: float(r['final'][key])


def values(rs: list[dict], fn: Callable[[dict], float | None]) -> list[float]:
  """``fn`` of every run, leaving out runs without the value (``None``)."""
  return [v for v in map(fn, rs) if v is not None]


def per_seed(
  runs: dict[str, list[dict]], fn: Callable[[dict], float | None], what: str, digits: int
) -> str:
  """``'<what> per seed: arm v0, v1, ...; arm ...'`` (empty when no arm has a run)."""
  parts = [
    f'{arm} ' + ', '.join(f'{v:.{digits}f}' for v in values(rs, fn))
    for arm, rs in runs.items()
    if rs
  ]
  return f'{what} per seed: ' + '; '.join(parts) + '.' if parts else ''


def curve(result: dict, key: str = 'fid') -> tuple[np.ndarray, np.ndarray]:
  """``(steps, values)`` of one run's evaluation curve."""
  rows = [e for e in study_runs.evals(result) if key in e]
  return np.array([e['step'] for e in rows]), np.array([float(e[key]) for e in rows])


def convergence(rs: list[dict], key: str = 'fid') -> dict:
  """:func:`curve_convergence` of the runs' ``key`` evaluation curves."""
  return curve_convergence([curve(r, key)[1] for r in rs])


def curve_convergence(curves: list[Sequence[float]]) -> dict:
  """Relative spread of the last three evaluations of the seed-mean curve (the arm's curve,
  which decides ``converged``: <= 5%) and of each seed's own curve; curves shorter than three
  are left out. Raises ``ValueError`` on a last-three value at or below 0."""
  curves = [np.asarray(c, np.float64) for c in curves if len(c) >= 3]
  spreads = [study_stats.relative_spread(c[-3:]) for c in curves]
  mean_spread = None
  if curves:
    n = min(len(c) for c in curves)
    mean_spread = study_stats.relative_spread(np.mean([c[:n] for c in curves], axis=0)[-3:])
  return {
    'spreads': spreads,
    'mean_spread': mean_spread,
    'converged': mean_spread is not None and mean_spread <= CONVERGED_SPREAD,
  }


def flatness(curves: list[Sequence[float]], what: str) -> str:
  """How far apart ``what``'s last three evaluations are: on the seed-mean curve (which decides
  flat, <= 5%, as :func:`convergence`) and at most on one seed; '' without a curve of three."""
  try:
    conv = curve_convergence(curves)
  except ValueError:  # a spread relative to 0 is undefined
    return f'{what}: a last-three evaluation at or below 0 in some seed (still moving)'
  if conv['mean_spread'] is None:
    return ''
  state = 'flat' if conv['converged'] else 'still moving'
  return (
    f'{what}: the last three evaluations of the seed-mean curve lie within '
    f'{conv["mean_spread"]:.1%} of one another ({state}; single seeds: up to '
    f'{max(conv["spreads"]):.1%})'
  )


def baseline_summary(rs: list[dict], floor: float, name: str) -> str:
  """A paragraph: final FID against the floor, convergence of the curve, legibility."""
  if not rs:
    return f'Baseline ({name}): no runs yet.'
  conv = convergence(rs)
  fid = fmt_mean_std(values(rs, final('fid')))
  legible = [r['legible_fraction'] for r in rs if 'legible_fraction' in r]
  spread = (
    f'the last three evaluations of its seed-mean FID curve lie within '
    f'{conv["mean_spread"]:.1%} of one another ({"within" if conv["converged"] else "NOT within"}'
    f' 5%: {"finished learning" if conv["converged"] else "still moving"}; single seeds: up to '
    f'{max(conv["spreads"]):.1%})'
    if conv['spreads']
    else 'fewer than three evaluations'
  )
  leg = (
    f'legible samples (MNIST classifier confidence >= 0.9, 1,000 samples) '
    f'{fmt_mean_std([100 * x for x in legible], 1)} % '
    f'({"meets" if min(legible) >= LEGIBLE_TARGET else "does NOT meet"} the 90% target on every '
    'seed)'
    if legible
    else 'legibility not measured'
  )
  return (
    f'Baseline ({name}): final MNIST FID {fid} against the real-data floor {floor:.2f}; '
    f'{spread}; {leg}.'
  )


def baseline_status(rs: list[dict], floor: float) -> str:
  """One cell: ``FID m (floor f), flat / still moving, legible p%``."""
  if not rs:
    return 'no runs yet'
  conv = convergence(rs)
  legible = [r['legible_fraction'] for r in rs if 'legible_fraction' in r]
  parts = [f'{np.mean(values(rs, final("fid"))):.1f} ({floor:.2f})']
  if conv['spreads']:
    parts.append(
      f'flat ({conv["mean_spread"]:.1%})'
      if conv['converged']
      else f'moving ({conv["mean_spread"]:.1%})'
    )
  if legible:
    parts.append(f'{100 * np.mean(legible):.0f}% legible')
  return ', '.join(parts)


def plot_curves(
  path: Path,
  runs: dict[str, list[dict]],
  *,
  key: str = 'fid',
  ylabel: str = 'MNIST FID',
  floor: float | None = None,
  log: bool = True,
) -> bool:
  """Each arm's evaluation curves (thin: seeds; thick: mean over seeds) over iterations;
  False (and no file) when no run is stored yet."""
  if not any(runs.values()):
    return False
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(6, 3.8))
  for ci, (arm, rs) in enumerate(runs.items()):
    curves = [curve(r, key) for r in rs]
    curves = [c for c in curves if len(c[0])]
    for x, y in curves:
      ax.plot(x, y, color=f'C{ci}', alpha=0.3, lw=0.8)
    if curves:
      n = min(len(x) for x, _ in curves)
      ax.plot(
        curves[0][0][:n],
        np.mean([y[:n] for _, y in curves], axis=0),
        color=f'C{ci}',
        lw=2,
        label=f'{arm} (mean of {len(curves)})',
      )
  if floor is not None:
    ax.axhline(floor, color='k', ls='--', lw=1, label=f'real-data floor {floor:.2f}')
  if log:
    ax.set_yscale('log')
  ax.set_xlabel('iteration')
  ax.set_ylabel(ylabel)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return True


def plot_logged(
  path: Path,
  runs: dict[str, list[dict]],
  keys: list[str],
  ylabels: list[str],
  hlines: dict[str, list[float]] | None = None,
) -> bool:
  """One panel per logged metric key, one line per run, over iterations; False (and no
  file) when no run is stored yet."""
  if not any(runs.values()):
    return False
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.5), squeeze=False)
  for ax, key, label in zip(axes[0], keys, ylabels):
    for ci, (arm, rs) in enumerate(runs.items()):
      for si, r in enumerate(rs):
        pts = [(m['step'], m[key]) for m in study_runs.metrics(r) if key in m]
        if pts:
          x, y = zip(*pts)
          ax.plot(x, y, color=f'C{ci}', alpha=0.7, lw=0.8, label=arm if si == 0 else None)
    for y in (hlines or {}).get(key, []):
      ax.axhline(y, color='k', ls='--', lw=1)
    ax.set_xlabel('iteration')
    ax.set_ylabel(label)
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return True


def sample_strip(path: Path, runs: dict[str, list[dict]]) -> bool:
  """The final sample grid of the first stored seed of every arm, side by side."""
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.image as mpimg
  import matplotlib.pyplot as plt

  grids = {}
  for arm, rs in runs.items():
    for r in rs:
      p = Path(r['dir']) / 'samples_final.png'
      if p.exists():
        grids[arm] = p
        break
  if not grids:
    return False
  fig, axes = plt.subplots(1, len(grids), figsize=(3 * len(grids), 3.3), squeeze=False)
  for ax, (arm, p) in zip(axes[0], grids.items()):
    ax.imshow(mpimg.imread(p), cmap='gray')
    ax.set_title(arm, fontsize=8)
    ax.axis('off')
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return True


@dataclasses.dataclass
class Section:
  """One study's part of the page."""

  title: str
  command: str
  setting: str
  body: list[str]
  claims: list[Claim]
  scope: str  # which claims this scale can and cannot show
  figures: list[str] = dataclasses.field(default_factory=list)
  data: dict = dataclasses.field(default_factory=dict)

  def markdown(self) -> str:
    parts = [f'## {self.title}', '', f'Command: `{self.command}`', '', self.setting, '']
    parts += self.body + ['']
    if self.claims:
      parts += claims_table(self.claims) + ['']
    parts += [f'**What this scale shows:** {self.scope}', '']
    parts += [f'![{self.title}]({f})' for f in self.figures]
    return '\n'.join(parts) + '\n'

  def record(self) -> dict:
    return {'claims': [c.record() for c in self.claims], 'data': self.data}
