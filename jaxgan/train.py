"""``train_and_evaluate(config, workdir)``: the loop every launcher uses.

It builds data, models, state and the step from an ``ml_collections`` config
(see ``experiments/configs/default.py`` for every field), restores the latest
checkpoint in ``workdir`` if there is one, trains, evaluates and writes samples
on a schedule, checkpoints, and writes a final summary.

Crash safety: a checkpoint holds the whole run (state, data position, config);
the run restarted with the same command continues bit-identically (CPU, same
seed). One process trains in a work directory at a time
(:class:`jaxgan.workdir_lock.WorkdirLock`), and a resumed run must use the
config it was started with, apart from the fields ``config.allow_changes``
lists (:func:`jaxgan.config_checks.check_resume`).

Divergence: non-finite losses, parameters, model statistics or optimizer moments
stop the run with a :class:`DivergenceError` before anything non-finite is
saved (technique state such as DDST's balance ratio may hold NaN as "not
measured yet" and is not checked). With ``skip_nonfinite_updates`` a step whose
update is non-finite is skipped (``optax.apply_if_finite``) and counted instead.
The optional guard (``config.guard``) stops the run the same way when the
parameter norm of G or D, or the activation statistics, exceed a bound.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxgan import checkpoint, config_checks, parallel, run_setup, writers
from jaxgan.config_checks import ConfigError
from jaxgan.state import GANState
from jaxgan.wiring import StepInfo
from jaxgan.workdir_lock import WorkdirLock

log = logging.getLogger(__name__)


class DivergenceError(RuntimeError):
  """Training produced non-finite values, or values beyond the configured guard."""


def nonfinite_parts(state: GANState) -> list[str]:
  """Names of the parts of ``state`` with a non-finite float, e.g. ``['d.opt_state']``.

  Parameters, model statistics and optimizer moments of G and D and G's EMA
  are checked; ``state.extra`` (technique state, whose sentinels may be NaN)
  is not.
  """
  parts = {
    'g.params': state.g.params,
    'g.model_state': state.g.model_state,
    'g.opt_state': state.g.opt_state,
    'd.params': state.d.params,
    'd.model_state': state.d.model_state,
    'd.opt_state': state.d.opt_state,
    'ema_params': state.ema_params,
  }
  return [name for name, tree in parts.items() if not _all_finite(tree)]


def _all_finite(tree) -> bool:
  leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)]
  return bool(all(np.isfinite(np.asarray(x)).all() for x in leaves))


@jax.jit
def _guard_values(state: GANState, metrics: dict) -> dict:
  """What the divergence guard bounds: parameter norms and activation magnitudes."""

  def stats_max(tree):
    leaves = [jnp.max(jnp.abs(x)) for x in jax.tree.leaves(tree) if x.size]
    return jnp.max(jnp.stack(leaves)) if leaves else jnp.zeros(())

  logits = [jnp.abs(metrics[k]) for k in ('d_real', 'd_fake') if k in metrics]
  return {
    'guard/g_param_norm': optax.tree.norm(state.g.params),
    'guard/d_param_norm': optax.tree.norm(state.d.params),
    'guard/max_activation': jnp.max(
      jnp.stack([stats_max(state.g.model_state), stats_max(state.d.model_state), *logits])
    ),
  }


def _check_guard(values: dict, config: ml_collections.ConfigDict, step: int, kept: str) -> None:
  guard = config.get('guard') or {}
  bounds = {
    'guard/g_param_norm': ('max_param_norm', "G's parameter norm"),
    'guard/d_param_norm': ('max_param_norm', "D's parameter norm"),
    'guard/max_activation': ('max_activation', 'the largest D logit or normalization statistic'),
  }
  for key, (field, what) in bounds.items():
    bound = guard.get(field, 0.0)
    if bound and not values[key] <= bound:
      raise DivergenceError(
        f'{what} is {values[key]:.3g} at step {step}, above config.guard.{field}={bound:g}; '
        f'stopping. {kept} Lower the learning rates, or raise the bound if this growth is '
        'expected.'
      )


def _progress(total: int, initial: int, active: bool):
  from tqdm import tqdm

  return tqdm(
    total=total,
    initial=initial,
    disable=not active,
    unit='step',
    dynamic_ncols=True,
    mininterval=1.0,
  )


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path) -> GANState:
  """Trains a GAN as ``config`` says, in ``workdir``; returns the final state.

  With ``config.dry_run`` it validates the config and the work directory,
  builds the run, restores the checkpoint if there is one, runs one step (which
  compiles it) and returns that step's state without writing anything.

  Raises:
    jaxgan.config_checks.ConfigError: a bad config value, input, or work
      directory (raised before any compilation): among them
      ``checkpoint.CheckpointMismatchError`` (``workdir`` holds a run of
      another shape) and ``workdir_lock.WorkdirBusyError`` (another process
      trains there).
    DivergenceError: non-finite values, or values beyond ``config.guard``;
      the last good checkpoint is kept.
  """
  config_checks.validate_config(config)
  config_checks.check_workdir(workdir, config)
  dry_run = config.get('dry_run', False)
  if config.get('distributed', False):
    parallel.initialize_distributed()
  workdir = Path(workdir)
  is_writer = jax.process_index() == 0 and not dry_run
  lock = WorkdirLock(workdir) if is_writer else None
  if lock is not None:
    lock.acquire()  # creates workdir
  try:
    return _train(config, workdir, is_writer, dry_run)
  finally:
    if lock is not None:
      lock.release()


def _train(
  config: ml_collections.ConfigDict, workdir: Path, is_writer: bool, dry_run: bool
) -> GANState:
  ckpt = None
  if not dry_run or (workdir / 'checkpoints').is_dir():
    ckpt = checkpoint.RunCheckpointer(
      workdir,
      keep=config.keep_checkpoints,
      best_metric=None if dry_run else config.get('best_metric') or None,
      best_mode=config.get('best_mode', 'min'),
    )
  try:
    return _train_with(config, workdir, is_writer, dry_run, ckpt)
  finally:
    if ckpt is not None:
      ckpt.close()


@contextlib.contextmanager
def _inputs_named_by_config():
  """A ``ValueError`` inside comes from an input the config names: raised as ConfigError.

  Used around building the run and its first step: a model field, a data
  folder, a technique's option, a checkpoint of another run, the first batch.
  """
  try:
    yield
  except ConfigError:
    raise
  except ValueError as err:
    raise ConfigError(str(err)) from err


def _setup(config, ckpt, dry_run: bool):
  """Builds the run and its state, restored if ``ckpt`` holds a checkpoint."""
  with _inputs_named_by_config():
    latest = ckpt.latest_config() if ckpt is not None else None
    if latest is not None:
      config_checks.check_resume(latest[1], latest[0], config, ckpt.workdir)
    run = run_setup.build_run(config)
    mesh = parallel.make_mesh()
    parallel.check_global_batch(config.batch_size, mesh)
    state = run.init_state(jax.random.PRNGKey(config.seed))
    restored = None
    if ckpt is not None:
      restored = ckpt.restore(state, set_aside=not dry_run)
    if restored is not None:
      config_checks.check_resume(restored[2], restored[3], config, ckpt.workdir)
  return run, mesh, state, restored


def _first_step(config, step_fn, state, batch, mesh):
  """The session's first step: checks the batch, compiles and runs the step."""
  with _inputs_named_by_config():
    run_setup.check_batch_values(batch, config)
    return step_fn(state, parallel.shard_batch(batch, mesh))


