"""Scores a run's latest (or best) checkpoint and writes ``eval.json`` beside it.

  python -m experiments.evaluate --workdir DIR [--which best] [--samples 5000]

The run's own config (``DIR/config.json``) rebuilds the models and the
evaluator of its dataset (``jaxgan.evaluation``); every number is written with
its protocol (extractor and weights hash, sample counts, reference split) and
the checkpoint step it scored.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax

from experiments.configs import default
from jaxgan import checkpoint, evaluation, run_setup


def evaluate_workdir(
  workdir: str | Path, *, which: str = 'last', samples: int | None = None
) -> dict:
  """Restores ``workdir``'s checkpoint and returns its scores (also written to ``eval.json``)."""
  workdir = Path(workdir)
  config_path = workdir / 'config.json'
  if not config_path.exists():
    raise FileNotFoundError(f'{config_path} not found: is {workdir} a jaxgan run directory?')
  # Fields added to jaxgan after the run was started take their defaults.
  config = default.get_config()
  config.update(json.loads(config_path.read_text()))
  n = samples or config.eval_samples or 1000
  config.eval_samples = n
  run = run_setup.build_run(config)
  generate, sample = run.eval_functions()  # conditional runs: uniform labels with z
  evaluate = evaluation.make_evaluator(config, generate, sample, run.image_shape)
  if evaluate is None:
    raise ValueError(
      f'no evaluator for dataset {config.dataset!r}: set inception_weights in the config '
      '(converted with python -m jaxgan.metrics.convert_inception).'
    )
  ckpt = checkpoint.RunCheckpointer(workdir, best_metric='fid' if which == 'best' else None)
  restored = ckpt.restore(run.init_state(jax.random.PRNGKey(config.seed)), which=which)
  ckpt.close()
  if restored is None:
    raise FileNotFoundError(f'no {which} checkpoint in {workdir}.')
  state, _, _, step = restored
  scores = {'checkpoint': which, 'step': step, **evaluate(state, n)}
  (workdir / 'eval.json').write_text(json.dumps(scores, indent=2, default=_plain))
  return scores


def _plain(x):
  return x.tolist() if hasattr(x, 'tolist') else str(x)


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--workdir', required=True)
  ap.add_argument('--which', choices=('last', 'best'), default='last')
  ap.add_argument(
    '--samples', type=int, default=None, help='generated samples (default: the config eval_samples)'
  )
  args = ap.parse_args()
  scores = evaluate_workdir(args.workdir, which=args.which, samples=args.samples)
  print(json.dumps({k: v for k, v in scores.items() if k != 'protocol'}, indent=2, default=_plain))


if __name__ == '__main__':
  main()
