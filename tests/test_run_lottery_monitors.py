"""The training program's lottery-ticket runs, D-gradient monitor and timed evaluations,
and the drivers built on them (experiments.lottery_mnist, benchmarks); experiments.reproduce
is tested in tests/test_reproduce.py."""

import json

import chex
import jax
import numpy as np
import pytest

from experiments import benchmarks, lottery_mnist
from experiments.configs import default, toy2d
from jaxgan import run_setup, sparse, train
from jaxgan.sparse import lottery
from jaxgan.sparse._masks import leaves_with_paths


def tiny_mnist(steps=3):
  c = lottery_mnist.base_config(0.1, 8, steps, seed=0)
  c.batch_size = 16
  c.eval_samples = 0
  c.sample_every = 0
  c.log_every = 1
  return c


def random_ticket(tmp_path, params, density=0.3):
  masks = lottery.dense_masks(params)
  rng = np.random.default_rng(0)
  masks = jax.tree.map(lambda m: jax.numpy.asarray(rng.random(m.shape) < density), masks)
  path = tmp_path / 'ticket.npz'
  np.savez(path, **lottery.masks_to_arrays(masks))
  return path, masks


def test_ticket_run_starts_rewound_and_keeps_pruned_weights_zero(tmp_path):
  cfg = tiny_mnist()
  theta0 = run_setup.build_run(cfg).init_state(jax.random.PRNGKey(0)).g.params
  path, masks = random_ticket(tmp_path, theta0)
  cfg.lottery.ticket = str(path)
  cfg.g_optimizer.weight_decay = 0.1  # decoupled decay must not revive pruned weights
  run = run_setup.build_run(cfg)
  start = run.init_state(jax.random.PRNGKey(0))
  chex.assert_trees_all_equal(start.g.params, lottery.rewind(theta0, masks))
  state = train.train_and_evaluate(cfg, tmp_path / 'run')
  assert int(state.step) == 3
  saved = lottery.masks_to_arrays(masks)
  for tree in (state.g.params, state.ema_params):
    pruned = [np.asarray(w)[~saved[name]] for name, w in leaves_with_paths(tree) if name in saved]
    assert len(pruned) == len(saved) and all(np.all(x == 0.0) for x in pruned)
  moved = jax.tree.map(lambda a, b: bool(np.any(a != b)), state.g.params, start.g.params)
  assert any(jax.tree.leaves(moved))


def test_ticket_config_errors(tmp_path):
  cfg = tiny_mnist()
  cfg.lottery.ticket = str(tmp_path / 'missing.npz')
  with pytest.raises(ValueError, match='lottery.ticket'):
    run_setup.validate_config(cfg)
  (tmp_path / 'missing.npz').write_bytes(b'')
  cfg.sparse.enabled = True
  with pytest.raises(ValueError, match='sparse.enabled=False'):
    run_setup.validate_config(cfg)


def test_imp_search_prunes_twenty_percent_and_is_reused(tmp_path):
  report = lottery_mnist.search(0.1, 1, 2, seed=0, width=8, workdir=tmp_path)
  theta0 = run_setup.build_run(tiny_mnist()).init_state(jax.random.PRNGKey(0)).g.params
  n0 = sparse.count_alive(lottery.dense_masks(theta0))
  alive = lottery.expected_alive(int(n0), 1)
  np.testing.assert_allclose([r['density'] for r in report], np.asarray(alive) / alive[0])
  with np.load(lottery_mnist.ticket_path(tmp_path, 1)) as f:
    pruned = lottery.masks_from_arrays({k: f[k] for k in f.files}, theta0)
  assert lottery.is_nested(pruned, lottery.dense_masks(theta0))
  # A finished search is reused, not rerun (a rerun would need the round's run directory).
  (tmp_path / 'round0' / 'summary.json').unlink()
  assert lottery_mnist.search(0.1, 1, 2, seed=0, width=8, workdir=tmp_path) == report
  assert not (tmp_path / 'round0' / 'summary.json').exists()


def test_lipschitz_monitor_and_timed_evaluations(tmp_path):
  cfg = toy2d.get_config()
  cfg.num_steps, cfg.log_every, cfg.eval_every, cfg.eval_samples = 4, 2, 2, 256
  cfg.toy_points, cfg.batch_size, cfg.sample_every = 1024, 32, 0
  cfg.monitor_lipschitz = True
  train.train_and_evaluate(cfg, tmp_path)
  rows = [json.loads(x) for x in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  logged = [r for r in rows if 'd_loss' in r]
  assert [r['step'] for r in logged] == [2, 4]
  assert all(r['lipschitz/real_mean'] > 0 and np.isfinite(r['lipschitz/fake_max']) for r in logged)
  evals = [json.loads(x) for x in (tmp_path / 'eval_log.jsonl').read_text().splitlines()]
  assert [e['step'] for e in evals] == [2, 4]
  assert 0 < evals[0]['train_seconds'] <= evals[1]['train_seconds']
  assert default.get_config().monitor_lipschitz is False


def test_benchmark_runner_reports_exit_code_and_memory():
  out, seconds, rss, code = benchmarks.run_bench('experiments.timing', [])
  assert code == 0 and out == '' and seconds > 0 and rss > 1
  with pytest.raises(SystemExit):
    benchmarks.main(['--only', 'nope'])