def _train_with(config, workdir: Path, is_writer: bool, dry_run: bool, ckpt) -> GANState:
  run, mesh, state, restored = _setup(config, ckpt, dry_run)
  data_position = None
  start = 0
  if restored is not None:
    state, data_position, _, start = restored
    log.info('resumed from step %d in %s', start, workdir)
  batches = run.make_batches(process_index=jax.process_index(), process_count=jax.process_count())
  if data_position is not None:
    batches.set_state(data_position)
  state = parallel.replicate(state, mesh)
  step_fn = run.compiled_step(mesh)
  if dry_run:
    return _dry_run(config, state, step_fn, batches, mesh, workdir)
  session = _Session(run, workdir, is_writer, ckpt, batches, start)
  try:
    for step in range(start, config.num_steps):
      batch = batches.next()
      if step == start:
        state, metrics = _first_step(config, step_fn, state, batch, mesh)
      else:
        state, metrics = step_fn(state, parallel.shard_batch(batch, mesh))
      state = session.after_step(state, metrics, step, batch)
  finally:
    session.close()
  return session.finish(state)


def after_step(
  run, state: GANState, metrics: dict, step: int, batch: dict
) -> tuple[GANState, dict]:
  """The techniques' per-step work after step ``step`` (0-based), in registry order.

  Returns the state and their logs (prune/regrow, the Lipschitz monitor...). During a
  technique's warm-up (CoopInit's cooperative phase) the step is not adversarial.
  """
  info = StepInfo(step, batch, metrics, adversarial=step >= run.warmup_steps)
  logs = {}
  for technique in run.techniques:
    state, more = technique.after_step(state, info)
    logs.update(more)
  return state, logs


