"""Where the study runs of ``experiments.reproduce`` live, and how one is run or reused.

Every study is a set of arms, each run with several seeds. One arm-seed run keeps

* its small results, committed to the repository, under
  ``<results>/<study>/<arm>/seed<k>/`` (default ``docs/results/runs``): ``result.json``
  (the final numbers), and for runs of the training program ``eval_log.jsonl`` (the
  evaluation curve), ``metrics.jsonl`` (the training log), ``summary.json``,
  ``config.json`` and the last sample grid;
* its working files (checkpoints), not committed, under ``<work>/<study>/<arm>/seed<k>/``
  (default ``runs/studies``), so an interrupted run resumes where it stopped.

A run whose ``result.json`` exists is never rerun, so the page is rebuilt from the
committed results, and only missing runs train (or, with ``train=False``, are listed as
missing). With ``commit=True`` every finished run is committed on its own. A stored run of
the training program whose ``config.json`` differs from the config the study asks for now
is refused (:func:`stale_fields`): a changed setting never reuses old numbers.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import jax
import ml_collections
import numpy as np

from experiments.configs import default
from jaxgan import run_setup, train
from jaxgan.config_checks import covered, flatten, loop_fields
from jaxgan.metrics import mnist as mnist_metrics

Compute = Callable[[Path, Path], dict]  # (work dir, results dir) -> result.json content
COPIED = ('eval_log.jsonl', 'metrics.jsonl', 'summary.json', 'config.json')
LEGIBLE_CONFIDENCE = 0.9
LEGIBLE_SAMPLES = 1000


def slug(arm: str) -> str:
  """A directory name for an arm label: ``'ticket 67% + DiffAug'`` -> ``'ticket_67pc_diffaug'``."""
  s = arm.lower().replace('%', 'pc').replace('.', 'p')
  return re.sub(r'[^a-z0-9]+', '_', s).strip('_')


@dataclasses.dataclass
class Store:
  """The results and work directories of the studies, and what to do about missing runs."""

  results: Path
  work: Path
  train: bool = True
  commit: bool = False
  missing: list[tuple[str, str, int]] = dataclasses.field(default_factory=list)
  done: list[tuple[str, str, int]] = dataclasses.field(default_factory=list)

  def result_dir(self, study: str, arm: str, seed: int) -> Path:
    return self.results / study / slug(arm) / f'seed{seed}'

  def get(self, study: str, arm: str, seed: int, compute: Compute) -> dict | None:
    """The stored result of one arm-seed run; runs ``compute`` first when it is missing
    (and ``train``), else records it as missing and returns ``None``. ``compute`` is only
    called when the run is missing."""
    out = self.result_dir(study, arm, seed)
    path = out / 'result.json'
    wanted = getattr(compute, 'config', None)
    changed = []
    if path.exists() and wanted is not None and (out / 'config.json').exists():
      changed = stale_fields((out / 'config.json').read_text(), wanted)
    if path.exists() and hasattr(compute, 'settings'):
      changed = changed_settings(json.loads(path.read_text()), compute.settings)
    if changed:
      raise ValueError(
        f'{out} was trained with other settings ({", ".join(changed[:6])}); move it away '
        'to train the run again, or restore the settings it was trained with.'
      )
    if not path.exists():
      if not self.train:
        self.missing.append((study, arm, seed))
        return None
      print(f'[{study}] {arm} seed {seed}', flush=True)
      out.mkdir(parents=True, exist_ok=True)
      result = compute(self.work / study / slug(arm) / f'seed{seed}', out)
      path.write_text(json.dumps(result, indent=1, default=float) + '\n')
      if self.commit:
        commit_paths([out], f'Issue 17: {study} study, {arm}, seed {seed}')
    self.done.append((study, arm, seed))
    return {**json.loads(path.read_text()), 'dir': str(out)}

  def arms(self, arms: dict[str, tuple], seeds: int) -> dict[str, list[dict]]:
    """``{arm: [result of each available seed]}`` for ``arms`` ``{arm: (study, make)}`` or
    ``{arm: (study, make, stored_arm)}`` (a run shared by several studies under one name),
    where ``make(seed)`` gives the run's :data:`Compute`. Runs go seed by seed (every
    arm's seed 0 first), so a partial study already pairs its arms."""
    out: dict[str, list[dict]] = {arm: [] for arm in arms}
    for seed in range(seeds):
      for arm, (study, make, *stored) in arms.items():
        result = self.get(study, stored[0] if stored else arm, seed, make(seed))
        if result is not None:
          out[arm].append(result)
    return out


