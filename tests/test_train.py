"""The training program end to end: launcher, resume after SIGKILL, divergence stop."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import chex
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


def toy(steps, checkpoint_every, **fields):
  cfg = toy2d.get_config()
  cfg.num_steps, cfg.checkpoint_every = steps, checkpoint_every
  cfg.eval_samples, cfg.sample_every, cfg.log_every, cfg.toy_points = 0, 0, 1, 2048
  cfg.keep_checkpoints = 10
  cfg.update(fields)
  return cfg


def restore_step(workdir, cfg, step=None):
  import jax

  run = train.run_setup.build_run(cfg)
  ck = checkpoint.RunCheckpointer(workdir)
  out = ck.restore(run.init_state(jax.random.PRNGKey(cfg.seed)), step=step)
  ck.close()
  return out


def assert_same(a, b):
  import jax

  for x, y in zip(jax.tree.leaves(jax.device_get(a)), jax.tree.leaves(jax.device_get(b))):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_damaged_final_checkpoint_is_trained_and_saved_again(tmp_path):
  """Issue 20, fix 2: orbax's should_save declined to overwrite the unreadable final step."""
  whole = train.train_and_evaluate(toy(10, 5), tmp_path / 'whole')
  train.train_and_evaluate(toy(10, 5), tmp_path / 'run')
  for f in (tmp_path / 'run' / 'checkpoints' / '10' / 'state').rglob('*'):
    if f.is_file():
      f.write_bytes(b'')
  train.train_and_evaluate(toy(10, 5), tmp_path / 'run')
  state, _, _, step = restore_step(tmp_path / 'run', toy(10, 5))
  assert step == 10
  assert_same(state, whole)
  assert (tmp_path / 'run' / checkpoint.UNREADABLE_DIR / '10').is_dir()
  rows = [
    json.loads(x)['step'] for x in (tmp_path / 'run' / 'metrics.jsonl').read_text().splitlines()
  ]
  assert rows == list(range(1, 11))


class NaNBatchAt:
  """Batches whose ``at``-th batch of this session (1-based) is all NaN."""

  def __init__(self, inner, at):
    self.inner, self.at, self.calls = inner, at, 0

  def next(self):
    self.calls += 1
    batch = self.inner.next()
    if self.calls == self.at:
      batch = {**batch, 'image': np.full_like(batch['image'], np.nan)}
    return batch

  def __getattr__(self, name):
    return getattr(self.inner, name)


def test_skip_nonfinite_updates_skips_the_update(tmp_path, monkeypatch):
  """Issue 20, fix 3: the loop raised on any non-finite loss whatever the flag said."""
  make = train.run_setup.Run.make_batches
  monkeypatch.setattr(
    train.run_setup.Run, 'make_batches', lambda self, **kw: NaNBatchAt(make(self, **kw), 2)
  )
  cfg = toy(3, 1, skip_nonfinite_updates=True)
  train.train_and_evaluate(cfg, tmp_path)
  before, after = restore_step(tmp_path, cfg, 1)[0], restore_step(tmp_path, cfg, 2)[0]
  assert_same(after.d.params, before.d.params)  # D saw the NaN reals: its update was skipped
  assert_same(after.d.opt_state.inner_state, before.d.opt_state.inner_state)
  assert int(after.d.opt_state.total_notfinite) == 1
  assert not np.array_equal(after.g.params['dense0']['kernel'], before.g.params['dense0']['kernel'])
  rows = {
    r['step']: r for r in map(json.loads, (tmp_path / 'metrics.jsonl').read_text().splitlines())
  }
  assert np.isnan(rows[2]['d_loss']) and rows[2]['nonfinite_skipped'] == 1
  assert rows[3]['nonfinite_skipped'] == 1 and np.isfinite(rows[3]['d_loss'])
  summary = json.loads((tmp_path / 'summary.json').read_text())
  assert summary['nonfinite_skipped_this_session'] == 1


def test_skip_nonfinite_updates_can_be_switched_when_resuming(tmp_path):
  """Issue 20, fix 3: apply_if_finite changes the optimizer state; resuming used to refuse it."""
  whole = train.train_and_evaluate(toy(6, 2), tmp_path / 'whole')
  train.train_and_evaluate(toy(2, 2), tmp_path / 'run')
  train.train_and_evaluate(toy(4, 2, skip_nonfinite_updates=True), tmp_path / 'run')
  resumed = train.train_and_evaluate(toy(6, 2), tmp_path / 'run')
  # apply_if_finite runs Adam inside a lax.cond, which XLA may fuse differently: ulps apart.
  chex.assert_trees_all_close(resumed.g.params, whole.g.params, rtol=1e-5, atol=1e-7)
  chex.assert_trees_all_close(resumed.d.params, whole.d.params, rtol=1e-5, atol=1e-7)


