"""Tiny G and D for exactness tests of the steps (fast to trace, float64-able)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgan import losses
from jaxgan.game import Game, make_apply
from jaxgan.state import create_state

IMAGE_SHAPE = (2, 2, 1)
LATENT_DIM = 3


class TinyG(nn.Module):
  """z [B, 3] -> images [B, 2, 2, 1] in (-1, 1)."""

  @nn.compact
  def __call__(self, z, train: bool):
    h = jnp.tanh(nn.Dense(5)(z))
    return jnp.tanh(nn.Dense(4)(h)).reshape(z.shape[0], *IMAGE_SHAPE)


class TinyD(nn.Module):
  """images -> logits [B]; ``coupled`` subtracts the batch mean of the hidden layer."""

  coupled: bool = False

  @nn.compact
  def __call__(self, x, train: bool):
    h = nn.Dense(6)(x.reshape(x.shape[0], -1))
    if self.coupled:
      h = h - jnp.mean(h, axis=0, keepdims=True)
    h = jnp.tanh(h)
    return nn.Dense(1)(h)[:, 0]


class TinyPatchD(nn.Module):
  """images -> three per-sample "patch" logits ``[B, 3]`` (for ``Game(d_patch_logits=True)``)."""

  @nn.compact
  def __call__(self, x, train: bool):
    h = jnp.tanh(nn.Dense(6)(x.reshape(x.shape[0], -1)))
    return nn.Dense(3)(h)


class TinyBND(nn.Module):
  """A D with BatchNorm (batch statistics in train mode, running stats stored)."""

  @nn.compact
  def __call__(self, x, train: bool):
    h = nn.Dense(6)(x.reshape(x.shape[0], -1))
    h = nn.BatchNorm(use_running_average=not train, momentum=0.9)(h)
    return nn.Dense(1)(jnp.tanh(h))[:, 0]


def fixed_latents(z):
  """A latent sampler that ignores the key (so a test knows the z a step used)."""
  return lambda key, n: z[:n]


def make_game(loss_name='ns', *, d_module=None, z=None, **game_kwargs):
  """A game of TinyG and ``d_module`` (default TinyD) with fixed latents ``z``.

  D is declared per-sample (``d_batch_coupled=False``) unless ``game_kwargs``
  say otherwise; pass ``d_batch_coupled=None`` to have it detected from D.
  """
  game_kwargs.setdefault('d_batch_coupled', False)
  d_module = d_module or TinyD()
  g_module = TinyG()
  if z is None:
    z = jax.random.normal(jax.random.PRNGKey(7), (8, LATENT_DIM))
  game = Game(
    g_apply=make_apply(g_module),
    d_apply=make_apply(d_module),
    loss=losses.get_loss(loss_name),
    sample_latents=fixed_latents(z),
    **game_kwargs,
  )
  return game, g_module, d_module


def make_state(g_module, d_module, g_tx=None, d_tx=None, seed=0, use_ema=False):
  return create_state(
    jax.random.PRNGKey(seed),
    g_module=g_module,
    d_module=d_module,
    g_tx=g_tx or optax.identity(),
    d_tx=d_tx or optax.identity(),
    latent_dim=LATENT_DIM,
    image_shape=IMAGE_SHAPE,
    use_ema=use_ema,
  )


def real_batch(n=8, seed=1):
  return {
    'image': jax.random.uniform(jax.random.PRNGKey(seed), (n, *IMAGE_SHAPE), minval=-1, maxval=1)
  }


def to_f64(tree):
  """Casts every floating leaf to float64 (call inside ``jax.enable_x64``)."""
  return jax.tree.map(
    lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree
  )


def grads_from_identity_update(before, after):
  """With ``optax.identity()`` an update adds the gradient: recover it."""
  return jax.tree.map(lambda a, b: b - a, before, after)


def init_d(d, shape, seed=0):
  """D's variables as the training state holds them, filled with numpy draws.

  Shapes come from ``jax.eval_shape`` of Flax's init (its threefry kernels are slow
  to compile on a shared CPU); AdvAug's 'perturbations' inputs are dropped.
  """
  shapes = jax.eval_shape(lambda: d.init(jax.random.PRNGKey(0), jnp.zeros((2, *shape)), False))
  rng = np.random.default_rng(seed)

  def leaf(path, s):
    if 'var' in jax.tree_util.keystr(path) or 'sigma' in jax.tree_util.keystr(path):
      return jnp.ones(s.shape, s.dtype)
    return jnp.asarray(0.1 * rng.standard_normal(s.shape), s.dtype)

  variables = jax.tree_util.tree_map_with_path(leaf, shapes)
  return {k: v for k, v in variables.items() if k != 'perturbations'}
