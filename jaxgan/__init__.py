"""jaxgan: pure-functional GAN training techniques in JAX/Flax.

The functional API, importable with JAX, Flax, optax, chex and NumPy alone:

* the problem: :class:`Game`, :func:`make_apply` (Flax Linen),
  :func:`from_nnx`/:func:`to_nnx` (Flax NNX), :func:`get_loss`,
  :func:`gaussian_latents`;
* gradients for your own loop (``TrainState``, ``nnx.Optimizer``, any optax
  chain): :func:`jaxgan.onestage.gradients`, :func:`d_gradients` and
  :func:`g_gradients` (two-stage), :func:`jaxgan.coopinit.gradients`,
  :func:`dat_d_gradients`;
* complete steps over a :class:`GANState`: :func:`one_stage_step`,
  :func:`two_stage_step`, :func:`coop_step`, with :func:`create_state` (Linen)
  or :func:`create_state_from_variables` (anything else);
* techniques as modules: :mod:`jaxgan.augment` (DiffAugment), :mod:`jaxgan.dat`,
  :mod:`jaxgan.sparse`, :mod:`jaxgan.coopinit`, :mod:`jaxgan.regularizers`.

Everything else (``jaxgan.models``, ``jaxgan.data``, ``jaxgan.metrics``, the
training program ``jaxgan.train``...) is imported on first access, so optional
dependencies (tensorflow-datasets, orbax, matplotlib...) load only when used.
"""

from __future__ import annotations

import importlib

from jaxgan import (
  augment,
  checks,
  coopinit,
  dat,
  game,
  losses,
  nnx_adapter,
  onestage,
  regularizers,
  sparse,
  state,
  steps,
)
from jaxgan._version import __version__
from jaxgan.coopinit import LangevinConfig, coop_step
from jaxgan.dat import DATConfig, dat_d_gradients, dat_d_loss, make_dat_perturbation
from jaxgan.game import Game, gaussian_latents, make_apply
from jaxgan.losses import GANLoss, get_loss
from jaxgan.nnx_adapter import from_nnx, to_nnx
from jaxgan.onestage import one_stage_step
from jaxgan.state import GANState, Player, create_state, create_state_from_variables
from jaxgan.steps import (
  DEFAULT_EMA_DECAY,
  GANGradients,
  d_gradients,
  g_gradients,
  two_stage_step,
)

# Submodules loaded on first access (``jaxgan.models`` etc.).
_LAZY = (
  'advaug',
  'checkpoint',
  'cli',
  'data',
  'distill',
  'evaluation',
  'infomax',
  'lipschitz',
  'metrics',
  'models',
  'nn',
  'parallel',
  'run_setup',
  'ssgan',
  'train',
  'translation',
  'writers',
)

__all__ = [
  'DATConfig',
  'DEFAULT_EMA_DECAY',
  'GANGradients',
  'GANLoss',
  'GANState',
  'Game',
  'LangevinConfig',
  'Player',
  '__version__',
  'augment',
  'checks',
  'coop_step',
  'coopinit',
  'create_state',
  'create_state_from_variables',
  'd_gradients',
  'dat',
  'dat_d_gradients',
  'dat_d_loss',
  'from_nnx',
  'g_gradients',
  'game',
  'gaussian_latents',
  'get_loss',
  'losses',
  'make_apply',
  'make_dat_perturbation',
  'nnx_adapter',
  'one_stage_step',
  'onestage',
  'regularizers',
  'sparse',
  'state',
  'steps',
  'to_nnx',
  'two_stage_step',
]


def __getattr__(name: str):
  if name in _LAZY:
    return importlib.import_module(f'{__name__}.{name}')
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(_LAZY))
