"""Turns a config into the pieces of a run: data, models, optimizers, game, step.

:func:`build_run` builds what every run has (the data, the models, Adam, the loss, the
adversarial step) and lets each technique the config turns on add its part, in the order of
:data:`jaxgan.wiring.TECHNIQUES`: optimizer wrappers, game entries, step options, state,
a step wrapper, per-step work. The techniques' own wiring lives in :mod:`jaxgan.wiring`;
nothing here names one. Config values are checked by :mod:`jaxgan.config_checks`
(``validate_config``, re-exported here) before anything is built; what needs the data or the
models (a batch larger than the data, labels a conditional model can't take) is checked here,
before anything is compiled.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxgan import data as jdata
from jaxgan import evaluation, losses, models, onestage, parallel, wiring, writers
from jaxgan.config_checks import fail, validate_config
from jaxgan.data import image_folder
from jaxgan.game import Game, gaussian_latents, label_kwargs, make_apply, sample_labels
from jaxgan.models.conditional import class_grid_labels
from jaxgan.state import GANState, create_state
from jaxgan.steps import two_stage_step
from jaxgan.wiring.base import TOY_DATASETS, Technique


def make_optimizer(
  opt: ml_collections.ConfigDict, skip_nonfinite: bool, total_updates: int
) -> optax.GradientTransformation:
  """Adam (or AdamW when ``weight_decay > 0``) from an optimizer config section.

  ``opt.schedule='linear_decay'`` keeps ``opt.lr`` for the first ``decay_from`` share of the
  player's ``total_updates`` optimizer updates, then lowers it linearly towards 0
  (:func:`learning_rate`).
  """
  lr = learning_rate(opt, total_updates)
  if opt.get('weight_decay', 0.0) > 0:
    tx = optax.adamw(lr, b1=opt.b1, b2=opt.b2, weight_decay=opt.weight_decay)
  else:
    tx = optax.adam(lr, b1=opt.b1, b2=opt.b2)
  if skip_nonfinite:
    tx = optax.apply_if_finite(tx, max_consecutive_errors=1_000_000)
  return tx


def learning_rate(opt: ml_collections.ConfigDict, total_updates: int) -> float | optax.Schedule:
  """``opt.lr``, or under ``'linear_decay'`` the schedule of update ``count`` (0-based): ``lr``
  up to update ``start = round(decay_from * total_updates)``, then
  ``lr * (total_updates - count) / (total_updates - start)``, reaching 0 after the last update.
  """
  if opt.get('schedule', 'constant') == 'constant':
    return opt.lr
  start = int(round(opt.decay_from * total_updates))
  span = max(total_updates - start, 1)

  def schedule(count):
    remaining = (total_updates - jnp.asarray(count, float)) / span
    return opt.lr * jnp.clip(remaining, 0.0, 1.0)

  return schedule


def updates_per_step(config: ml_collections.ConfigDict) -> tuple[int, int]:
  """G's and D's optimizer updates in one training iteration (D: ``n_dis`` in two-stage)."""
  return 1, config.n_dis if config.trainer == 'two_stage' else 1


def check_batch_values(batch: dict, config: ml_collections.ConfigDict) -> None:
  """Host-side check of the first batch: float images in [-1, 1]."""
  x = np.asarray(batch['image'])
  if not np.issubdtype(x.dtype, np.floating):
    raise ValueError(
      f'batch images have dtype {x.dtype}; the data pipeline must give float32 in [-1, 1].'
    )
  if config.dataset not in TOY_DATASETS and (x.min() < -1.0 - 1e-6 or x.max() > 1.0 + 1e-6):
    raise ValueError(
      f'batch images span [{x.min():.3f}, {x.max():.3f}], outside [-1, 1]; scale them with '
      'jaxgan.data.to_float (uint8) or x * 2 - 1 (floats in [0, 1]).'
    )


@dataclasses.dataclass
class Run:
  """The pieces of one run, built from a config by :func:`build_run`.

  ``techniques`` are the :class:`jaxgan.wiring.base.Technique` instances the config turns on,
  in registry order: they add to the initial state (:meth:`init_state`) and wrap the compiled
  step (:meth:`compiled_step`); the loop calls their ``after_step`` after every step
  (:func:`jaxgan.train.after_step`).
  """

  config: ml_collections.ConfigDict
  arrays: dict
  image_shape: tuple
  g_module: object
  d_module: object
  game: Game
  g_tx: optax.GradientTransformation
  d_tx: optax.GradientTransformation
  adversarial_step: Callable
  techniques: tuple[Technique, ...] = ()
  evaluate_fn: Callable[[GANState, int], dict] | None = None

  def init_state(self, key) -> GANState:
    state = create_state(
      key,
      g_module=self.g_module,
      d_module=self.d_module,
      g_tx=self.g_tx,
      d_tx=self.d_tx,
      latent_dim=self.config.latent_dim,
      image_shape=self.image_shape,
      use_ema=self.config.ema_decay > 0,
      num_classes=self.game.num_classes,
    )
    for technique in self.techniques:
      state = technique.init_state(state)
    return state

  def compiled_step(self, mesh) -> Callable:
    """The step the loop calls: the adversarial step compiled data-parallel over ``mesh``,
    wrapped by the techniques (CoopInit runs its cooperative phase first)."""
    step = parallel.jit_data_parallel(self.adversarial_step, mesh)
    for technique in self.techniques:
      step = technique.wrap_step(step, mesh)
    return step

  @property
  def warmup_steps(self) -> int:
    """Steps at the start that are not adversarial (CoopInit's cooperative phase)."""
    return max((t.warmup_steps() for t in self.techniques), default=0)

  def make_batches(self, *, process_index: int, process_count: int):
    rows = self.config.batch_size * self.config.n_dis
    return jdata.Batches(
      self.arrays,
      rows,
      seed=self.config.seed,
      process_index=process_index,
      process_count=process_count,
      local_device_count=jax.local_device_count(),
    )

  def generate(self, state: GANState, z, label=None) -> np.ndarray:
    """Samples of the EMA G (else G) in eval mode; ``label`` ``[B]`` for a conditional run."""
    if self.game.conditional and label is None:
      raise ValueError(
        f'Run.generate: the models are conditional (num_classes={self.game.num_classes}); '
        'pass label= int32 [B] (e.g. jaxgan.game.sample_labels, or '
        'models.conditional.class_grid_labels for one row per class).'
      )
    params = state.ema_params if state.ema_params is not None else state.g.params
    out, _ = self.game.g_apply(
      {'params': params, **state.g.model_state}, z, train=False, **label_kwargs(label)
    )
    return np.asarray(jax.device_get(out), np.float32)

  def eval_functions(self) -> tuple[Callable, Callable]:
    """``(generate, sample_latents)`` for :func:`jaxgan.evaluation.make_evaluator`.

    For a conditional run the sampler draws ``(z, labels)``, the labels uniform
    in ``[0, K)`` from the same key, and ``generate`` takes that pair.
    """
    game = self.game
    if not game.conditional:
      return self.generate, game.sample_latents

    def sample(key, n):
      return game.sample_latents(key, n), sample_labels(game, jax.random.fold_in(key, 1), n)

    return (lambda state, zy: self.generate(state, zy[0], label=zy[1])), sample

  def write_samples(self, state: GANState, path: Path) -> None:
    """A grid of 64 samples; conditional runs: one row of 8 per class (first 16 classes)."""
    label = None
    n = 64
    if self.game.conditional:
      label = class_grid_labels(min(self.game.num_classes, 16), 8)
      n = int(label.shape[0])
    z = self.game.sample_latents(jax.random.PRNGKey(1234), n)
    samples = self.generate(state, z, label=label)
    if samples.ndim == 2:
      writers.save_points_plot(path, samples, self.arrays['image'][:2000])
    else:
      writers.save_image_grid(path, samples, ncols=8)

  def evaluate(self, state: GANState, n_samples: int) -> dict:
    if self.evaluate_fn is None:
      return {}
    return self.evaluate_fn(state, n_samples)


def load_training_arrays(config: ml_collections.ConfigDict) -> dict:
  """The training set: ``{'image': uint8 [N, H, W, C] or float32 [N, 2], 'label': int [N]}``."""
  data_dir = config.get('data_dir') or None
  if config.dataset in TOY_DATASETS:
    points = jdata.gaussian_mixture(
      config.dataset, config.get('toy_points', 100_000), seed=config.seed
    )
    return {'image': np.asarray(points, np.float32), 'label': np.zeros(len(points), np.int64)}
  if config.dataset == 'image_folder':  # the user's own images (few-shot), cached once
    folder = config.get('image_folder', {})
    if not folder.get('path', ''):
      fail(
        'image_folder.path', '', "give the folder of PNG/JPEG images for dataset='image_folder'."
      )
    arrays = image_folder.load_image_folder(
      folder.path, folder.get('resolution', 256), data_dir, channels=folder.get('channels', 3)
    )
  else:
    arrays = jdata.load_arrays(config.dataset, 'train', data_dir=data_dir)
  sub = config.get('subset')
  if sub is not None and (sub.get('fraction', 0.0) or sub.get('count', 0)):
    arrays = jdata.subset(
      arrays,
      fraction=sub.get('fraction') or None,
      count=sub.get('count') or None,
      seed=sub.get('seed', 0),
      class_balanced=sub.get('class_balanced', False),
    )
  images = arrays['image']  # uint8: Batches converts each batch to float32 in [-1, 1]
  if config.get('pad_to', 0):
    images = jdata.pad_to(images, config.pad_to)
  return {'image': images, 'label': np.asarray(arrays['label'])}


def build_game(
  config: ml_collections.ConfigDict,
  g_module,
  d_module,
  image_shape: tuple,
  techniques: list[Technique] | None = None,
) -> Game:
  """The Game of this config: the loss and latents, then each technique's entries.

  ``techniques`` defaults to the ones the config turns on (:func:`jaxgan.wiring.active`).
  """
  game = Game(
    g_apply=make_apply(g_module),
    d_apply=make_apply(d_module),
    loss=losses.get_loss(config.loss),
    sample_latents=gaussian_latents(config.latent_dim),
    d_batch_coupled=models.d_is_batch_coupled(d_module),
    num_classes=models.num_classes_of(g_module, d_module),
  )
  for technique in wiring.active(config) if techniques is None else techniques:
    game = technique.game(game, g_module, d_module, image_shape)
  return game


def build_step(config: ml_collections.ConfigDict, game: Game, g_tx, d_tx, **kwargs) -> Callable:
  """The adversarial step the config names (two-stage or one-stage)."""
  common = dict(
    ema_decay=config.ema_decay if config.ema_decay > 0 else None,
    weight_clip=config.weight_clip if config.weight_clip > 0 else None,
    **kwargs,
  )
  if config.trainer == 'one_stage':
    return onestage.one_stage_step(game, g_tx, d_tx, mode=config.onestage_mode, **common)
  return two_stage_step(game, g_tx, d_tx, n_dis=config.n_dis, **common)


def _models(config: ml_collections.ConfigDict, image_shape: tuple):
  model_kwargs = dict(config.get('model_kwargs', {}))
  if config.precision == 'bfloat16':
    model_kwargs['dtype'] = jnp.bfloat16
  return models.get_models(
    config.model, latent_dim=config.latent_dim, image_shape=image_shape, **model_kwargs
  )


def _check_batch_size(config: ml_collections.ConfigDict, arrays: dict) -> None:
  if config.batch_size * config.n_dis > len(arrays['image']):
    fail(
      'batch_size', config.batch_size, f'it exceeds the {len(arrays["image"])} training examples.'
    )


def _check_labels(config: ml_collections.ConfigDict, arrays: dict, game: Game) -> None:
  """A conditional model can take the data's labels."""
  if game.conditional:
    labels = np.asarray(arrays['label'])
    if labels.min() < 0 or labels.max() >= game.num_classes:
      fail(
        'model_kwargs.num_classes',
        game.num_classes,
        f'dataset {config.dataset!r} has labels in [{labels.min()}, {labels.max()}]; a '
        'conditional model needs labels in [0, num_classes) (use num_classes=0 for '
        'unlabelled data).',
      )


def build_run(config: ml_collections.ConfigDict) -> Run:
  """Builds every piece of the run; all config errors surface here."""
  validate_config(config)
  arrays = load_training_arrays(config)
  image_shape = tuple(arrays['image'].shape[1:])
  g_module, d_module = _models(config, image_shape)
  _check_batch_size(config, arrays)
  techniques = wiring.active(config)
  skip = config.get('skip_nonfinite_updates', False)
  g_per_step, d_per_step = updates_per_step(config)
  g_tx = make_optimizer(config.g_optimizer, skip, config.num_steps * g_per_step)
  d_tx = make_optimizer(config.d_optimizer, skip, config.num_steps * d_per_step)
  for technique in techniques:
    g_tx, d_tx = technique.optimizers(g_tx, d_tx)
  game = build_game(config, g_module, d_module, image_shape, techniques)
  _check_labels(config, arrays, game)
  options = {k: v for t in techniques for k, v in t.step_options().items()}
  run = Run(
    config=config,
    arrays=arrays,
    image_shape=image_shape,
    g_module=g_module,
    d_module=d_module,
    game=game,
    g_tx=g_tx,
    d_tx=d_tx,
    adversarial_step=build_step(config, game, g_tx, d_tx, **options),
    techniques=tuple(techniques),
  )
  for technique in techniques:
    technique.setup(run)
  if config.eval_samples:
    generate, sample = run.eval_functions()
    run.evaluate_fn = evaluation.make_evaluator(config, generate, sample, image_shape)
  return run