def test_fresh_run_that_diverges_says_no_checkpoint_was_saved(tmp_path):
  cfg = toy(6, 3)
  cfg.d_optimizer.lr = cfg.g_optimizer.lr = 1e30
  with pytest.raises(train.DivergenceError, match='No checkpoint was saved'):
    train.train_and_evaluate(cfg, tmp_path)
  assert not list((tmp_path / 'checkpoints').iterdir())


def test_guard_stops_an_explosion_and_keeps_the_best_checkpoint(tmp_path):
  """A learning rate of 1e6 stays finite for a while: the guard stops it on the norm."""
  cfg = toy(10, 5, eval_every=5, eval_samples=500, best_metric='modes_covered', best_mode='max')
  cfg.keep_checkpoints = 1
  train.train_and_evaluate(cfg, tmp_path)
  best = sorted(p.name for p in (tmp_path / 'best').iterdir() if p.name.isdigit())
  cfg.num_steps = 40
  cfg.d_optimizer.lr = cfg.g_optimizer.lr = 1e6
  cfg.guard.max_param_norm = 1e4
  cfg.allow_changes = 'd_optimizer.lr,g_optimizer.lr'
  with pytest.raises(
    train.DivergenceError, match=r'parameter norm .* above config.guard.max_param_norm=10000'
  ):
    train.train_and_evaluate(cfg, tmp_path)
  assert sorted(p.name for p in (tmp_path / 'best').iterdir() if p.name.isdigit()) == best
  state = restore_step(tmp_path, cfg)[0]
  import optax

  assert (
    float(optax.tree.norm(state.d.params)) <= 1e4 and float(optax.tree.norm(state.g.params)) <= 1e4
  )


def test_a_run_killed_before_its_first_checkpoint_logs_each_step_once(tmp_path):
  tmp_path.mkdir(exist_ok=True)
  torn = (
    ''.join(json.dumps({'step': s, 'd_loss': 1.0}) + '\n' for s in (1, 2, 3)) + '{"step": 4, "d_'
  )
  (tmp_path / 'metrics.jsonl').write_text(torn)  # a session killed during its first save
  train.train_and_evaluate(toy(4, 4), tmp_path)
  rows = [json.loads(x)['step'] for x in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert rows == [1, 2, 3, 4]


def test_resume_refuses_other_configs_unless_allowed(tmp_path):
  train.train_and_evaluate(toy(4, 2), tmp_path)
  for field, value in (('loss', 'hinge'), ('trainer', 'one_stage'), ('model', 'dcgan28')):
    with pytest.raises(ValueError, match=f"{field}: '.*' -> '{value}'.*allow_changes={field}"):
      train.train_and_evaluate(toy(6, 2, **{field: value}), tmp_path)
  with pytest.raises(ValueError, match=r'dat.enabled: False -> True.*allow_changes=dat.enabled'):
    cfg = toy(6, 2)
    cfg.dat.enabled = True
    train.train_and_evaluate(cfg, tmp_path)
  with pytest.raises(ValueError, match='num_steps=3 is invalid: .* checkpoint at step 4'):
    train.train_and_evaluate(toy(3, 2), tmp_path)
  cfg = toy(6, 2, loss='hinge', allow_changes='loss')  # listed: accepted, and stored
  assert int(train.train_and_evaluate(cfg, tmp_path).step) == 6
  assert int(train.train_and_evaluate(toy(8, 2, loss='hinge'), tmp_path).step) == 8


def test_resume_refuses_a_new_length_under_a_learning_rate_decay(tmp_path):
  train.train_and_evaluate(toy(4, 2), tmp_path / 'constant')
  assert int(train.train_and_evaluate(toy(6, 2), tmp_path / 'constant').step) == 6
  decaying = toy(4, 2)
  decaying.d_optimizer.schedule = 'linear_decay'
  train.train_and_evaluate(decaying, tmp_path / 'decay')
  decaying.num_steps = 6  # the decay would restart from a higher learning rate
  with pytest.raises(ValueError, match=r'num_steps: 4 -> 6.*allow_changes=num_steps'):
    train.train_and_evaluate(decaying, tmp_path / 'decay')


def test_dry_run_builds_and_runs_one_step_and_writes_nothing(tmp_path):
  state = train.train_and_evaluate(toy(4, 2, dry_run=True), tmp_path / 'new')
  assert int(state.step) == 1 and not (tmp_path / 'new').exists()
  train.train_and_evaluate(toy(4, 2), tmp_path / 'run')
  before = sorted(str(p) for p in (tmp_path / 'run').rglob('*'))
  assert int(train.train_and_evaluate(toy(6, 2, dry_run=True), tmp_path / 'run').step) == 5
  assert sorted(str(p) for p in (tmp_path / 'run').rglob('*')) == before
  cfg = toy(6, 2, dry_run=True, allow_changes='model_kwargs')
  cfg.model_kwargs.hidden = (8, 8, 8)
  with pytest.raises(checkpoint.CheckpointMismatchError, match='dense0'):
    train.train_and_evaluate(cfg, tmp_path / 'run')
