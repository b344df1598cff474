"""Checks of a run's config and work directory that need no JAX, orbax or data.

The command line runs them before the heavy imports, so a bad value answers in
about a second; :func:`jaxgan.train.train_and_evaluate` runs them again for
callers of the Python API. Every refusal is a :class:`ConfigError` whose
message names the field, its value and the fix, on one line:
``config.d_optimizer.lr=-0.001 is invalid: use a positive learning rate, e.g. 2e-4.``
Each technique checks its own section (:meth:`jaxgan.wiring.base.Technique.validate`).

Names the library defines elsewhere (losses, one-stage modes, a technique's
options) are repeated here and in :mod:`jaxgan.wiring` so that checking them
imports nothing heavy; ``tests/test_bad_inputs.py`` checks each copy against its
source.
"""

from __future__ import annotations

import difflib
import json
import os
import socket
from collections.abc import Iterable
from pathlib import Path

import ml_collections

from jaxgan import wiring
from jaxgan.wiring.base import TOY_DATASETS, ConfigError, fail
from jaxgan.wiring.base import is_int as _is_int
from jaxgan.wiring.base import is_number as _is_number

TRAINERS = ('two_stage', 'one_stage')
PRECISIONS = ('float32', 'bfloat16')
LR_SCHEDULES = ('constant', 'linear_decay')
LOSSES = ('hinge', 'lsgan', 'minimax', 'ns', 'wgan')  # jaxgan.losses.LOSSES
ONESTAGE_MODES = ('auto', 'symmetric', 'asymmetric', 'exact')  # jaxgan.onestage.MODES
SELFSUP_MODELS = ('sngan32', 'dcgan28', 'dcgan32', 'dcgan64')
OPEN_SECTION = 'model_kwargs'  # the config section whose keys are the model's, not the config's

# Fields that steer only the loop around training (when to log, sample, evaluate,
# checkpoint, where the data or the Inception weights live, the run's own
# switches): a resumed run may change them freely, and so may a technique's fields
# that its Technique.free_on_resume names. num_steps may change too unless a
# schedule spans it (a technique's, or a learning-rate decay).
FREE_ON_RESUME = (
  'log_every',
  'sample_every',
  'eval_every',
  'eval_samples',
  'checkpoint_every',
  'keep_checkpoints',
  'best_metric',
  'best_mode',
  'distributed',
  'data_dir',
  'inception_weights',
  'skip_nonfinite_updates',
  'guard',
  'allow_changes',
  'dry_run',
)

__all__ = [
  'ConfigError',
  'TOY_DATASETS',
  'fail',
  'check_resume',
  'check_workdir',
  'covered',
  'flatten',
  'loop_fields',
  'validate_config',
]


