"""Turns a config into the pieces of a run: data, models, optimizers, game, steps.

This is where the techniques meet: the config names them, and
:func:`build_run` wires each into the game (D-input transform, D perturbation,
regularizers), the optimizers (sparse masks) and the loop's slow schedules.
Every check of a config value happens here, before anything is compiled.
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

from jaxgan import (
  advaug,
  augment,
  coopinit,
  dat,
  evaluation,
  infomax,
  lipschitz,
  losses,
  models,
  onestage,
  parallel,
  regularizers,
  sparse,
  ssgan,
  writers,
)
from jaxgan import data as jdata
from jaxgan.data import image_folder
from jaxgan.game import Game, gaussian_latents, label_kwargs, make_apply, sample_labels
from jaxgan.models import selfsup
from jaxgan.models.conditional import class_grid_labels
from jaxgan.sparse import lottery
from jaxgan.state import GANState, create_state
from jaxgan.steps import d_forward, frozen_logits_fn, step_key, two_stage_step

TRAINERS = ('two_stage', 'one_stage')
PRECISIONS = ('float32', 'bfloat16')
TOY_DATASETS = ('8ring', '25grid')


def _fail(field: str, value, fix: str):
  raise ValueError(f'config.{field}={value!r} is invalid: {fix}')


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks every scalar field of ``config``; raises ``ValueError`` naming the fix."""
  for field in (
    'batch_size',
    'num_steps',
    'log_every',
    'checkpoint_every',
    'keep_checkpoints',
    'latent_dim',
    'n_dis',
  ):
    value = config[field]
    if not isinstance(value, int) or value < 1:
      _fail(field, value, 'use a positive integer.')
  for field in ('sample_every', 'eval_every', 'eval_samples'):
    if not isinstance(config[field], int) or config[field] < 0:
      _fail(field, config[field], 'use an integer >= 0 (0 turns it off).')
  if config.trainer not in TRAINERS:
    _fail('trainer', config.trainer, f'choose one of {TRAINERS}.')
  if config.trainer == 'one_stage' and config.n_dis != 1:
    _fail('n_dis', config.n_dis, 'one-stage training updates G and D from one pass: use n_dis=1.')
  if config.loss not in losses.LOSSES:
    _fail('loss', config.loss, f'choose one of {sorted(losses.LOSSES)}.')
  if config.onestage_mode not in onestage.MODES:
    _fail('onestage_mode', config.onestage_mode, f'choose one of {onestage.MODES}.')
  if config.precision not in PRECISIONS:
    _fail('precision', config.precision, f'choose one of {PRECISIONS}.')
  if not 0.0 <= config.ema_decay < 1.0:
    _fail('ema_decay', config.ema_decay, 'use a value in [0, 1); 0 turns the EMA off.')
  for name in ('g_optimizer', 'd_optimizer'):
    opt = config[name]
    if opt.lr <= 0:
      _fail(f'{name}.lr', opt.lr, 'use a positive learning rate, e.g. 2e-4.')
    for b in ('b1', 'b2'):
      if not 0.0 <= opt[b] < 1.0:
        _fail(f'{name}.{b}', opt[b], 'Adam betas lie in [0, 1).')
  for field in ('weight_clip', 'r1_weight', 'gp_weight'):
    if config[field] < 0:
      _fail(field, config[field], 'use a value >= 0 (0 turns it off).')
  _validate_selfsup(config)
  ticket = config.get('lottery', {}).get('ticket', '')
  if ticket:
    if not Path(ticket).is_file():
      _fail(
        'lottery.ticket', ticket, 'give the .npz of G masks written by experiments.lottery_mnist.'
      )
    if config.sparse.enabled:
      _fail('lottery.ticket', ticket, "a ticket fixes G's masks: set sparse.enabled=False with it.")


SELFSUP_MODELS = ('sngan32', 'dcgan28', 'dcgan32', 'dcgan64')


