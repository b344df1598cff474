"""A 2-process run on localhost (CPU, gloo collectives) trains and checkpoints."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOY = str(ROOT / 'experiments' / 'configs' / 'toy2d.py')


def free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_process_run_trains_and_checkpoints(tmp_path):
  port = free_port()
  procs = []
  for pid in (0, 1):
    env = dict(
      os.environ,
      JAX_PLATFORMS='cpu',
      JAXGAN_COORDINATOR_ADDRESS=f'127.0.0.1:{port}',
      JAXGAN_NUM_PROCESSES='2',
      JAXGAN_PROCESS_ID=str(pid),
    )
    cmd = [
      sys.executable,
      '-m',
      'experiments.main',
      f'--config={TOY}',
      f'--workdir={tmp_path}',
      '--config.distributed=True',
      '--config.num_steps=6',
      '--config.checkpoint_every=3',
      '--config.eval_samples=0',
      '--config.sample_every=0',
      '--config.log_every=3',
      '--config.toy_points=2048',
      '--config.batch_size=64',
    ]
    procs.append(
      subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
      )
    )
  outs = [p.communicate(timeout=900) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-4000:]
  assert sorted(int(d.name) for d in (tmp_path / 'checkpoints').glob('[0-9]*')) == [3, 6]
  summary = json.loads((tmp_path / 'summary.json').read_text())
  assert summary['processes'] == 2 and summary['final_step'] == 6
  rows = [json.loads(x) for x in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert [r['step'] for r in rows] == [3, 6]  # written by process 0 only
