"""The training program end to end: launcher, resume after SIGKILL, divergence stop."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from experiments.configs import default, toy2d
from jaxgan import checkpoint, train

ROOT = Path(__file__).resolve().parents[1]
TOY = str(ROOT / 'experiments' / 'configs' / 'toy2d.py')


def launcher(workdir, *overrides):
  return [
    sys.executable,
    '-m',
    'experiments.main',
    f'--config={TOY}',
    f'--workdir={workdir}',
    *overrides,
  ]


def final_params(workdir):
  cfg = toy2d.get_config()
  run = train.run_setup.build_run(cfg)
  ck = checkpoint.RunCheckpointer(workdir)
  state, _, _, step = ck.restore(run.init_state(__import__('jax').random.PRNGKey(0)))
  ck.close()
  return step, state


SMALL = [
  '--config.num_steps=40',
  '--config.checkpoint_every=5',
  '--config.eval_samples=0',
  '--config.sample_every=0',
  '--config.log_every=5',
  '--config.toy_points=4096',
  '--config.batch_size=64',
]


def test_resume_after_sigkill_is_bit_identical(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  whole = tmp_path / 'whole'
  subprocess.run(
    launcher(whole, *SMALL), cwd=ROOT, env=env, check=True, capture_output=True, timeout=600
  )
  killed = tmp_path / 'killed'
  proc = subprocess.Popen(
    launcher(killed, *SMALL),
    cwd=ROOT,
    env=env,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  deadline = time.time() + 600
  while time.time() < deadline:  # kill it somewhere after its second checkpoint
    if len([p for p in (killed / 'checkpoints').glob('[0-9]*')]) >= 2:
      break
    time.sleep(0.05)
  time.sleep(0.3)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  rows = [json.loads(x) for x in (killed / 'metrics.jsonl').read_text().splitlines()]
  assert rows and rows[-1]['step'] < 40, 'the run finished before it could be killed'
  subprocess.run(
    launcher(killed, *SMALL), cwd=ROOT, env=env, check=True, capture_output=True, timeout=600
  )
  step_a, a = final_params(whole)
  step_b, b = final_params(killed)
  assert step_a == step_b == 40
  import jax

  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  steps_logged = [
    json.loads(x)['step'] for x in (killed / 'metrics.jsonl').read_text().splitlines()
  ]
  assert steps_logged == sorted(set(steps_logged)), 'resumed log repeats steps'


def test_overrides_mismatch_and_outputs(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  wd = tmp_path / 'run'
  out = subprocess.run(
    launcher(
      wd,
      *SMALL,
      '--config.num_steps=10',
      '--config.g_optimizer.lr=0.0005',
      '--config.sample_every=10',
      '--config.eval_samples=500',
    ),
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  cfg = json.loads((wd / 'config.json').read_text())
  assert cfg['g_optimizer']['lr'] == 0.0005 and cfg['num_steps'] == 10
  for name in (
    'metrics.jsonl',
    'summary.json',
    'samples/step_0000010.png',
    'plots/losses.png',
    'eval_log.jsonl',
  ):
    assert (wd / name).exists(), name
  assert list((wd / 'tensorboard').glob('events.out.tfevents.*'))
  # The standalone evaluation scores the latest checkpoint, with its protocol.
  from experiments.evaluate import evaluate_workdir

  scores = evaluate_workdir(wd, samples=300)
  saved = json.loads((wd / 'eval.json').read_text())
  assert saved['step'] == 10 and saved['protocol']['n_fake'] == 300
  assert 0 <= scores['modes_covered'] <= 25
  # A different model width in the same workdir is refused, naming the difference, even when
  # allowed as a config change.
  out = subprocess.run(
    launcher(
      wd,
      *SMALL,
      '--config.model_kwargs.hidden=(64,64,64)',
      '--config.allow_changes=model_kwargs,g_optimizer.lr',
    ),
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert out.returncode != 0 and 'does not match the state' in out.stderr and 'dense0' in out.stderr
  # A bad value fails before any work, naming the fix.
  out = subprocess.run(
    launcher(tmp_path / 'bad', '--config.trainer=three_stage'),
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert out.returncode != 0 and "config.trainer='three_stage' is invalid" in out.stderr
  assert not (tmp_path / 'bad' / 'checkpoints').exists()


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path):
  cfg = toy2d.get_config()
  cfg.num_steps, cfg.checkpoint_every, cfg.eval_samples, cfg.sample_every, cfg.toy_points = (
    6,
    3,
    0,
    0,
    4096,
  )
  train.train_and_evaluate(cfg, tmp_path)
  good = sorted(int(p.name) for p in (tmp_path / 'checkpoints').glob('[0-9]*'))
  cfg.num_steps = 20
  cfg.d_optimizer.lr = 1e30
  cfg.g_optimizer.lr = 1e30
  cfg.allow_changes = 'd_optimizer.lr,g_optimizer.lr'
  with pytest.raises(train.DivergenceError, match='last good checkpoint'):
    train.train_and_evaluate(cfg, tmp_path)
  assert sorted(int(p.name) for p in (tmp_path / 'checkpoints').glob('[0-9]*')) == good


def test_quickstart_config_is_valid():
  from experiments.configs import quickstart

  train.run_setup.validate_config(quickstart.get_config())
  train.run_setup.validate_config(default.get_config())


def test_bfloat16_compute_keeps_float32_params():
  import jax
  import jax.numpy as jnp

  cfg = toy2d.get_config()
  cfg.precision, cfg.toy_points, cfg.eval_samples = 'bfloat16', 1024, 0
  run = train.run_setup.build_run(cfg)
  assert run.g_module.dtype == jnp.bfloat16 and run.d_module.dtype == jnp.bfloat16
  state = run.init_state(jax.random.PRNGKey(0))
  assert {x.dtype for x in jax.tree.leaves(state.g.params)} == {jnp.dtype('float32')}
  assert {
    x.dtype for x in jax.tree.leaves(state.d.opt_state) if jnp.issubdtype(x.dtype, jnp.floating)
  } == {jnp.dtype('float32')}
  with pytest.raises(ValueError, match="config.precision='float16' is invalid"):
    cfg.precision = 'float16'
    train.run_setup.validate_config(cfg)


def test_quickstart_on_embedded_mnist_writes_everything_and_resumes(tmp_path, monkeypatch):
  """As the README runs it: a relative workdir (orbax itself needs absolute paths)."""
  from experiments.configs import quickstart

  monkeypatch.chdir(tmp_path)
  rel = Path('runs/quickstart')

  cfg = quickstart.get_config()
  cfg.num_steps, cfg.checkpoint_every, cfg.sample_every, cfg.log_every = 2, 2, 2, 1
  cfg.eval_samples, cfg.batch_size = 0, 16
  cfg.model_kwargs.width = 8
  train.train_and_evaluate(cfg, rel)
  for name in (
    'metrics.jsonl',
    'summary.json',
    'samples/step_0000002.png',
    'plots/losses.png',
    'checkpoints/2',
  ):
    assert (rel / name).exists(), name
  assert list((rel / 'tensorboard').glob('events.out.tfevents.*'))
  cfg.num_steps = 3
  state = train.train_and_evaluate(cfg, rel)
  assert int(state.step) == 3
  assert json.loads((rel / 'summary.json').read_text())['steps_this_session'] == 1
