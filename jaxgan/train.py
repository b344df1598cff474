"""``train_and_evaluate(config, workdir)``: the loop every launcher uses.

It builds data, models, state and the step from an ``ml_collections`` config
(see ``experiments/configs/default.py`` for every field), restores the latest
checkpoint in ``workdir`` if there is one, trains, evaluates and writes samples
on a schedule, checkpoints, and writes a final summary.

Crash safety: a checkpoint holds the whole run (state, data position, config);
the run restarted with the same command continues bit-identically (CPU, same
seed). Non-finite losses or parameters stop the run with a
:class:`DivergenceError` before anything non-finite is saved.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxgan import checkpoint, parallel, run_setup, writers
from jaxgan.state import GANState

log = logging.getLogger(__name__)


class DivergenceError(RuntimeError):
  """Training produced non-finite losses or parameters."""


def _all_finite(tree) -> bool:
  leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)]
  return bool(all(np.isfinite(np.asarray(x)).all() for x in leaves))


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

  Raises:
    ValueError: a bad config value (raised before any compilation).
    checkpoint.CheckpointMismatchError: ``workdir`` holds a run of another
      shape.
    DivergenceError: non-finite losses or params; the last good checkpoint is
      kept.
  """
  run_setup.validate_config(config)
  if config.get('distributed', False):
    parallel.initialize_distributed()
  workdir = Path(workdir)
  is_writer = jax.process_index() == 0
  if is_writer:
    workdir.mkdir(parents=True, exist_ok=True)

  run = run_setup.build_run(config)
  mesh = parallel.make_mesh()
  parallel.check_global_batch(config.batch_size, mesh)
  state = run.init_state(jax.random.PRNGKey(config.seed))

  ckpt = checkpoint.RunCheckpointer(
    workdir,
    keep=config.keep_checkpoints,
    best_metric=config.get('best_metric') or None,
    best_mode=config.get('best_mode', 'min'),
  )
  restored = ckpt.restore(state)
  data_position = None
  start = 0
  if restored is not None:
    state, data_position, _, start = restored
    log.info('resumed from step %d in %s', start, workdir)
    if is_writer:
      writers.truncate_log(workdir, start)
  batches = run.make_batches(process_index=jax.process_index(), process_count=jax.process_count())
  if data_position is not None:
    batches.set_state(data_position)

  writer = writers.MetricWriter(workdir, active=is_writer)
  config_json = config.to_json_best_effort(indent=2)
  if is_writer:
    (workdir / 'config.json').write_text(config_json)
  state = parallel.replicate(state, mesh)
  step_fn = run.compiled_step(mesh)

  def save(step: int, state: GANState) -> None:
    if not _all_finite((state.g, state.d, state.ema_params)):  # extra may hold NaN sentinels
      raise DivergenceError(
        f'parameters are not finite at step {step}; the last good checkpoint in {workdir} is '
        'kept. Lower the learning rates, or set config.skip_nonfinite_updates=True.'
      )
    ckpt.save(step, state, batches.get_state(), config_json)

  t_start = time.perf_counter()
  eval_seconds = 0.0
  last_metrics: dict = {}
  bar = _progress(config.num_steps, start, is_writer)
  try:
    for step in range(start, config.num_steps):
      state = run.before_step(state, step)
      batch = batches.next()
      if step == start:
        run_setup.check_batch_values(batch, config)
      state, metrics = step_fn(state, parallel.shard_batch(batch, mesh))
      metrics = jax.device_get(metrics)
      if not all(np.isfinite(v) for v in metrics.values()):
        bad = sorted(k for k, v in metrics.items() if not np.isfinite(v))
        raise DivergenceError(
          f'non-finite {bad} at step {step + 1}; stopping. The last good checkpoint in {workdir} '
          'is kept (nothing after it was saved). Lower the learning rates or use '
          'config.skip_nonfinite_updates=True.'
        )
      state, extra_metrics = run.after_step(state, metrics, step, batch)
      metrics.update(extra_metrics)
      done = step + 1
      last_metrics = metrics
      bar.update(1)
      if done % config.log_every == 0 or done == config.num_steps:
        bar.set_postfix(
          {k: f'{float(v):.3f}' for k, v in metrics.items() if k in ('d_loss', 'g_loss')}
        )
        writer.write_scalars(
          done, {**metrics, 'steps_per_second': bar.format_dict.get('rate') or 0.0}
        )
      if (
        is_writer
        and config.sample_every
        and (done % config.sample_every == 0 or done == config.num_steps)
      ):
        run.write_samples(state, workdir / 'samples' / f'step_{done:07d}.png')
      eval_now = config.eval_every and done % config.eval_every == 0
      if config.eval_samples and (eval_now or done == config.num_steps):
        t_eval = time.perf_counter()
        scores = run.evaluate(state, config.eval_samples)
        # Wall-clock of this session up to this evaluation, earlier evaluations excluded.
        scores['train_seconds'] = round(t_eval - t_start - eval_seconds, 2)
        eval_seconds += time.perf_counter() - t_eval
        writer.write_scalars(done, {f'eval/{k}': v for k, v in scores.items() if np.isscalar(v)})
        if is_writer:
          with open(workdir / 'eval_log.jsonl', 'a') as f:
            f.write(json.dumps({'step': done, **scores}, default=str) + '\n')
        numeric = {k: float(v) for k, v in scores.items() if np.isscalar(v)}
        ckpt.save_best(done, jax.device_get(state), batches.get_state(), config_json, numeric)
      if done % config.checkpoint_every == 0 or done == config.num_steps:
        save(done, state)
  finally:
    bar.close()
    ckpt.close()
    writer.close()

  if is_writer:
    elapsed = time.perf_counter() - t_start
    summary = {
      'final_step': int(jax.device_get(state.step)),
      'steps_this_session': config.num_steps - start,
      'seconds_this_session': round(elapsed, 2),
      'final_metrics': {k: float(v) for k, v in last_metrics.items()},
      'devices': jax.device_count(),
      'processes': jax.process_count(),
      'jax_version': jax.__version__,
    }
    (workdir / 'summary.json').write_text(json.dumps(summary, indent=2))
    writers.plot_metrics(workdir)
  return state
