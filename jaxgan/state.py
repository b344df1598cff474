"""Training state of a GAN as explicit pytrees.

:class:`GANState` holds everything a run needs to continue: the step, the run's
RNG key, per player the params, the non-trained model collections and the
optimizer state, the EMA of G's params, and a dict of technique state
(``extra``, e.g. the CoopInit phase or the DDST balance-ratio queue). Optimizers
themselves (``optax.GradientTransformation``) are static and passed to the step
builders; everything that changes is here, so one checkpoint is complete.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxgan.game import refuse_nnx, takes_train

PyTree = Any


@flax.struct.dataclass
class Player:
  """One network with its optimizer state.

  Attributes:
    params: trained parameters.
    model_state: other Flax collections (``batch_stats``, spectral-norm
      vectors); ``{}`` when there are none.
    opt_state: the optax state of this player's transformation.
  """

  params: PyTree
  model_state: dict
  opt_state: PyTree

  @property
  def variables(self) -> dict:
    return {'params': self.params, **self.model_state}


@flax.struct.dataclass
class GANState:
  """The whole state of a GAN run.

  Attributes:
    step: iterations done (int32 scalar).
    rng: the run's base key; step ``t`` uses ``fold_in(rng, t)``.
    g: the generator.
    d: the discriminator.
    ema_params: exponential moving average of G's params (``None`` if off).
    extra: technique state by name (``{}`` if none).
  """

  step: jax.Array
  rng: jax.Array
  g: Player
  d: Player
  ema_params: PyTree | None
  extra: dict


def split_variables(variables: dict) -> tuple[PyTree, dict]:
  """``{'params': p, **model_state}`` -> ``(p, model_state)``, with a clear error."""
  if not isinstance(variables, dict) or 'params' not in variables:
    got = sorted(variables) if isinstance(variables, dict) else type(variables).__name__
    raise ValueError(
      f"variables must be a dict {{'params': ..., **model_state}}, got {got}; e.g. "
      "{'params': train_state.params} or {'params': ..., 'batch_stats': ...}."
    )
  return variables['params'], {k: v for k, v in variables.items() if k != 'params'}


def player_from_variables(variables: dict, tx: optax.GradientTransformation) -> Player:
  """A :class:`Player` from ``{'params': ..., **model_state}`` and its optimizer.

  AdvAug's ``'perturbations'`` collection (an input, not state) is dropped.
  """
  params, model_state = split_variables(variables)
  model_state.pop('perturbations', None)
  return Player(params=params, model_state=model_state, opt_state=tx.init(params))


def init_variables(
  module_init, key: jax.Array, example_input: jax.Array, example_label: jax.Array | None = None
) -> dict:
  """A Flax Linen module's variables, ``{'params': ..., **model_state}``.

  Args:
    module_init: the module's ``init``, called as ``init(rngs, x, train=False)``
      (without ``train`` when the module's ``__call__`` has no such parameter).
    key: PRNG key.
    example_input: an input batch of the right shape (values unused).
    example_label: int labels ``[B]`` for a class-conditional module (passed
      as its second argument), else ``None``.
  """
  module = getattr(module_init, '__self__', None)
  kwargs = {'train': False} if module is None or takes_train(module.__call__) else {}
  params_key, dropout_key = jax.random.split(key)
  args = (example_input,) if example_label is None else (example_input, example_label)
  # One compiled init: run op by op, a large model's init compiles every distinct op.
  init = jax.jit(lambda rngs, *a: module_init(rngs, *a, **kwargs))
  return dict(init({'params': params_key, 'dropout': dropout_key}, *args))


def init_player(
  module_init,
  key: jax.Array,
  example_input: jax.Array,
  tx: optax.GradientTransformation,
  example_label: jax.Array | None = None,
) -> Player:
  """Initializes a Flax module (:func:`init_variables`) and its optimizer state."""
  return player_from_variables(init_variables(module_init, key, example_input, example_label), tx)


def create_state_from_variables(
  rng: jax.Array,
  *,
  g_variables: dict,
  d_variables: dict,
  g_tx: optax.GradientTransformation,
  d_tx: optax.GradientTransformation,
  use_ema: bool = True,
  extra: dict | None = None,
) -> GANState:
  """A fresh :class:`GANState` from G's and D's variables, whatever made them.

  Use it for models that are not Flax Linen modules (Flax NNX through
  :func:`jaxgan.nnx_adapter.from_nnx`, hand-written apply functions).

  Args:
    rng: the run's base key, used as is (step ``t`` draws from
      ``fold_in(rng, t)``).
    g_variables: ``{'params': ..., **model_state}`` of G.
    d_variables: the same for D.
    g_tx: G's optimizer; ``d_tx``: D's.
    use_ema: keep an EMA copy of G's params (initialized to G's params; the
      steps update it).
    extra: initial technique state.
  """
  g = player_from_variables(g_variables, g_tx)
  d = player_from_variables(d_variables, d_tx)
  return GANState(
    step=jnp.zeros((), jnp.int32),
    rng=rng,
    g=g,
    d=d,
    ema_params=jax.tree.map(jnp.copy, g.params) if use_ema else None,
    extra=dict(extra or {}),
  )


def create_state(
  key: jax.Array,
  *,
  g_module,
  d_module,
  g_tx: optax.GradientTransformation,
  d_tx: optax.GradientTransformation,
  latent_dim: int,
  image_shape: tuple[int, int, int],
  use_ema: bool = True,
  extra: dict | None = None,
  num_classes: int = 0,
  g_input_shape: tuple[int, ...] | None = None,
) -> GANState:
  """Builds a fresh :class:`GANState` for Flax Linen G and D.

  Args:
    key: PRNG key; the G/D init keys and the run key are derived from it.
    g_module: generator, ``__call__(z [B, nz], train) -> [B, H, W, C]``
      (``train`` optional, see :func:`jaxgan.game.make_apply`).
    d_module: discriminator, ``__call__(x [B, H, W, C], train) -> [B]``.
    g_tx: G's optimizer; ``d_tx``: D's.
    latent_dim: ``nz``.
    image_shape: ``(H, W, C)``; ``(D,)`` for D-dimensional toy data.
    use_ema: keep an EMA copy of G's params (initialized to G's params). The
      steps update it (``ema_decay``, default 0.999); pass False for no EMA.
    extra: initial technique state.
    num_classes: ``K > 0`` for class-conditional G and D (initialized with
      labels, as :class:`jaxgan.game.Game` ``num_classes``).
    g_input_shape: the shape of one input of G (default ``(latent_dim,)``), e.g.
      ``image_shape`` for an image-to-image G; ``latent_dim`` is then unused.
  """
  refuse_nnx(g_module, 'create_state')
  refuse_nnx(d_module, 'create_state')
  if g_input_shape is None and latent_dim <= 0:
    raise ValueError(f'latent_dim must be positive, got {latent_dim}.')
  if len(image_shape) not in (1, 3):
    raise ValueError(f'image_shape must be (H, W, C) (or (D,) for points), got {image_shape!r}.')
  g_key, d_key, run_key = jax.random.split(key, 3)
  y = jnp.zeros((2,), jnp.int32) if num_classes > 0 else None
  g_example = jnp.zeros((2, *(g_input_shape or (latent_dim,))), jnp.float32)
  return create_state_from_variables(
    run_key,
    g_variables=init_variables(g_module.init, g_key, g_example, y),
    d_variables=init_variables(d_module.init, d_key, jnp.zeros((2, *image_shape), jnp.float32), y),
    g_tx=g_tx,
    d_tx=d_tx,
    use_ema=use_ema,
    extra=extra,
  )
