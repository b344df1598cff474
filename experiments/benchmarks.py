"""Runs the ``experiments/bench_*.py`` scripts and writes their tables to docs/BENCHMARKS.md.

  python -m experiments.benchmarks [--only onestage,step,...] [--rounds 20] [--out docs/BENCHMARKS.md]

Each benchmark runs in its own process, one after the other (never two at once: they
would share the cores). The page gives, for each, the command that reproduces it, its
printed output, its wall-clock and its peak resident memory (``ru_maxrss`` of that
process, from ``os.wait4``). Run it on a GPU or TPU host to get that machine's numbers;
ratios measured within one benchmark are the figures to compare across machines.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

from experiments.pages import earlier_sections

BENCHES = {
  'onestage': (
    'One-stage vs two-stage step',
    'experiments.bench_onestage',
    [],
    'Median time per iteration of the two-stage and one-stage steps, same model and batch, '
    'with the analytic cost ratios (the jit bound is 4/3).',
  ),
  'step': (
    'jaxgan vs PyTorch eager, same architecture',
    'experiments.bench_step',
    [],
    'One alternating step of DCGAN-32 and DCGAN-28: jaxgan with its transposed convolution, '
    "jaxgan with XLA's stock one, and a mirrored PyTorch eager module (needs "
    "`pip install -e '.[bench]'`; skipped without torch).",
  ),
  'sparse': (
    'Sparse-mask overhead',
    'experiments.bench_sparse',
    [],
    'Masked (ERK, density 0.1) against dense Adam updates and full steps, and the slow '
    'schedules (prune/regrow, D density change); compile times in the first lines.',
  ),
  'dat': (
    'DAT overhead and compile times',
    'experiments.bench_dat',
    [],
    'Two- and one-stage steps with and without DAT: compile time and time per iteration.',
  ),
  'upsample': (
    'Transposed-convolution formulations',
    'experiments.bench_upsample',
    ['--skip-stock'],
    'The k4 s2 transposed convolution as the library computes it against alternatives, and '
    "D's stride-2 convolution as XLA computes it against the library's.",
  ),
}


def run_bench(module: str, args: list[str]) -> tuple[str, float, float, int]:
  """Runs ``python -m module args``; returns (stdout, seconds, peak RSS MiB, exit code)."""
  t = time.perf_counter()
  proc = subprocess.Popen(
    [sys.executable, '-m', module, *args],
    stdout=subprocess.PIPE,
    stderr=subprocess.DEVNULL,
    text=True,
  )
  out = proc.stdout.read()
  _, status, usage = os.wait4(proc.pid, 0)
  proc.returncode = os.waitstatus_to_exitcode(status)
  return out, time.perf_counter() - t, usage.ru_maxrss / 1024, proc.returncode


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--only', default='', help=f'comma-separated subset of {list(BENCHES)}')
  ap.add_argument('--rounds', type=int, default=20, help='timed rounds of every benchmark')
  ap.add_argument('--out', default='docs/BENCHMARKS.md')
  args = ap.parse_args(argv)
  names = [n for n in args.only.split(',') if n] or list(BENCHES)
  unknown = sorted(set(names) - set(BENCHES))
  if unknown:
    ap.error(f'unknown benchmarks {unknown}; choose from {list(BENCHES)}')
  has_torch = importlib.util.find_spec('torch') is not None
  lines = [
    '# jaxgan benchmarks',
    '',
    f'Written by `python -m experiments.benchmarks --rounds {args.rounds}` on '
    f'{datetime.date.today().isoformat()}; each section names the command that reruns it '
    f'alone. torch installed: {has_torch}. Times are medians of interleaved rounds after '
    'compilation; compare ratios, not absolute times, across machines.',
    '',
  ]
  out = Path(args.out)
  sections = earlier_sections(out) if args.only else {}  # --only keeps the others
  for name in names:
    title, module, extra, what = BENCHES[name]
    rounds_flag = ['--repeats' if name == 'onestage' else '--rounds', str(args.rounds)]
    cmd = [*extra, *rounds_flag]
    print(f'[{name}] python -m {module} {" ".join(cmd)}', flush=True)
    text, seconds, rss, code = run_bench(module, cmd)
    sections[title] = '\n'.join(
      [
        f'## {title}',
        '',
        f'Command: `python -m {module} {" ".join(cmd)}`',
        '',
        what,
        '',
        f'Wall-clock {seconds:.0f} s, peak resident memory {rss:.0f} MiB, exit code {code}.',
        '',
        '```',
        text.strip(),
        '```',
        '',
      ]
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text('\n'.join(lines + list(sections.values())) + '\n')
  print(f'wrote {args.out}')


if __name__ == '__main__':
  main()
