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

Every name and submodule (``jaxgan.models``, ``jaxgan.data``, ``jaxgan.metrics``, the
training program ``jaxgan.train``...) is imported on first access, so optional
dependencies (tensorflow-datasets, orbax, matplotlib...) load only when used.
"""

from __future__ import annotations

import importlib

from jaxgan._version import __version__

# Public names and the submodule each comes from. Nothing is imported until first use, so
# ``import jaxgan.config_checks`` (the command line's validation) loads no JAX at all.
_NAMES = {
  'LangevinConfig': 'coopinit',
  'coop_step': 'coopinit',
  'DATConfig': 'dat',
  'dat_d_gradients': 'dat',
  'dat_d_loss': 'dat',
  'make_dat_perturbation': 'dat',
  'Game': 'game',
  'gaussian_latents': 'game',
  'make_apply': 'game',
  'GANLoss': 'losses',
  'get_loss': 'losses',
  'from_nnx': 'nnx_adapter',
  'to_nnx': 'nnx_adapter',
  'one_stage_step': 'onestage',
  'GANState': 'state',
  'Player': 'state',
  'create_state': 'state',
  'create_state_from_variables': 'state',
  'DEFAULT_EMA_DECAY': 'steps',
  'GANGradients': 'steps',
  'd_gradients': 'steps',
  'g_gradients': 'steps',
  'two_stage_step': 'steps',
}
# Submodules, loaded on first access (``jaxgan.models`` etc.).
_MODULES = (
  'advaug',
  'augment',
  'checkpoint',
  'checks',
  'cli',
  'config_checks',
  'coopinit',
  'dat',
  'data',
  'distill',
  'evaluation',
  'game',
  'infomax',
  'lipschitz',
  'losses',
  'metrics',
  'models',
  'nn',
  'nnx_adapter',
  'onestage',
  'parallel',
  'regularizers',
  'run_setup',
  'sparse',
  'ssgan',
  'state',
  'steps',
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
  if name in _NAMES:
    return getattr(importlib.import_module(f'{__name__}.{_NAMES[name]}'), name)
  if name in _MODULES:
    return importlib.import_module(f'{__name__}.{name}')
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(_NAMES) | set(_MODULES))