class _Session:
  """One session of the loop: what it writes, its divergence checks, its schedules."""

  def __init__(self, run, workdir: Path, is_writer: bool, ckpt, batches, start: int):
    self.run, self.config, self.workdir, self.is_writer = run, run.config, workdir, is_writer
    self.ckpt, self.batches, self.start = ckpt, batches, start
    if is_writer:
      writers.truncate_log(workdir, start)  # rows a killed session logged after its checkpoint
    self.writer = writers.MetricWriter(workdir, active=is_writer)
    self.config_json = self.config.to_json_best_effort(indent=2)
    if is_writer:
      (workdir / 'config.json').write_text(self.config_json)
    self.skip = self.config.get('skip_nonfinite_updates', False)
    guard = self.config.get('guard') or {}
    self.guard_on = bool(guard.get('max_param_norm', 0.0) or guard.get('max_activation', 0.0))
    self.skipped = 0
    self.t_start = time.perf_counter()
    self.eval_seconds = 0.0
    self.last_metrics: dict = {}
    self.bar = _progress(self.config.num_steps, start, is_writer)

  def kept(self) -> str:
    steps = self.ckpt.steps()
    if not steps:
      return f'No checkpoint was saved in {self.workdir} yet.'
    return f'The last good checkpoint (step {steps[-1]}) in {self.workdir} is kept.'

  def save(self, step: int, state: GANState) -> None:
    bad = nonfinite_parts(state)
    if bad:
      raise DivergenceError(
        f'non-finite values in {bad} at step {step}; stopping. {self.kept()} Lower the learning '
        'rates, or set config.skip_nonfinite_updates=True.'
      )
    self.ckpt.save(step, state, self.batches.get_state(), self.config_json)

  def after_step(self, state: GANState, metrics: dict, step: int, batch: dict) -> GANState:
    """Checks the step, runs the techniques' work, logs, samples, evaluates, checkpoints."""
    metrics = self.checked_metrics(state, metrics, step)
    state, extra_metrics = after_step(self.run, state, metrics, step, batch)
    metrics.update(extra_metrics)
    done = step + 1
    self.last_metrics = metrics
    self.bar.update(1)
    config = self.config
    if done % config.log_every == 0 or done == config.num_steps:
      self.bar.set_postfix(
        {k: f'{float(v):.3f}' for k, v in metrics.items() if k in ('d_loss', 'g_loss')}
      )
      rate = self.bar.format_dict.get('rate') or 0.0
      self.writer.write_scalars(done, {**metrics, 'steps_per_second': rate})
    if self.is_writer and config.sample_every:
      if done % config.sample_every == 0 or done == config.num_steps:
        self.run.write_samples(state, self.workdir / 'samples' / f'step_{done:07d}.png')
    eval_now = config.eval_every and done % config.eval_every == 0
    if config.eval_samples and (eval_now or done == config.num_steps):
      self.evaluate(done, state)
    if done % config.checkpoint_every == 0 or done == config.num_steps:
      self.save(done, state)
    return state

  def checked_metrics(self, state: GANState, metrics: dict, step: int) -> dict:
    """The step's metrics on the host; stops on non-finite values or beyond the guard."""
    guard_values = _guard_values(state, metrics) if self.guard_on else {}
    metrics = jax.device_get(metrics)
    bad = sorted(k for k, v in metrics.items() if not np.isfinite(v))
    if bad and not self.skip:
      raise DivergenceError(
        f'non-finite {bad} at step {step + 1}; stopping. {self.kept()} Lower the learning '
        'rates, or set config.skip_nonfinite_updates=True to skip such updates.'
      )
    if bad:
      self.skipped += 1
      broken = nonfinite_parts(state)
      if broken:
        raise DivergenceError(
          f'non-finite {bad} at step {step + 1} left non-finite values in {broken} although '
          f'skip_nonfinite_updates=True; stopping. {self.kept()} Lower the learning rates.'
        )
      log.warning(
        'step %d: non-finite %s; its update was skipped (%d so far).', step + 1, bad, self.skipped
      )
    if self.guard_on:
      guard_values = {k: float(v) for k, v in jax.device_get(guard_values).items()}
      _check_guard(guard_values, self.config, step + 1, self.kept())
      metrics.update(guard_values)
    if self.skip:
      metrics['nonfinite_skipped'] = self.skipped
    return metrics

  def evaluate(self, done: int, state: GANState) -> None:
    t_eval = time.perf_counter()
    scores = self.run.evaluate(state, self.config.eval_samples)
    # Wall-clock of this session up to this evaluation, earlier evaluations excluded.
    scores['train_seconds'] = round(t_eval - self.t_start - self.eval_seconds, 3)
    self.eval_seconds += time.perf_counter() - t_eval
    self.writer.write_scalars(done, {f'eval/{k}': v for k, v in scores.items() if np.isscalar(v)})
    if self.is_writer:
      with open(self.workdir / 'eval_log.jsonl', 'a') as f:
        f.write(json.dumps({'step': done, **scores}, default=str) + '\n')
    numeric = {k: float(v) for k, v in scores.items() if np.isscalar(v)}
    position = self.batches.get_state()
    self.ckpt.save_best(done, jax.device_get(state), position, self.config_json, numeric)

  def close(self) -> None:
    self.bar.close()
    self.writer.close()

  def finish(self, state: GANState) -> GANState:
    """Waits for the checkpoints; the writer process writes the summary and the plots."""
    self.ckpt.wait()
    if self.is_writer:
      summary = {
        'final_step': int(jax.device_get(state.step)),
        'steps_this_session': self.config.num_steps - self.start,
        'seconds_this_session': round(time.perf_counter() - self.t_start, 2),
        'final_metrics': {k: float(v) for k, v in self.last_metrics.items()},
        'devices': jax.device_count(),
        'processes': jax.process_count(),
        'jax_version': jax.__version__,
      }
      if self.skip:
        summary['nonfinite_skipped_this_session'] = self.skipped
      (self.workdir / 'summary.json').write_text(json.dumps(summary, indent=2))
      writers.plot_metrics(self.workdir)
    return state


def _dry_run(config, state, step_fn, batches, mesh, workdir: Path) -> GANState:
  """Runs (and so compiles) one step on the first batch; writes nothing."""
  t0 = time.perf_counter()
  state, metrics = _first_step(config, step_fn, state, batches.next(), mesh)
  metrics = jax.device_get(metrics)
  bad = sorted(k for k, v in metrics.items() if not np.isfinite(v))
  if bad:
    raise DivergenceError(f'dry run: the first step gives non-finite {bad}.')
  sizes = [
    sum(int(np.size(x)) for x in jax.tree.leaves(p)) for p in (state.g.params, state.d.params)
  ]
  log.info(
    'dry run passed: config and --workdir %s checked, G %s and D %s parameters built, one step '
    'compiled and run in %.1f s; nothing was written.',
    workdir,
    f'{sizes[0]:,}',
    f'{sizes[1]:,}',
    time.perf_counter() - t0,
  )
  return state