def _validate_selfsup(config: ml_collections.ConfigDict) -> None:
  """The ``ssgan`` and ``infomax`` sections, and the D head they need."""
  need = []
  ss, im = config.get('ssgan'), config.get('infomax')
  if ss is not None and ss.enabled:
    for field in ('d_weight', 'g_weight'):
      if not isinstance(ss[field], int | float) or ss[field] < 0:
        _fail(
          f'ssgan.{field}', ss[field], 'use a value >= 0 (Mimicry: d_weight 1.0, g_weight 0.2).'
        )
    if ss.get('rotations', 'all') not in ssgan.ROTATIONS:
      _fail('ssgan.rotations', ss.rotations, f'choose one of {ssgan.ROTATIONS}.')
    need.append('rotation')
  if im is not None and im.enabled:
    if not isinstance(im.weight, int | float) or im.weight < 0:
      _fail('infomax.weight', im.weight, 'use a value >= 0 (Mimicry: 0.2).')
    if im.get('negatives', 'same_position') not in infomax.NEGATIVES:
      _fail('infomax.negatives', im.negatives, f'choose one of {infomax.NEGATIVES}.')
    need.append('infomax')
  if not need:
    return
  section = ' and '.join({'rotation': 'ssgan', 'infomax': 'infomax'}[k] + '.enabled' for k in need)
  if config.model not in SELFSUP_MODELS:
    _fail(
      'model',
      config.model,
      f'{section} needs a D with self-supervised heads: use one of {SELFSUP_MODELS}.',
    )
  kwargs = config.get('model_kwargs') or {}
  head = kwargs.get('d_aux_head', kwargs.get('aux_head', 'none'))
  missing = [kind for kind in need if kind not in str(head).split('+')]
  if missing:
    _fail(
      'model_kwargs.aux_head',
      head,
      f"{section} needs D's {' and '.join(missing)} head: set "
      f'--config.model_kwargs.aux_head={"+".join(need)}.',
    )


