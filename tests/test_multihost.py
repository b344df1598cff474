"""Multi-process runs on localhost (CPU, gloo collectives), as a cluster would start them.

Every process runs the same training command with ``--config.distributed=True``.
One test runs the SLURM launcher's script with a stand-in ``srun`` that sets the
variables ``jax.distributed.initialize`` reads on SLURM; the others set
``JAXGAN_COORDINATOR_ADDRESS``, ``JAXGAN_NUM_PROCESSES`` and ``JAXGAN_PROCESS_ID``.
Forced host devices make each process feed several devices.
"""

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from test_train import ROOT, TOY, launcher  # the training command line

from experiments import launch_slurm
from experiments.configs import toy2d
from jaxgan import checkpoint, run_setup

SMALL = {
  'num_steps': 30,
  'checkpoint_every': 5,
  'eval_samples': 0,
  'sample_every': 0,
  'log_every': 5,
  'toy_points': 2048,
  'batch_size': 64,
}


def free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def command(workdir, distributed: bool):
  overrides = [f'--config.{k}={v}' for k, v in SMALL.items()]
  return launcher(workdir, *overrides, *(['--config.distributed=True'] if distributed else []))


def env_for(devices: int, process_id: int | None = None, processes: int = 1, port: int = 0):
  flags = f'{os.environ.get("XLA_FLAGS", "")} --xla_force_host_platform_device_count={devices}'
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=flags.strip())
  if process_id is not None:
    env.update(
      JAXGAN_COORDINATOR_ADDRESS=f'127.0.0.1:{port}',
      JAXGAN_NUM_PROCESSES=str(processes),
      JAXGAN_PROCESS_ID=str(process_id),
    )
  return env


def start_processes(workdir, processes: int = 2, devices: int = 2):
  """The same command in ``processes`` processes of ``devices`` devices each."""
  port = free_port()
  return [
    subprocess.Popen(
      command(workdir, distributed=True),
      cwd=ROOT,
      env=env_for(devices, pid, processes, port),
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for pid in range(processes)
  ]


def finish(procs, timeout=900):
  outs = [p.communicate(timeout=timeout) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-4000:]


def checkpoint_steps(workdir):
  return sorted(int(d.name) for d in (workdir / 'checkpoints').glob('[0-9]*') if d.name.isdigit())


def final_params(workdir):
  config = toy2d.get_config()
  config.update(SMALL)
  run = run_setup.build_run(config)
  ckpt = checkpoint.RunCheckpointer(workdir)
  state, position, _, step = ckpt.restore(run.init_state(jax.random.PRNGKey(0)))
  ckpt.close()
  return step, position, state


def assert_same_params(a, b, rtol):
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b)
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=rtol)


FAKE_SRUN = """\
import os, subprocess, sys
# srun's part for a test on one machine: SLURM_NTASKS tasks of the command after srun's options,
# each with the variables srun sets (two "nodes" named localhost).
argv = sys.argv[1:]
command = argv[next(i for i, a in enumerate(argv) if not a.startswith('-')) :]
tasks = [
  subprocess.Popen(
    command,
    env=dict(os.environ, SLURM_PROCID=str(i), SLURM_LOCALID='0', SLURM_STEP_NODELIST='localhost'),
  )
  for i in range(int(os.environ['SLURM_NTASKS']))
]
sys.exit(max(t.wait() for t in tasks))
"""


def test_slurm_script_runs_two_processes_that_train_and_checkpoint(tmp_path):
  """The launcher's sbatch script, run as SLURM would on 2 CPU nodes of 2 devices each."""
  workdir = tmp_path / 'run'
  script = launch_slurm.main(
    [
      '--nodes=2',
      f'--script={tmp_path / "run.sbatch"}',
      '--',
      f'--config={TOY}',
      '--workdir',
      str(workdir),
      *[f'--config.{k}={v}' for k, v in SMALL.items()],
    ]
  )
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  (bin_dir / 'srun').write_text(f'#!{sys.executable}\n{FAKE_SRUN}')
  (bin_dir / 'srun').chmod(0o755)
  env = env_for(2)
  env.update(
    PATH=f'{bin_dir}:{env["PATH"]}',
    SLURM_JOB_ID='4242',
    SLURM_NTASKS='2',  # what sbatch sets for --nodes=2 --ntasks-per-node=1
    JAX_COORDINATOR_PORT=str(free_port()),  # instead of 61440 + SLURM_JOB_ID % 4096
  )
  out = subprocess.run(['bash', script], env=env, capture_output=True, text=True, timeout=900)
  assert out.returncode == 0, out.stderr[-4000:]
  assert checkpoint_steps(workdir) == [20, 25, 30]  # keep_checkpoints=3
  summary = json.loads((workdir / 'summary.json').read_text())
  assert summary['processes'] == 2 and summary['devices'] == 4 and summary['final_step'] == 30
  rows = [json.loads(x) for x in (workdir / 'metrics.jsonl').read_text().splitlines()]
  assert [r['step'] for r in rows] == [5, 10, 15, 20, 25, 30]  # written by process 0 only


