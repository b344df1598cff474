"""What a run leaves in its work directory: metric logs, sample grids, plots.

* ``metrics.jsonl``: one JSON object per logged step (``{"step": ..., name: value}``);
* TensorBoard event files (written with tensorboardX, no TensorFlow needed);
* ``samples/step_0000500.png``: image grids from fixed latents;
* ``plots/*.png``: curves of every logged scalar at the end of the run.

Only the process that should write (process 0 of a multi-host run) gets an
active writer; the others get one that does nothing.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np


class MetricWriter:
  """Appends scalars to ``metrics.jsonl`` and TensorBoard events.

  Args:
    workdir: the run directory.
    active: write (process 0) or do nothing.
  """

  def __init__(self, workdir: str | Path, *, active: bool = True):
    self.workdir = Path(workdir)
    self.active = active
    self._tb = None
    if active:
      self.workdir.mkdir(parents=True, exist_ok=True)
      from tensorboardX import SummaryWriter  # imported here: only the writing process needs it

      self._tb = SummaryWriter(str(self.workdir / 'tensorboard'))

  def write_scalars(self, step: int, scalars: dict) -> None:
    if not self.active:
      return
    clean = {k: float(v) for k, v in scalars.items()}
    with open(self.workdir / 'metrics.jsonl', 'a') as f:
      f.write(json.dumps({'step': int(step), **clean}) + '\n')
    for name, value in clean.items():
      self._tb.add_scalar(name, value, int(step))
    self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


LOG_FILES = ('metrics.jsonl', 'eval_log.jsonl')


def truncate_log(workdir: str | Path, last_step: int) -> None:
  """Drops the rows after ``last_step`` from the run's logs (:data:`LOG_FILES`).

  Rows a killed session logged past its last checkpoint (all of them when it
  was killed before its first checkpoint, ``last_step=0``), so a resumed run's
  logs have each step once. A torn last line (a kill mid-write) is dropped too.
  """
  for name in LOG_FILES:
    path = Path(workdir) / name
    if not path.exists():
      continue
    kept = []
    for line in path.read_text().splitlines():
      try:
        if json.loads(line)['step'] <= last_step:
          kept.append(line)
      except (ValueError, KeyError, TypeError):
        continue
    path.write_text(''.join(line + '\n' for line in kept))


def image_grid(images: np.ndarray, ncols: int | None = None) -> np.ndarray:
  """Tiles ``[N, H, W, C]`` images in [-1, 1] into one uint8 ``[rows*H, cols*W, C]``."""
  images = np.asarray(images, np.float32)
  if images.ndim != 4:
    raise ValueError(f'image_grid expects [N, H, W, C], got shape {images.shape}.')
  n, h, w, c = images.shape
  ncols = ncols or int(math.ceil(math.sqrt(n)))
  nrows = int(math.ceil(n / ncols))
  grid = np.full((nrows * (h + 1) + 1, ncols * (w + 1) + 1, c), 0.0, np.float32)
  for i in range(n):
    r, col = divmod(i, ncols)
    grid[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + col * (w + 1) : 1 + col * (w + 1) + w] = images[
      i
    ]
  return np.round((np.clip(grid, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def save_image_grid(path: str | Path, images: np.ndarray, ncols: int | None = None) -> None:
  """Writes a PNG grid of ``[N, H, W, C]`` images in [-1, 1]."""
  from PIL import Image

  grid = image_grid(images, ncols)
  if grid.shape[-1] == 1:
    grid = grid[..., 0]
  Path(path).parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(grid).save(path)


def save_points_plot(
  path: str | Path, points: np.ndarray, reference: np.ndarray | None = None
) -> None:
  """Scatter plot of 2-D samples (toy mixtures), optionally over reference points."""
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(4, 4))
  if reference is not None:
    ax.scatter(reference[:, 0], reference[:, 1], s=2, c='tab:gray', alpha=0.3, label='data')
  ax.scatter(points[:, 0], points[:, 1], s=2, c='tab:red', alpha=0.6, label='G')
  ax.set_aspect('equal')
  ax.legend(loc='upper right', fontsize=7)
  Path(path).parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=100, bbox_inches='tight')
  plt.close(fig)


def plot_metrics(workdir: str | Path) -> list[Path]:
  """Plots every scalar of ``metrics.jsonl`` against step into ``plots/``."""
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  workdir = Path(workdir)
  path = workdir / 'metrics.jsonl'
  if not path.exists():
    return []
  series: dict[str, list[tuple[int, float]]] = defaultdict(list)
  for line in path.read_text().splitlines():
    if not line.strip():
      continue
    row = json.loads(line)
    for k, v in row.items():
      if k != 'step':
        series[k].append((row['step'], v))
  groups: dict[str, list[str]] = defaultdict(list)
  for name in series:
    groups[name.split('/')[0] if '/' in name else 'losses'].append(name)
  out = []
  (workdir / 'plots').mkdir(exist_ok=True)
  for group, names in sorted(groups.items()):
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name in sorted(names):
      xs, ys = zip(*series[name])
      ax.plot(xs, ys, label=name, lw=1)
    ax.set_xlabel('step')
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    target = workdir / 'plots' / f'{group}.png'
    fig.savefig(target, dpi=100, bbox_inches='tight')
    plt.close(fig)
    out.append(target)
  return out