def make_optimizer(
  opt: ml_collections.ConfigDict, skip_nonfinite: bool
) -> optax.GradientTransformation:
  """Adam (or AdamW when ``weight_decay > 0``) from an optimizer config section."""
  if opt.get('weight_decay', 0.0) > 0:
    tx = optax.adamw(opt.lr, b1=opt.b1, b2=opt.b2, weight_decay=opt.weight_decay)
  else:
    tx = optax.adam(opt.lr, b1=opt.b1, b2=opt.b2)
  if skip_nonfinite:
    tx = optax.apply_if_finite(tx, max_consecutive_errors=1_000_000)
  return tx


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
  """The pieces of one run, built from a config by :func:`build_run`."""

  config: ml_collections.ConfigDict
  arrays: dict
  image_shape: tuple
  g_module: object
  d_module: object
  game: Game
  g_tx: optax.GradientTransformation
  d_tx: optax.GradientTransformation
  adversarial_step: Callable
  coop_step: Callable | None = None
  sparse_config: sparse.DDSTConfig | None = None
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
    if self.coop_step is not None:
      state = coopinit.with_coop_state(state)
    if self.sparse_config is not None:
      state = sparse.init_sparse_state(state, self.sparse_config)
    if self.config.get('lottery', {}).get('ticket', ''):
      state = sparse.sparsify_state(state)  # rewinding: theta0 * mask, EMA = rewound G
    return state

  def compiled_step(self, mesh) -> Callable:
    """The step the loop calls, compiled data-parallel over ``mesh``.

    With CoopInit, the cooperative step runs until ``coopinit.t_init`` and the
    adversarial one after it; the phase lives in the state (resumable).
    """
    adversarial = parallel.jit_data_parallel(self.adversarial_step, mesh)
    if self.coop_step is None:
      return adversarial
    coop_cfg = self.config.coopinit
    return coopinit.make_phased_step(
      parallel.jit_data_parallel(self.coop_step, mesh),
      adversarial,
      coop_cfg.t_init,
      g_tx=self.g_tx,
      d_tx=self.d_tx,
      reset_moments=coop_cfg.reset_moments,
      jit=False,
    )

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

  def before_step(self, state: GANState, step: int) -> GANState:
    del step
    return state

  def after_step(
    self, state: GANState, metrics: dict, step: int, batch: dict
  ) -> tuple[GANState, dict]:
    """Slow schedules after step ``step`` (0-based): sparse prune/regrow, DDST.

    During a CoopInit phase the masks stay as they are (the masked optimizers
    keep pruned weights at zero); prune/regrow, the BR window and the D-density
    controller act on adversarial steps only, since the balance ratio and the
    RigL gradients are those of the adversarial game. With
    ``config.monitor_lipschitz`` the logs of every ``log_every``-th step also
    hold D's input-gradient norms (:mod:`jaxgan.lipschitz`) on that step's real
    batch and fresh fakes.
    """
    real = batch['image'][: self.config.batch_size]
    logs = {}
    done = step + 1
    if self.config.get('monitor_lipschitz', False) and (
      done % self.config.log_every == 0 or done == self.config.num_steps
    ):
      logs.update(jax.device_get(self._lipschitz_fn()(state, real)))
    if self.sparse_config is None:
      return state, logs
    if self.coop_step is not None and step < self.config.coopinit.t_init:
      return state, logs
    g_grads, d_grads = self._grad_fns()
    real_label = None
    if self.game.conditional:
      real_label = jnp.asarray(batch['label'][: self.config.batch_size], jnp.int32)
    state, sparse_logs = sparse.sparse_after_step(
      state,
      metrics,
      done,
      self.sparse_config,
      g_grads_fn=g_grads,
      d_grads_fn=lambda s: d_grads(s, real, real_label),
    )
    return state, {**logs, **sparse_logs}

  def _lipschitz_fn(self):
    """Jitted ``(state, real) -> lipschitz/*`` norms of D at the state (EMA-free G)."""
    if getattr(self, '_lipschitz', None) is None:
      game = self.game

      @jax.jit
      def norms(state, real):
        key = jax.random.fold_in(step_key(state), 103)
        k_z, k_eps = jax.random.split(key)
        z = game.sample_latents(k_z, real.shape[0])
        fake, _ = game.g_apply(state.g.variables, z, train=True)
        d_fn = frozen_logits_fn(game, state.d.variables)
        return lipschitz.input_gradient_norms(d_fn, real, jax.lax.stop_gradient(fake), k_eps)

      self._lipschitz = norms
    return self._lipschitz

  def _grad_fns(self):
    """Jitted dense gradients of G's and D's losses (RigL regrowth)."""
    if getattr(self, '_grads', None) is None:
      game, b = self.game, self.config.batch_size

      @jax.jit
      def g_grads(state):
        k_z = jax.random.fold_in(step_key(state), 101)
        z = game.sample_latents(k_z, b)
        kw = label_kwargs(sample_labels(game, jax.random.fold_in(k_z, 1), b))
        d_vars = jax.lax.stop_gradient(state.d.variables)

        def g_loss(gp):
          fake, _ = game.g_apply({'params': gp, **state.g.model_state}, z, train=True, **kw)
          return game.loss.g_loss(game.d_apply(d_vars, fake, train=True, **kw)[0])

        return jax.grad(g_loss)(state.g.params)

      @jax.jit
      def d_grads(state, real, real_label=None):
        k_z = jax.random.fold_in(step_key(state), 102)
        z = game.sample_latents(k_z, real.shape[0])
        y = sample_labels(game, jax.random.fold_in(k_z, 1), real.shape[0])
        g_vars = jax.lax.stop_gradient(state.g.variables)
        fake, _ = game.g_apply(g_vars, z, train=True, **label_kwargs(y))

        def d_loss(dp):
          fake_in = jax.lax.stop_gradient(fake)
          q, p, _ = d_forward(game, dp, state.d.model_state, real, fake_in, real_label, y)
          return game.loss.d_loss(q, p)

        return jax.grad(d_loss)(state.d.params)

      self._grads = (g_grads, d_grads)
    return self._grads

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
      _fail(
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


def build_game(config: ml_collections.ConfigDict, g_module, d_module, image_shape: tuple) -> Game:
  """The Game of this config: loss, latents, regularizers, technique hooks."""
  g_apply, d_apply = make_apply(g_module), make_apply(d_module)
  num_classes = models.num_classes_of(g_module, d_module)
  for name in ('advaug', 'ssgan', 'infomax'):
    if num_classes and config.get(name, {}).get('enabled', False):
      _fail(
        f'{name}.enabled',
        True,
        f'{name} does not take class labels yet, and the models are class-conditional '
        f'(num_classes={num_classes}). Set {name}.enabled=False, or model_kwargs.num_classes=0.',
      )
  d_regs = []
  if config.r1_weight > 0:
    d_regs.append(regularizers.r1_penalty(d_apply, config.r1_weight))
  if config.gp_weight > 0:
    d_regs.append(regularizers.wgan_gp_penalty(d_apply, config.gp_weight))
  loss = losses.get_loss(config.loss)
  g_regs = []
  transform = augment.make_diff_augment(config.diffaugment) if config.diffaugment else None
  if config.advaug.enabled:
    cfg = advaug.AdvAugConfig(
      steps=config.advaug.steps,
      step_size=config.advaug.step_size,
      norm=config.advaug.norm,
      direction=config.advaug.direction,
      weight=config.advaug.weight,
    )
    d_template = advaug.perturbation_template(d_module, jnp.zeros((2, *image_shape)))
    g_template = advaug.perturbation_template(g_module, jnp.zeros((2, config.latent_dim)))
    d_regs.append(advaug.make_d_regularizer(d_apply, loss, cfg, d_template))
    # DiffAugment reaches G's clean loss only: the reference's adversarial G branch augments nothing.
    g_regs.append(advaug.make_g_regularizer(g_apply, d_apply, loss, cfg, g_template))
  ss, im = config.get('ssgan'), config.get('infomax')
  if ss is not None and ss.enabled:  # rotation losses on clean (not DAT-perturbed) images
    rot = selfsup.rotation_apply(d_module)
    if ss.d_weight > 0:
      d_regs.append(ssgan.make_d_regularizer(rot, ss.d_weight, ss.get('rotations', 'all')))
    if ss.g_weight > 0:
      g_regs.append(
        ssgan.make_g_regularizer(g_apply, rot, ss.g_weight, transform, ss.get('rotations', 'all'))
      )
  if im is not None and im.enabled and im.weight > 0:  # InfoMax on clean images too
    feats, neg = selfsup.infomax_apply(d_module), im.get('negatives', 'same_position')
    d_regs.append(infomax.make_d_regularizer(feats, im.weight, neg))
    g_regs.append(infomax.make_g_regularizer(g_apply, feats, im.weight, neg, transform))
  perturbation = None
  if config.dat.enabled:
    perturbation = dat.make_dat_perturbation(
      steps=config.dat.steps,
      step_size=config.dat.step_size,
      clip=config.dat.clip if config.dat.clip > 0 else None,
      clamp_real=config.dat.clamp_real,
    )
  return Game(
    g_apply=g_apply,
    d_apply=d_apply,
    loss=loss,
    sample_latents=gaussian_latents(config.latent_dim),
    d_regularizers=tuple(d_regs),
    g_regularizers=tuple(g_regs),
    d_input_transform=transform,
    d_perturbation=perturbation,
    d_batch_coupled=models.d_is_batch_coupled(d_module),
    num_classes=num_classes,
  )


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


def _ticket_masks(path: str) -> Callable:
  """``params -> masks`` of a saved lottery ticket (``lottery.masks_to_arrays`` as .npz).

  G then trains from ``theta0 * mask`` (the seed's initial weights, i.e. rewound),
  with pruned weights receiving no gradient and no Adam moments (the reference).
  """
  with np.load(path) as f:
    arrays = {k: f[k] for k in f.files}
  return lambda params: lottery.masks_from_arrays(arrays, params)


def build_run(config: ml_collections.ConfigDict) -> Run:
  """Builds every piece of the run; all config errors surface here."""
  validate_config(config)
  arrays = load_training_arrays(config)
  image_shape = tuple(arrays['image'].shape[1:])
  model_kwargs = dict(config.get('model_kwargs', {}))
  if config.precision == 'bfloat16':
    model_kwargs['dtype'] = jnp.bfloat16
  g_module, d_module = models.get_models(
    config.model, latent_dim=config.latent_dim, image_shape=image_shape, **model_kwargs
  )
  if config.batch_size * config.n_dis > len(arrays['image']):
    _fail(
      'batch_size', config.batch_size, f'it exceeds the {len(arrays["image"])} training examples.'
    )
  skip = config.get('skip_nonfinite_updates', False)
  g_tx = make_optimizer(config.g_optimizer, skip)
  d_tx = make_optimizer(config.d_optimizer, skip)
  sparse_cfg = None
  if config.sparse.enabled:
    sc = config.sparse
    sparse_cfg = sparse.ddst_config(
      sc.variant,
      total_steps=config.num_steps,
      g_density=sc.g_density,
      d_density=sc.d_density if sc.d_density > 0 else sc.g_density,
      g_update_every=sc.g_update_every,
      d_control_every=sc.d_control_every,
      br_freq=sc.br_freq,
      br_window=sc.br_window,
    )
    g_tx, d_tx = sparse.sparse_optimizers(
      g_tx, d_tx, jax.random.PRNGKey(config.seed + 1), sparse_cfg
    )
  ticket = config.get('lottery', {}).get('ticket', '')
  if ticket:
    g_tx = sparse.masked(g_tx, _ticket_masks(ticket), grad_mode='masked')
  game = build_game(config, g_module, d_module, image_shape)
  if game.conditional and config.get('monitor_lipschitz', False):
    _fail(
      'monitor_lipschitz',
      True,
      'the input-gradient monitor scores one batch with one D function and does not take class '
      'labels yet: turn it off for a class-conditional model.',
    )
  if game.conditional:
    labels = np.asarray(arrays['label'])
    if labels.min() < 0 or labels.max() >= game.num_classes:
      _fail(
        'model_kwargs.num_classes',
        game.num_classes,
        f'dataset {config.dataset!r} has labels in [{labels.min()}, {labels.max()}]; a '
        'conditional model needs labels in [0, num_classes) (use num_classes=0 for '
        'unlabelled data).',
      )
  coop = None
  if config.coopinit.enabled:
    c = config.coopinit
    coop = coopinit.coop_step(
      game,
      g_tx,
      d_tx,
      langevin=coopinit.LangevinConfig(
        step_size=c.step_size,
        n_steps=c.n_steps,
        noise_scale=c.noise_scale,
        clip=None if config.dataset in TOY_DATASETS else (-1.0, 1.0),
      ),
      teach_sigma=c.teach_sigma,
      ema_decay=config.ema_decay if config.ema_decay > 0 else None,
    )
  run = Run(
    config=config,
    arrays=arrays,
    image_shape=image_shape,
    g_module=g_module,
    d_module=d_module,
    game=game,
    g_tx=g_tx,
    d_tx=d_tx,
    adversarial_step=build_step(
      config,
      game,
      g_tx,
      d_tx,
      measure_balance=sparse_cfg is not None and sparse_cfg.d_control is not None,
    ),
    coop_step=coop,
    sparse_config=sparse_cfg,
  )
  if config.eval_samples:
    generate, sample = run.eval_functions()
    run.evaluate_fn = evaluation.make_evaluator(config, generate, sample, image_shape)
  return run