def _plain(config) -> dict:
  """A config as nested dicts of JSON values (tuples become lists)."""
  if isinstance(config, str):
    return json.loads(config)
  return json.loads(config.to_json_best_effort())


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks every field of a run's ``config``; raises :class:`ConfigError` naming the fix.

  Args:
    config: the run's config, with the fields of ``experiments/configs/default.py``.
  """
  for field in (
    'batch_size',
    'num_steps',
    'log_every',
    'checkpoint_every',
    'keep_checkpoints',
    'latent_dim',
    'n_dis',
  ):
    if not _is_int(config[field]) or config[field] < 1:
      fail(field, config[field], 'use a positive integer.')
  for field in ('sample_every', 'eval_every', 'eval_samples'):
    if not _is_int(config[field]) or config[field] < 0:
      fail(field, config[field], 'use an integer >= 0 (0 turns it off).')
  if config.get('pad_to', 0) and (not _is_int(config.pad_to) or config.pad_to < 0):
    fail('pad_to', config.pad_to, 'use an image size in pixels, e.g. 32 (0 turns it off).')
  _validate_game(config)
  _validate_optimizers(config)
  wiring.validate(config)
  _validate_d_heads(config)
  _validate_data(config)
  _validate_program(config)


def _validate_game(config: ml_collections.ConfigDict) -> None:
  if config.trainer not in TRAINERS:
    fail('trainer', config.trainer, f'choose one of {TRAINERS}.')
  if config.trainer == 'one_stage' and config.n_dis != 1:
    fail('n_dis', config.n_dis, 'one-stage training updates G and D from one pass: use n_dis=1.')
  if config.loss not in LOSSES:
    fail('loss', config.loss, f'choose one of {sorted(LOSSES)}.')
  if config.onestage_mode not in ONESTAGE_MODES:
    fail('onestage_mode', config.onestage_mode, f'choose one of {ONESTAGE_MODES}.')
  if config.trainer == 'two_stage' and config.onestage_mode != 'auto':
    fail(
      'onestage_mode',
      config.onestage_mode,
      "it only applies to trainer='one_stage': set --config.trainer=one_stage, or leave "
      "onestage_mode='auto' for two-stage training.",
    )
  if config.precision not in PRECISIONS:
    fail('precision', config.precision, f'choose one of {PRECISIONS}.')
  if not _is_number(config.ema_decay) or not 0.0 <= config.ema_decay < 1.0:
    fail('ema_decay', config.ema_decay, 'use a value in [0, 1); 0 turns the EMA off.')
  if not _is_number(config.weight_clip) or config.weight_clip < 0:
    fail('weight_clip', config.weight_clip, 'use a value >= 0 (0 turns it off).')


def _validate_optimizers(config: ml_collections.ConfigDict) -> None:
  for name in ('g_optimizer', 'd_optimizer'):
    opt = config[name]
    if not _is_number(opt.lr) or opt.lr <= 0:
      fail(f'{name}.lr', opt.lr, 'use a positive learning rate, e.g. 2e-4.')
    for b in ('b1', 'b2'):
      if not _is_number(opt[b]) or not 0.0 <= opt[b] < 1.0:
        fail(f'{name}.{b}', opt[b], 'Adam betas lie in [0, 1).')
    wd = opt.get('weight_decay', 0.0)
    if not _is_number(wd) or wd < 0:
      fail(f'{name}.weight_decay', wd, 'use a value >= 0 (0 = Adam, > 0 = AdamW).')
    if opt.get('schedule', 'constant') not in LR_SCHEDULES:
      fail(f'{name}.schedule', opt.schedule, f'choose one of {LR_SCHEDULES}.')
    start = opt.get('decay_from', 0.5)
    if not _is_number(start) or not 0.0 <= start < 1.0:
      fail(
        f'{name}.decay_from',
        start,
        'use the share of the run after which the learning rate decays, in [0, 1), e.g. 0.5.',
      )


def _validate_d_heads(config: ml_collections.ConfigDict) -> None:
  """The auxiliary D heads of the model: those the techniques that are on need (SSGAN, InfoMax)."""
  users = [t for t in wiring.TECHNIQUES if t.enabled(config) and t.d_heads(config)]
  if not users:
    return
  need = [head for t in users for head in t.d_heads(config)]
  section = ' and '.join(f'{t.section}.enabled' for t in users)
  if config.model not in SELFSUP_MODELS:
    fail(
      'model',
      config.model,
      f'{section} needs a D with self-supervised heads: use one of {SELFSUP_MODELS}.',
    )
  kwargs = config.get('model_kwargs') or {}
  head = kwargs.get('d_aux_head', kwargs.get('aux_head', 'none'))
  missing = [kind for kind in need if kind not in str(head).split('+')]
  if missing:
    fail(
      'model_kwargs.aux_head',
      head,
      f"{section} needs D's {' and '.join(missing)} head: set "
      f'--config.model_kwargs.aux_head={"+".join(need)}.',
    )


def _validate_data(config: ml_collections.ConfigDict) -> None:
  if config.dataset in TOY_DATASETS:
    points = config.get('toy_points', 100_000)
    if not _is_int(points) or points < 1:
      fail('toy_points', points, 'use a positive number of points, e.g. 100000.')
  if config.dataset == 'image_folder':
    folder = config.get('image_folder') or {}
    path = folder.get('path', '')  # '' (a template's default): refused when the data load
    if path and not Path(path).expanduser().is_dir():
      fail('image_folder.path', path, 'no such folder: give an existing folder of PNG/JPEG images.')
    resolution = folder.get('resolution', 256)
    if not _is_int(resolution) or resolution < 1:
      fail('image_folder.resolution', resolution, 'use a positive size in pixels, e.g. 256.')
    if folder.get('channels', 3) not in (1, 3):
      fail('image_folder.channels', folder.get('channels'), 'use 3 (RGB) or 1 (grayscale).')
  data_dir = config.get('data_dir', '')
  if data_dir and Path(data_dir).expanduser().exists() and not Path(data_dir).is_dir():
    fail('data_dir', data_dir, 'it is a file: give a directory for the prepared datasets.')
  sub = config.get('subset')
  if sub is not None:
    fraction, count = sub.get('fraction', 0.0), sub.get('count', 0)
    if not _is_number(fraction) or not 0.0 <= fraction <= 1.0:
      fail('subset.fraction', fraction, 'use a fraction in (0, 1], e.g. 0.1 (0: the whole set).')
    if not _is_int(count) or count < 0:
      fail('subset.count', count, 'use a number of examples >= 0 (0: the whole set).')
    if fraction and count:
      fail('subset.count', count, f'give subset.fraction ({fraction}) or subset.count, not both.')
  weights = config.get('inception_weights', '')
  if weights and not Path(weights).expanduser().is_file():
    fail('inception_weights', weights, 'no such file: give the converted Inception-v3 weights.')


def _validate_program(config: ml_collections.ConfigDict) -> None:
  if config.get('best_mode', 'min') not in ('min', 'max'):
    fail('best_mode', config.best_mode, "use 'min' (e.g. FID) or 'max'.")
  guard = config.get('guard') or {}
  for field in ('max_param_norm', 'max_activation'):
    value = guard.get(field, 0.0)
    if not _is_number(value) or value < 0:
      fail(f'guard.{field}', value, 'use a bound > 0, or 0 to turn this check off.')
  for field in ('dry_run', 'skip_nonfinite_updates', 'distributed'):
    if not isinstance(config.get(field, False), bool):
      fail(field, config.get(field), 'use True or False.')
  known = set(flatten(_plain(config)))
  for name in allowed_changes(config):
    if name not in known and not any(k.startswith(name + '.') for k in known):
      fail(
        'allow_changes',
        config.allow_changes,
        f'{name!r} is not a config field{_did_you_mean(name, sorted(known))}; list fields '
        'separated by commas, e.g. num_steps,d_optimizer.lr.',
      )


def _did_you_mean(name: str, choices: Iterable[str]) -> str:
  close = difflib.get_close_matches(str(name), list(choices), n=1)
  return f' (did you mean {close[0]!r}?)' if close else ''


def flatten(tree: dict, prefix: str = '') -> dict[str, object]:
  """``{'d_optimizer.lr': 2e-4, ...}``: every leaf of nested dicts by dotted name."""
  out = {}
  for key, value in tree.items():
    name = f'{prefix}{key}'
    if isinstance(value, dict) and value:
      out.update(flatten(value, name + '.'))
    else:
      out[name] = value
  return out


def allowed_changes(config) -> list[str]:
  """The field names listed in ``config.allow_changes`` (comma-separated)."""
  raw = config.get('allow_changes', '') or ''
  return [name.strip() for name in str(raw).split(',') if name.strip()]


def loop_fields() -> list[str]:
  """The fields that steer only the loop around training (:data:`FREE_ON_RESUME` and the
  techniques' ``free_on_resume``): two runs that differ only in them train the same."""
  return [*FREE_ON_RESUME, *(f for t in wiring.TECHNIQUES for f in t.free_on_resume)]


def covered(name: str, prefixes: Iterable[str]) -> bool:
  """Whether the dotted field ``name`` is one of ``prefixes`` or lies under one."""
  return any(name == p or name.startswith(p + '.') for p in prefixes)


def config_changes(
  saved_json: str, config: ml_collections.ConfigDict
) -> list[tuple[str, object, object]]:
  """Fields whose value differs from the checkpoint's config, ``(name, saved, now)``.

  Fields that steer only the loop (:data:`FREE_ON_RESUME` and the techniques'
  ``free_on_resume``) are left out, and so is ``num_steps`` unless a schedule
  spans it (sparse training, a learning-rate decay). A field on one side only is a
  change under ``model_kwargs`` (set vs. the model's default); elsewhere it is
  a field another version of jaxgan added or removed, and is left out.
  """
  saved = flatten(_plain(saved_json))
  now = flatten(_plain(config))
  free = loop_fields()
  if not _schedule_spans_num_steps(config):
    free.append('num_steps')
  missing = '(not set)'
  names = (set(saved) & set(now)) | {
    n for n in set(saved) ^ set(now) if n.startswith(f'{OPEN_SECTION}.')
  }
  return [
    (name, saved.get(name, missing), now.get(name, missing))
    for name in sorted(names)
    if not covered(name, free) and saved.get(name, missing) != now.get(name, missing)
  ]


def _schedule_spans_num_steps(config) -> bool:
  """Whether a schedule over the run's length (a technique's, a learning-rate decay) is on."""
  decays = any(
    config[name].get('schedule', 'constant') != 'constant'
    for name in ('g_optimizer', 'd_optimizer')
  )
  return decays or any(t.schedule_spans_num_steps and t.enabled(config) for t in wiring.TECHNIQUES)


def check_resume(
  saved_json: str, saved_step: int, config: ml_collections.ConfigDict, workdir: str | Path
) -> None:
  """Refuses to resume the checkpoint of another run, or to train backwards.

  Args:
    saved_json: the config stored with the checkpoint (JSON).
    saved_step: the checkpoint's step.
    config: the config of this session.
    workdir: the run directory (for the messages).

  Raises:
    ConfigError: ``num_steps`` below the checkpoint, or fields that changed
      and are not listed in ``config.allow_changes``.
  """
  _check_num_steps(config, saved_step, workdir)
  allowed = allowed_changes(config)
  changed = [c for c in config_changes(saved_json, config) if not covered(c[0], allowed)]
  if not changed:
    return
  shown = '; '.join(f'{name}: {old!r} -> {new!r}' for name, old, new in changed[:6])
  more = f'; and {len(changed) - 6} more' if len(changed) > 6 else ''
  names = ','.join(name for name, _, _ in changed)
  raise ConfigError(
    f'{workdir} holds a run (step {saved_step}) with another config: {shown}{more}. Resume with '
    f'the same values, list what you mean to change (--config.allow_changes={names}), or use a '
    'new --workdir.'
  )


def latest_checkpoint_step(workdir: str | Path) -> int | None:
  """The newest finished checkpoint step in ``workdir/checkpoints`` by name, or ``None``."""
  root = Path(workdir) / 'checkpoints'
  if not root.is_dir():
    return None
  steps = [int(p.name) for p in root.iterdir() if p.name.isdigit() and p.is_dir()]
  return max(steps) if steps else None


def check_workdir(workdir: str | Path, config: ml_collections.ConfigDict) -> None:
  """Refuses a work directory that cannot hold this run, before any work is done.

  Checks that ``workdir`` is a directory (or can be created as one), that a file
  can be written in it, and that ``config.num_steps`` is not below the newest
  checkpoint in it.
  """
  path = Path(workdir).expanduser()
  if path.exists() and not path.is_dir():
    raise ConfigError(f'--workdir {path} is a file: give a directory (new or of an earlier run).')
  parent = next((p for p in [path, *path.parents] if p.exists()), None)
  if parent is not None and not parent.is_dir():
    raise ConfigError(f'--workdir {path}: {parent} is a file: give a path under a directory.')
  if parent is not None:
    _check_writable(parent, path)
  step = latest_checkpoint_step(path)
  if step is not None:
    _check_num_steps(config, step, path)


def _check_num_steps(config, step: int, workdir) -> None:
  if config.num_steps < step:
    fail(
      'num_steps',
      config.num_steps,
      f'{workdir} holds a checkpoint at step {step}: use num_steps >= {step} to resume it, or '
      'a new --workdir.',
    )


def _check_writable(directory: Path, workdir: Path) -> None:
  probe = directory / f'.jaxgan-write-probe-{socket.gethostname()}-{os.getpid()}'
  try:
    probe.write_bytes(b'')
    probe.unlink()
  except OSError as err:
    reason = os.strerror(err.errno) if err.errno else str(err)
    raise ConfigError(
      f'--workdir {workdir}: cannot write in {directory} ({reason}): give a writable directory, '
      'or copy the run to one and resume there.'
    ) from err
