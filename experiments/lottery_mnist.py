"""Stage I of the lottery-ticket study: iterative magnitude pruning of G on little data.

  python -m experiments.lottery_mnist --config-fraction 0.1 --rounds 9 --round-steps 200
      [--seed 0] [--width 32] [--rank raw|ema] [--layers conv[,dense]] [--workdir runs/lottery_mnist]

Each round trains the training program's DCGAN-28 on ``--config-fraction`` of the offline
MNIST-5k from the seed's initial weights times the current mask (rewinding to theta0,
fresh Adam and EMA: :func:`jaxgan.sparse.lottery.rewind_state` semantics, via
``config.lottery.ticket``), without augmentation (lottery.md §1: augmentation during the
search had no visible effect), then prunes 20% of G's remaining prunable weights by the
magnitude of the trained raw G (``--rank ema``: of its EMA), ranked across G (global, the
reference). The prunable set is G's conv and transposed-conv kernels (the reference;
``--layers conv,dense`` also prunes the Dense ``project`` layer, which holds most of
DCGAN-28's kernel weights). D stays dense and starts from phi0 every round (the released
limited-data code). Round ``r``'s masks are written to ``WORKDIR/ticket_round{r}.npz``
(sparsity ``1 - 0.8**r`` of the prunable set: 67.2% after 5 rounds, 86.6% after 9); a
finished round is not rerun. ``WORKDIR/tickets.json`` logs each round's density over the
prunable set and over all of G's kernels, and how close the round's pruning came to
pruning at initialisation (:func:`jaxgan.sparse.lottery.init_agreement`: the Spearman
correlation of |theta0| and the ranked |w|, and the overlap of the pruned set with what
|theta0| would prune; about 0.2 for an unrelated ranking).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import jax
import ml_collections
import numpy as np

from experiments.configs import default
from jaxgan import run_setup, sparse, train
from jaxgan.sparse import lottery

RANKS = ('raw', 'ema')
RATE = 0.2


def base_config(fraction: float, width: int, steps: int, seed: int):
  """The small-data MNIST run every lottery round and every Stage II run starts from."""
  c = default.get_config()
  c.seed = seed
  c.subset.fraction = fraction
  c.subset.seed = seed
  c.model_kwargs.width = width
  c.num_steps = steps
  c.ema_decay = 0.99
  c.log_every = 25
  c.sample_every = steps
  c.checkpoint_every = steps
  c.eval_every = 0
  return c


def ticket_path(workdir: Path, r: int) -> Path:
  return workdir / f'ticket_round{r}.npz'


def agreement_path(workdir: Path, r: int) -> Path:
  return workdir / f'agreement_round{r}.json'


def _check_resume(workdir: Path, settings: dict) -> None:
  """Refuses to resume tickets written with other settings (or by an older search)."""
  path = workdir / 'search.json'
  if path.exists():
    saved = json.loads(path.read_text())
    changed = {k: (saved.get(k), v) for k, v in settings.items() if saved.get(k) != v}
    if changed:
      raise ValueError(
        f'{workdir} holds a search with other settings ({{setting: (saved, asked)}}: {changed}); '
        'use another --workdir or delete it.'
      )
  elif ticket_path(workdir, 0).exists():
    raise ValueError(
      f'{workdir} holds tickets of an older search (G ranked by its EMA, Dense layers pruned); '
      'use another --workdir or delete it.'
    )
  path.write_text(json.dumps(settings, indent=2))


def search(
  fraction: float,
  rounds: int,
  round_steps: int,
  seed: int,
  width: int,
  workdir: Path,
  *,
  rank: str = 'raw',
  layers: tuple[str, ...] = lottery.DEFAULT_LAYERS,
  round_config: ml_collections.ConfigDict | None = None,
  runs_dir: Path | None = None,
  on_round: Callable[[list[Path]], None] | None = None,
) -> list[dict]:
  """Runs (or resumes) the IMP rounds; returns each round's densities and agreement.

  Args:
    fraction, rounds, round_steps, seed, width: as the command line's flags.
    workdir: where the tickets, each round's agreement and the search's settings go (small
      files: a search resumes from them alone).
    rank: ``'raw'`` (the reference) or ``'ema'``: which trained G ranks the pruning.
    layers: the prunable set (:data:`jaxgan.sparse.lottery.LAYER_KINDS`).
    round_config: the run every round trains (its ``lottery.ticket`` and ``eval_samples``
      are set here); default ``base_config(fraction, width, round_steps, seed)``.
    runs_dir: where each round's training run (checkpoints) goes; default ``workdir``.
    on_round: called after each trained round with the files it added to ``workdir``
      (e.g. to commit them).

  Returns:
    One dict per round ``r``: ``density`` and ``sparsity`` over the prunable set,
    ``g_kernel_density`` over all of G's kernels, and for ``r >= 1`` the
    ``spearman_theta0`` and ``overlap_theta0`` of the pruning that made the round's masks.
  """
  if rank not in RANKS:
    raise ValueError(f"rank must be one of {RANKS} ('raw' is the reference), got {rank!r}.")
  layers = tuple(layers)
  workdir.mkdir(parents=True, exist_ok=True)
  runs_dir = workdir if runs_dir is None else runs_dir
  base = (
    round_config if round_config is not None else base_config(fraction, width, round_steps, seed)
  )
  cfg = ml_collections.ConfigDict(base.to_dict())
  cfg.eval_samples = 0
  run = run_setup.build_run(cfg)
  theta0 = jax.device_get(run.init_state(jax.random.PRNGKey(seed)).g.params)
  masks = lottery.dense_masks(theta0, layers=layers)
  settings = dict(
    fraction=fraction,
    round_steps=round_steps,
    seed=seed,
    width=width,
    rank=rank,
    layers=list(layers),
    rate=RATE,
  )
  if round_config is not None:
    settings['round_config'] = json.loads(round_config.to_json_best_effort())
  _check_resume(workdir, settings)
  report = []
  for r in range(rounds + 1):
    path = ticket_path(workdir, r)
    if path.exists():
      with np.load(path) as f:
        masks = lottery.masks_from_arrays({k: f[k] for k in f.files}, theta0)
    else:
      np.savez_compressed(path, **lottery.masks_to_arrays(masks))
    density = float(sparse.global_density(masks))
    row = {
      'round': r,
      'density': density,
      'sparsity': 1.0 - density,
      'g_kernel_density': lottery.kernel_density(theta0, masks),
    }
    line = f'round {r}: G density {density:.4f} (1 - 0.8^r = {0.8**r:.4f}), '
    line += f'{row["g_kernel_density"]:.4f} of all G kernels'
    if r > 0:
      agreement = json.loads(agreement_path(workdir, r).read_text())
      row.update(spearman_theta0=agreement['spearman'], overlap_theta0=agreement['overlap'])
      line += (
        f'; |theta0| vs trained: Spearman {agreement["spearman"]:.3f}, '
        f'pruned-set overlap {agreement["overlap"]:.3f}'
      )
    report.append(row)
    print(line, flush=True)
    if r == rounds or ticket_path(workdir, r + 1).exists():
      continue
    cfg_r = ml_collections.ConfigDict(cfg.to_dict())
    cfg_r.lottery.ticket = str(path)
    state = train.train_and_evaluate(cfg_r, runs_dir / f'round{r}')
    trained = jax.device_get(state.g.params if rank == 'raw' else state.ema_params)
    agreement = lottery.init_agreement(theta0, trained, masks, rate=RATE)
    agreement_path(workdir, r + 1).write_text(json.dumps(agreement))
    masks = lottery.imp_round(trained, masks, rate=RATE, scope='global')
    np.savez_compressed(ticket_path(workdir, r + 1), **lottery.masks_to_arrays(masks))
    if on_round is not None:
      on_round(
        [workdir / 'search.json', path, agreement_path(workdir, r + 1), ticket_path(workdir, r + 1)]
      )
  (workdir / 'tickets.json').write_text(json.dumps(report, indent=2))
  return report


def main(argv=None) -> list[dict]:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--config-fraction', type=float, default=0.1)
  ap.add_argument('--rounds', type=int, default=9)
  ap.add_argument('--round-steps', type=int, default=200)
  ap.add_argument('--seed', type=int, default=0)
  ap.add_argument('--width', type=int, default=32)
  ap.add_argument('--rank', choices=RANKS, default='raw', help='G whose magnitudes rank pruning')
  ap.add_argument(
    '--layers',
    default='conv',
    help=f'comma-separated prunable kinds of {lottery.LAYER_KINDS} (reference: conv)',
  )
  ap.add_argument('--workdir', default='runs/lottery_mnist')
  args = ap.parse_args(argv)
  return search(
    args.config_fraction,
    args.rounds,
    args.round_steps,
    args.seed,
    args.width,
    Path(args.workdir) / f'seed{args.seed}',
    rank=args.rank,
    layers=tuple(k for k in args.layers.split(',') if k),
  )


if __name__ == '__main__':
  main()
