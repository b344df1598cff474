"""One training process per work directory: the holder is named, a killed holder's lock is
taken over."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jaxgan.workdir_lock import LOCK_NAME, WorkdirBusyError, WorkdirLock

ROOT = Path(__file__).resolve().parents[1]
TOY = str(ROOT / 'experiments' / 'configs' / 'toy2d.py')
ENV = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=str(ROOT))


def holder_pid(workdir: Path) -> int | None:
  try:
    return json.loads((workdir / LOCK_NAME).read_text())['pid']
  except (OSError, ValueError, KeyError):
    return None


def wait_for_holder(workdir: Path, pid: int, timeout=300) -> None:
  deadline = time.time() + timeout
  while holder_pid(workdir) != pid:
    assert time.time() < deadline, 'the first process never took the lock'
    time.sleep(0.05)


def hold_lock(workdir: Path) -> subprocess.Popen:
  code = (
    'import sys, time; from jaxgan.workdir_lock import WorkdirLock; '
    f'lock = WorkdirLock({str(workdir)!r}); lock.acquire(); time.sleep(600)'
  )
  proc = subprocess.Popen([sys.executable, '-c', code], cwd=ROOT, env=ENV)
  wait_for_holder(workdir, proc.pid)
  return proc


def test_a_second_process_is_refused_and_a_killed_holders_lock_is_taken_over(tmp_path):
  proc = hold_lock(tmp_path)
  try:
    with pytest.raises(WorkdirBusyError) as err:
      WorkdirLock(tmp_path).acquire()
    message = str(err.value)
    assert f'pid {proc.pid} on host {socket.gethostname()}' in message
    assert str(tmp_path) in message and 'another --workdir' in message
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  with WorkdirLock(tmp_path):  # the kernel released the killed process's lock
    assert holder_pid(tmp_path) == os.getpid()
  with WorkdirLock(tmp_path):  # released on exit, so taken again
    pass


def train_cmd(workdir, steps):
  return [
    sys.executable,
    '-m',
    'experiments.main',
    f'--config={TOY}',
    f'--workdir={workdir}',
    f'--config.num_steps={steps}',
    f'--config.checkpoint_every={steps}',
    f'--config.log_every={steps}',
    '--config.eval_samples=0',
    '--config.sample_every=0',
    '--config.toy_points=2048',
  ]


def test_two_training_processes_on_one_workdir(tmp_path):
  """The second is refused naming the first; after the first is killed, a rerun trains."""
  first = subprocess.Popen(
    train_cmd(tmp_path, 10**8), cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
  )
  try:
    wait_for_holder(tmp_path, first.pid)
    second = subprocess.run(
      train_cmd(tmp_path, 4), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600
    )
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f'is in use by pid {first.pid} on host' in lines[0]
    assert first.poll() is None
  finally:
    first.send_signal(signal.SIGKILL)
    first.wait()
  third = subprocess.run(
    train_cmd(tmp_path, 4), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600
  )
  assert third.returncode == 0, third.stderr[-2000:]
  assert json.loads((tmp_path / 'summary.json').read_text())['final_step'] == 4