def stale_fields(saved_json: str, config: ml_collections.ConfigDict) -> list[str]:
  """The fields in which a stored run's config differs from ``config``.

  Fields that steer only the loop (when to log, evaluate, checkpoint) are left out. A field
  the stored config lacks (a field added to jaxgan since) counts only when ``config`` sets
  it to something other than its default.
  """
  saved = flatten(json.loads(saved_json))
  now = flatten(json.loads(config.to_json_best_effort()))
  defaults = flatten(json.loads(default.get_config().to_json_best_effort()))
  missing, free = object(), loop_fields()
  return sorted(
    name
    for name, value in now.items()
    if not covered(name, free) and saved.get(name, defaults.get(name, missing)) != value
  )


def changed_settings(stored: dict, settings: dict) -> list[str]:
  """The settings in which a stored run of an experiment script (:func:`script_run`)
  differs from ``settings``; ``['settings (not recorded)']`` when it has none."""
  saved = stored.get('settings')
  if saved is None:
    return ['settings (not recorded)']
  now = json.loads(json.dumps(settings))
  return sorted(k for k in saved.keys() | now.keys() if saved.get(k) != now.get(k))


def flags(settings: dict) -> list[str]:
  """Command-line flags of an experiment script from ``settings``: ``{'batch-size': 16}`` ->
  ``['--batch-size', '16']``."""
  return [x for name, value in settings.items() for x in (f'--{name}', str(value))]


def script_run(run: Compute, settings: dict) -> Compute:
  """A :data:`Compute` for a run of an experiment script: ``run(work, out)`` gives the
  result, which is stored with ``settings`` (JSON values: everything the script's result
  depends on). A stored run with other settings is refused, like a training-program run
  with another config."""

  def compute(work: Path, out: Path) -> dict:
    return {**run(work, out), 'settings': settings}

  compute.settings = settings
  return compute


def commit_paths(paths: list[Path], message: str) -> None:
  """``git add`` the paths and commit them (nothing else) with ``message``."""
  subprocess.run(['git', 'add', '--', *map(str, paths)], check=True)
  subprocess.run(
    ['git', 'commit', '-q', '-m', message, '--', *map(str, paths)], check=False, text=True
  )


def legible_fraction(images: np.ndarray, data_dir: str | None = None) -> float:
  """The share of ``images`` ``[N, 28, 28, 1]`` in [-1, 1] that the project's MNIST
  classifier assigns to a class with softmax confidence >= 0.9."""
  extractor = mnist_metrics.mnist_extractor(data_dir)
  logits = np.asarray(extractor(images, 500)['logits'], np.float64)
  p = np.exp(logits - logits.max(axis=1, keepdims=True))
  p /= p.sum(axis=1, keepdims=True)
  return float(np.mean(p.max(axis=1) >= LEGIBLE_CONFIDENCE))


def lines(path: Path) -> list[dict]:
  return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def training_program(cfg: ml_collections.ConfigDict, *, legibility: bool = True) -> Compute:
  """A :data:`Compute` that trains ``cfg`` with the training program (resuming), copies
  its small files, and scores the legibility of 1,000 EMA-G samples (MNIST runs)."""

  def compute(work: Path, out: Path) -> dict:
    state = train.train_and_evaluate(cfg, work)
    for name in COPIED:
      if (work / name).exists():
        shutil.copy(work / name, out / name)
    grids = sorted((work / 'samples').glob('*.png'))
    if grids:
      shutil.copy(grids[-1], out / 'samples_final.png')
    evals = lines(work / 'eval_log.jsonl')
    result = {
      'final_step': int(jax.device_get(state.step)),
      'final': {k: v for k, v in evals[-1].items() if np.isscalar(v)} if evals else {},
    }
    if legibility:
      run = run_setup.build_run(cfg)
      z = run.game.sample_latents(jax.random.PRNGKey(cfg.seed + 20_011), LEGIBLE_SAMPLES)
      result['legible_fraction'] = legible_fraction(run.generate(state, z), cfg.data_dir or None)
    return result

  compute.config = cfg
  return compute


def evals(result: dict) -> list[dict]:
  """The evaluation curve of a training-program run (``eval_log.jsonl``)."""
  return lines(Path(result['dir']) / 'eval_log.jsonl')


def metrics(result: dict) -> list[dict]:
  """The training log of a training-program run (``metrics.jsonl``)."""
  return lines(Path(result['dir']) / 'metrics.jsonl')
