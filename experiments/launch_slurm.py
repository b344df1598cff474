"""Writes (and with ``--submit`` submits) the sbatch script of a multi-host training run.

  python -m experiments.launch_slurm --nodes 2 --gpus-per-node 4 -- \\
      --config experiments/configs/ssgan.py:cifar10 --workdir /shared/runs/ssgan

Every task runs the same command, ``python -m experiments.main ...
--config.distributed=True``, from this checkout; ``jax.distributed.initialize()``
reads the rest from the variables ``srun`` sets (see docs/CLUSTER.md):

* ``--per gpu`` (the default on GPU nodes): one task per GPU; JAX gives task
  ``SLURM_LOCALID`` the GPU of that index.
* ``--per node`` (the default, and the only choice, on CPU nodes): one task
  per node; on GPU nodes the script sets ``JAX_LOCAL_DEVICE_IDS`` so that the
  task drives all of the node's GPUs.

The work directory must be on a filesystem every node sees; the run writes
its checkpoints there, so resubmitting the same script (or ``--requeue`` after
a node failure) continues from the latest one. The script is written next to
the current directory (``--script``) and printed; nothing runs until it is
submitted.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _value(train_args: list[str], flag: str) -> str | None:
  """The value of ``--flag value`` or ``--flag=value`` in the training arguments."""
  for i, arg in enumerate(train_args):
    if arg == flag and i + 1 < len(train_args):
      return train_args[i + 1]
    if arg.startswith(flag + '='):
      return arg.split('=', 1)[1]
  return None


def _without(train_args: list[str], flag: str) -> list[str]:
  """The training arguments without ``--flag value`` / ``--flag=value``."""
  out, i = [], 0
  while i < len(train_args):
    if train_args[i] == flag:
      i += 2
      continue
    if not train_args[i].startswith(flag + '='):
      out.append(train_args[i])
    i += 1
  return out


def training_command(python: str, train_args: list[str]) -> list[str]:
  """``python -m experiments.main ARGS --config.distributed=True``, the workdir made absolute."""
  for flag in ('--config', '--workdir'):
    if _value(train_args, flag) is None:
      raise ValueError(
        f'the training arguments need {flag}: put them after "--", e.g. '
        '-- --config experiments/configs/quickstart.py --workdir /shared/runs/quickstart'
      )
  workdir = Path(_value(train_args, '--workdir')).absolute()  # tasks start in the checkout
  args = _without(_without(train_args, '--workdir'), '--config.distributed')
  return [
    python,
    '-m',
    'experiments.main',
    *args,
    f'--workdir={workdir}',
    '--config.distributed=True',
  ]


def sbatch_script(
  train_args: list[str],
  *,
  nodes: int,
  gpus_per_node: int,
  per: str | None = None,
  job_name: str = 'jaxgan',
  time: str = '24:00:00',
  partition: str = '',
  account: str = '',
  cpus_per_task: int = 0,
  requeue: bool = False,
  python: str = sys.executable,
) -> str:
  """The sbatch script's text; see the module docstring for the options.

  Raises:
    ValueError: a bad option, or training arguments without ``--config`` or
      ``--workdir``.
  """
  if nodes < 1:
    raise ValueError(f'--nodes must be at least 1; got {nodes}.')
  if gpus_per_node < 0:
    raise ValueError(f'--gpus-per-node must be >= 0 (0: CPU nodes); got {gpus_per_node}.')
  per = per or ('gpu' if gpus_per_node else 'node')
  if per not in ('gpu', 'node'):
    raise ValueError(f"--per must be 'gpu' or 'node'; got {per!r}.")
  if per == 'gpu' and not gpus_per_node:
    raise ValueError('--per gpu needs --gpus-per-node >= 1; on CPU nodes use --per node.')
  tasks_per_node = gpus_per_node if per == 'gpu' else 1
  command = training_command(python, train_args)
  lines = [
    '#!/bin/bash',
    f'# Written by: python -m experiments.launch_slurm ({nodes} nodes, one task per {per}).',
    f'#SBATCH --job-name={job_name}',
    f'#SBATCH --nodes={nodes}',
    f'#SBATCH --ntasks-per-node={tasks_per_node}',
    f'#SBATCH --time={time}',
  ]
  if gpus_per_node:
    lines.append(f'#SBATCH --gpus-per-node={gpus_per_node}')
  if cpus_per_task:
    lines.append(f'#SBATCH --cpus-per-task={cpus_per_task}')
  if partition:
    lines.append(f'#SBATCH --partition={partition}')
  if account:
    lines.append(f'#SBATCH --account={account}')
  if requeue:
    lines.append('#SBATCH --requeue')
  lines += ['', 'set -euo pipefail', f'cd {shlex.quote(str(ROOT))}']
  if not gpus_per_node:
    lines.append('export JAX_PLATFORMS=cpu')
  elif per == 'node':
    devices = ','.join(str(i) for i in range(gpus_per_node))
    lines.append(f'export JAX_LOCAL_DEVICE_IDS={devices}  # each task drives every GPU of its node')
  lines += [
    '# jax.distributed.initialize() reads SLURM_JOB_ID, SLURM_STEP_NODELIST, SLURM_NTASKS,',
    '# SLURM_PROCID and SLURM_LOCALID, which srun sets for every task.',
    f'srun --kill-on-bad-exit=1 {shlex.join(command)}',
    '',
  ]
  return '\n'.join(lines)


def main(argv: list[str] | None = None) -> Path:
  argv = sys.argv[1:] if argv is None else argv
  split = argv.index('--') if '--' in argv else len(argv)
  ours, train_args = argv[:split], argv[split + 1 :]
  parser = argparse.ArgumentParser(
    description=__doc__.splitlines()[0], usage='%(prog)s [options] -- TRAINING ARGUMENTS'
  )
  parser.add_argument('--nodes', type=int, required=True)
  parser.add_argument('--gpus-per-node', type=int, default=0, help='0: CPU nodes')
  parser.add_argument('--per', choices=('gpu', 'node'), help='one task per GPU or per node')
  parser.add_argument('--job-name', default='jaxgan')
  parser.add_argument('--time', default='24:00:00')
  parser.add_argument('--partition', default='')
  parser.add_argument('--account', default='')
  parser.add_argument('--cpus-per-task', type=int, default=0)
  parser.add_argument('--requeue', action='store_true', help='requeue after a node failure')
  parser.add_argument('--python', default=sys.executable, help='the Python every task runs')
  parser.add_argument('--script', default='', help='where to write it (default: JOB_NAME.sbatch)')
  parser.add_argument('--submit', action='store_true', help='run sbatch on the written script')
  args = parser.parse_args(ours)
  try:
    text = sbatch_script(
      train_args,
      nodes=args.nodes,
      gpus_per_node=args.gpus_per_node,
      per=args.per,
      job_name=args.job_name,
      time=args.time,
      partition=args.partition,
      account=args.account,
      cpus_per_task=args.cpus_per_task,
      requeue=args.requeue,
      python=args.python,
    )
  except ValueError as e:
    parser.error(str(e))
  path = Path(args.script or f'{args.job_name}.sbatch')
  path.write_text(text)
  print(f'wrote {path}')
  if args.submit:
    if shutil.which('sbatch') is None:
      sys.exit(f'sbatch is not on PATH: submit {path} from a SLURM login node (sbatch {path}).')
    subprocess.run(['sbatch', str(path)], check=True)
  return path


if __name__ == '__main__':
  main()
