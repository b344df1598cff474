"""Base config: every field of a jaxgan run, with its default.

Other configs import this and override what differs. Run any config with
  python -m experiments.main --config experiments/configs/NAME.py --workdir DIR [--config.key=value ...]
"""

import ml_collections


def optimizer(lr=2e-4, b1=0.5, b2=0.999, weight_decay=0.0, schedule='constant', decay_from=0.5):
  """Adam's settings; ``schedule='linear_decay'`` lowers ``lr`` linearly to 0 from the
  ``decay_from`` share of the run's optimizer updates to its last one."""
  return ml_collections.ConfigDict(
    dict(lr=lr, b1=b1, b2=b2, weight_decay=weight_decay, schedule=schedule, decay_from=decay_from)
  )


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  # Data: 'mnist5k' (offline), 'digits8x8', 'stacked_mnist', '8ring', '25grid', or a tfds name.
  c.dataset = 'mnist5k'
  c.data_dir = ''  # '' = $JAXGAN_DATA_DIR or ~/.cache/jaxgan/tensorflow_datasets
  c.subset = ml_collections.ConfigDict(dict(fraction=0.0, count=0, seed=0, class_balanced=False))
  c.pad_to = 0  # e.g. 32 to train 32x32 models on 28x28 MNIST
  c.toy_points = 100_000  # size of the sampled 2-D mixture training set
  # Models: see jaxgan.models.get_models.
  c.model = 'dcgan28'
  c.model_kwargs = ml_collections.ConfigDict()
  c.latent_dim = 100
  # Game and trainer.
  c.loss = 'ns'  # minimax | ns | wgan | hinge | lsgan
  c.trainer = 'two_stage'  # two_stage | one_stage
  c.onestage_mode = 'auto'  # auto | symmetric | asymmetric | exact
  c.n_dis = 1
  c.batch_size = 64
  c.num_steps = 2000
  c.g_optimizer = optimizer()
  c.d_optimizer = optimizer()
  # EMA of G, started at G's initial weights: after N steps they still weigh decay**N in it
  # (0.999: 37% after 1,000 steps, 14% after 2,000), so keep decay**num_steps small.
  c.ema_decay = 0.999  # 0 = no EMA generator
  c.weight_clip = 0.0  # WGAN critic clipping (0.01 in the reference); 0 = off
  c.r1_weight = 0.0
  c.gp_weight = 0.0
  # Skip an update whose gradients are not finite (optax.apply_if_finite around both
  # optimizers) instead of stopping the run; may be switched on or off when resuming.
  c.skip_nonfinite_updates = False
  # Divergence guard (0 = off): stop like on NaN when the L2 norm of G's or D's parameters
  # exceeds max_param_norm, or when |mean D logit| or a normalization statistic (BatchNorm
  # running mean/variance) exceeds max_activation. With a bound set, the values are logged as
  # guard/* so you can pick bounds from a healthy run.
  c.guard = ml_collections.ConfigDict(dict(max_param_norm=0.0, max_activation=0.0))
  c.precision = 'float32'  # bfloat16: compute in bf16 on accelerators; params/opt state stay f32
  # Techniques (each off by default; see README for which combinations are valid).
  c.diffaugment = ''  # DiffAugment policy, e.g. 'color,translation,cutout'
  c.dat = ml_collections.ConfigDict(
    dict(enabled=False, steps=1, step_size=1.0, clip=1.0, clamp_real=False)
  )
  # AdvAug direction: 'reference' (the authors' PGD, ascending D's mean output) or 'paper' (the
  # paper's equations) and two more, see jaxgan.advaug.
  c.advaug = ml_collections.ConfigDict(
    dict(enabled=False, steps=1, step_size=0.01, norm='linf', direction='reference', weight=1.0)
  )
  c.coopinit = ml_collections.ConfigDict(
    dict(
      enabled=False,
      t_init=200,
      step_size=0.01,
      n_steps=10,
      noise_scale=0.01,
      teach_sigma=0.3,
      logit_penalty=0.0,
      reset_moments=False,
    )
  )
  # Self-supervised D terms (need a D head: model_kwargs.aux_head='rotation', 'infomax' or
  # 'rotation+infomax'; models sngan32/dcgan*). SSGAN rotation CE on rotated reals (D) and
  # fakes (G), rotations 'all' (4B images) or Mimicry's 'quarter' (B images); InfoMax-GAN
  # local/global InfoNCE ('same_position' or Mimicry's 'all_positions' negatives). Weights
  # are Mimicry's; both act on clean (not DAT-perturbed) images.
  c.ssgan = ml_collections.ConfigDict(
    dict(enabled=False, d_weight=1.0, g_weight=0.2, rotations='all')
  )
  c.infomax = ml_collections.ConfigDict(dict(enabled=False, weight=0.2, negatives='same_position'))
  # Sparse G and D: variant 'sdst' (dynamic G, static D), 'relax'/'strict' (DDST), 'static'.
  c.sparse = ml_collections.ConfigDict(
    dict(
      enabled=False,
      variant='relax',
      g_density=0.1,
      d_density=0.0,
      g_update_every=500,
      d_control_every=1000,
      br_freq=10,
      br_window=1000,
    )
  )  # d_density 0 = same as G; defaults are the reference's (ddst.md)
  # Lottery ticket: .npz of G masks (experiments.lottery_mnist); G trains from theta0 * mask.
  c.lottery = ml_collections.ConfigDict(dict(ticket=''))
  c.inception_weights = ''  # converted Inception-v3 weights for FID on non-MNIST data
  # Schedule of the loop.
  c.log_every = 50
  c.monitor_lipschitz = False  # log D's input-gradient norms (jaxgan.lipschitz) at log steps
  c.sample_every = 500
  c.eval_every = 0  # 0 = only at the end if eval_samples > 0
  c.eval_samples = 1000
  c.checkpoint_every = 500
  c.keep_checkpoints = 3
  c.best_metric = ''  # e.g. 'fid' to keep the best checkpoint by it
  c.best_mode = 'min'
  c.distributed = False  # call jax.distributed.initialize() (multi-host)
  # Resuming: the config must match the checkpoint's, except for the loop's own fields
  # (logging, sampling, evaluation, checkpointing, num_steps in a dense run). List fields you
  # change on purpose, comma-separated: e.g. 'num_steps,d_optimizer.lr' ('d_optimizer' covers
  # the whole section).
  c.allow_changes = ''
  c.dry_run = False  # validate, build, run (and so compile) one step, write nothing, exit
  return c
