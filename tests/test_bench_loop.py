"""experiments.bench_loop: the program's step timing hooks in and leaves the loop as it was."""

from experiments import bench_loop
from experiments.configs import toy2d
from jaxgan import run_setup


def tiny():
  c = toy2d.get_config()
  c.num_steps, c.log_every, c.eval_samples, c.sample_every = 12, 4, 0, 0
  c.toy_points, c.batch_size, c.checkpoint_every = 1024, 32, 12
  return c


def test_loop_and_bare_timings_are_positive_and_the_loop_is_restored():
  original = run_setup.Run.compiled_step
  loop = bench_loop.time_loop(tiny(), warmup=2)
  assert run_setup.Run.compiled_step is original
  bare = bench_loop.time_bare(tiny(), steps=5, warmup=2)
  assert 0 < loop < 5 and 0 < bare < 5


def test_bench_config_is_the_study_setting_without_evaluation():
  c = bench_loop.bench_config('one_stage', 40, monitor=True)
  assert (c.trainer, c.num_steps, c.eval_samples, c.sample_every) == ('one_stage', 40, 0, 0)
  assert c.monitor_lipschitz and c.model_kwargs.d_norm == 'group'