@pytest.mark.parametrize(
  'options, tasks, gpus, local_ids',
  [
    (['--nodes=2', '--gpus-per-node=4'], 4, 4, None),
    (['--nodes=2', '--gpus-per-node=4', '--per=node'], 1, 4, '0,1,2,3'),
    (['--nodes=3'], 1, None, None),
  ],
)
def test_slurm_script_options(tmp_path, options, tasks, gpus, local_ids):
  path = launch_slurm.main(
    [*options, f'--script={tmp_path / "job.sbatch"}', '--']
    + ['--config', 'experiments/configs/quickstart.py', '--workdir=runs/q', '--config.seed=3']
  )
  text = path.read_text()
  assert subprocess.run(['bash', '-n', path]).returncode == 0
  assert f'#SBATCH --ntasks-per-node={tasks}\n' in text
  assert ('#SBATCH --gpus-per-node=' in text) == (gpus is not None)
  assert ('JAX_LOCAL_DEVICE_IDS' in text) == (local_ids is not None)
  if local_ids:
    assert f'export JAX_LOCAL_DEVICE_IDS={local_ids}' in text
  assert ('export JAX_PLATFORMS=cpu' in text) == (gpus is None)
  srun = shlex.split(text.split('\nsrun ', 1)[1].splitlines()[0])
  assert srun[1:] == [
    sys.executable,
    '-m',
    'experiments.main',
    '--config',
    'experiments/configs/quickstart.py',
    '--config.seed=3',
    f'--workdir={Path("runs/q").absolute()}',
    '--config.distributed=True',
  ]


@pytest.mark.parametrize(
  'argv, match',
  [
    (['--nodes=2', '--', '--workdir=w'], 'need --config'),
    (['--nodes=2', '--', '--config=c.py'], 'need --workdir'),
    (['--nodes=2', '--per=gpu', '--', '--config=c.py', '--workdir=w'], '--per gpu needs'),
    (['--nodes=0', '--', '--config=c.py', '--workdir=w'], '--nodes must be at least 1'),
  ],
)
def test_slurm_launcher_rejects_bad_options(tmp_path, capsys, argv, match):
  with pytest.raises(SystemExit):
    launch_slurm.main([*argv[:1], f'--script={tmp_path / "x.sbatch"}', *argv[1:]])
  assert match in capsys.readouterr().err
  assert not (tmp_path / 'x.sbatch').exists()


@pytest.mark.slow
def test_two_hosts_match_one_host_and_resume_after_one_is_killed(tmp_path):
  """2 processes x 2 devices end where 1 process x 4 devices ends, also across a SIGKILL."""
  single = tmp_path / 'single'
  subprocess.run(
    command(single, distributed=False),
    cwd=ROOT,
    env=env_for(4),
    check=True,
    capture_output=True,
    timeout=900,
  )
  multi = tmp_path / 'multi'
  finish(start_processes(multi))

  killed = tmp_path / 'killed'
  procs = start_processes(killed)
  deadline = time.time() + 900
  while len(checkpoint_steps(killed)) < 2 and time.time() < deadline:
    time.sleep(0.05)
  procs[1].send_signal(signal.SIGKILL)  # one host dies
  procs[1].wait()
  try:  # the other one stops at its next collective, or is stopped as a scheduler would
    procs[0].wait(timeout=60)
  except subprocess.TimeoutExpired:
    procs[0].send_signal(signal.SIGKILL)
    procs[0].wait()
  assert procs[0].returncode != 0
  assert 0 < checkpoint_steps(killed)[-1] < SMALL['num_steps'], 'the run ended before the kill'
  finish(start_processes(killed))  # both restarted with the same command

  summary = json.loads((killed / 'summary.json').read_text())
  assert summary['processes'] == 2 and summary['steps_this_session'] < SMALL['num_steps']
  step_1, position_1, one = final_params(single)
  for workdir in (multi, killed):
    step_2, position_2, two = final_params(workdir)
    assert step_1 == step_2 == SMALL['num_steps'] and position_1 == position_2
    assert_same_params(one, two, rtol=1e-4)
