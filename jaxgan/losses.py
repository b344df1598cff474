"""GAN losses as per-sample terms.

A :class:`GANLoss` is three elementwise functions of D's logits, ``d_real(q)``
(D's term on a real sample, ``f_r``), ``d_fake(p)`` (D's term on a fake, ``f``)
and ``g_fake(p)`` (G's term on a fake, ``g``), with the ``symmetric`` flag
(``g == -f``) and the one-stage ratio ``gamma(p) = g'(p) / f'(p)`` in closed form
(Shen et al., CVPR 2021). Nothing here reduces over a batch except
:meth:`GANLoss.d_loss` / :meth:`GANLoss.g_loss`, which take the mean.

=============  ==============  ============  ============  ===========  ==================
name           d_real(q)       d_fake(p)     g_fake(p)     symmetric    gamma(p)
=============  ==============  ============  ============  ===========  ==================
minimax        softplus(-q)    softplus(p)   -softplus(p)  yes          -1
ns             softplus(-q)    softplus(p)   softplus(-p)  no           -exp(-p)
wgan           -q              p             -p            yes          -1
hinge          relu(1 - q)     relu(1 + p)   -p            no           -1/[p > -1]
lsgan          (q-b)^2/2       (p-a)^2/2     (p-c)^2/2     no           (p-c)/(p-a)
=============  ==============  ============  ============  ===========  ==================

``q = D(real)``, ``p = D(fake)``: logits, no sigmoid.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Elementwise = Callable[[Array], Array]


@dataclasses.dataclass(frozen=True)
class GANLoss:
  """A GAN loss as per-sample terms; see the module docstring for the table.

  Attributes:
    name: registry name.
    d_real: elementwise D term on real logits ``q`` (shape ``[B]``).
    d_fake: elementwise D term on fake logits ``p``.
    g_fake: elementwise G term on fake logits ``p``.
    gamma: elementwise ``g'(p) / f'(p)``; may be ``-inf``/``nan`` where
      ``f'(p) = 0`` (see :attr:`gamma_singular`).
    symmetric: ``g == -f`` exactly (gamma is the constant -1).
    gamma_singular: a function ``p -> bool[B]`` marking samples where
      ``f'(p) = 0`` (or underflows), so gamma is not usable there; ``None``
      when gamma is finite everywhere.
  """

  name: str
  d_real: Elementwise
  d_fake: Elementwise
  g_fake: Elementwise
  gamma: Elementwise
  symmetric: bool
  gamma_singular: Callable[[Array], Array] | None = None

  def d_loss(self, q: Array, p: Array) -> Array:
    """Mean D loss: ``mean d_real(q) + mean d_fake(p)``."""
    return jnp.mean(self.d_real(q)) + jnp.mean(self.d_fake(p))

  def g_loss(self, p: Array) -> Array:
    """Mean G loss: ``mean g_fake(p)``."""
    return jnp.mean(self.g_fake(p))


def _minimax() -> GANLoss:
  return GANLoss(
    name='minimax',
    d_real=lambda q: jax.nn.softplus(-q),
    d_fake=jax.nn.softplus,
    g_fake=lambda p: -jax.nn.softplus(p),
    gamma=lambda p: -jnp.ones_like(p),
    symmetric=True,
  )


def _non_saturating() -> GANLoss:
  # f'(p) = sigmoid(p), g'(p) = -sigmoid(-p): gamma = -exp(-p). sigmoid(p)
  # underflows in float32 for p below about -88 (exp(-p) overflows there).
  return GANLoss(
    name='ns',
    d_real=lambda q: jax.nn.softplus(-q),
    d_fake=jax.nn.softplus,
    g_fake=lambda p: jax.nn.softplus(-p),
    gamma=lambda p: -jnp.exp(-p),
    symmetric=False,
    gamma_singular=lambda p: ~jnp.isfinite(jnp.exp(-p)),
  )


def _wgan() -> GANLoss:
  return GANLoss(
    name='wgan',
    d_real=lambda q: -q,
    d_fake=lambda p: p,
    g_fake=lambda p: -p,
    gamma=lambda p: -jnp.ones_like(p),
    symmetric=True,
  )


def _hinge() -> GANLoss:
  # f'(p) = 1[p > -1], g'(p) = -1: gamma is -1 where p > -1 and -inf else.
  return GANLoss(
    name='hinge',
    d_real=lambda q: jax.nn.relu(1.0 - q),
    d_fake=lambda p: jax.nn.relu(1.0 + p),
    g_fake=lambda p: -p,
    gamma=lambda p: jnp.where(p > -1.0, -1.0, -jnp.inf).astype(p.dtype),
    symmetric=False,
    gamma_singular=lambda p: p <= -1.0,
  )


def _lsgan(a: float = 0.0, b: float = 1.0, c: float = 1.0) -> GANLoss:
  if a == c:
    raise ValueError(
      f'lsgan with fake label a={a} equal to the G target c={c} makes D and G '
      'agree; use c != a (the usual choice is a=0, b=1, c=1).'
    )
  return GANLoss(
    name='lsgan',
    d_real=lambda q: 0.5 * jnp.square(q - b),
    d_fake=lambda p: 0.5 * jnp.square(p - a),
    g_fake=lambda p: 0.5 * jnp.square(p - c),
    gamma=lambda p: (p - c) / (p - a),
    symmetric=False,
    gamma_singular=lambda p: p == a,
  )


# Logits on which slope_vanishes looks for a flat region of f: wide enough for any
# margin in use, and f'(p) of the smooth losses stays a normal float32 on it.
_SLOPE_GRID = np.linspace(-50.0, 50.0, 10_001, dtype=np.float32)


@functools.lru_cache(maxsize=64)
def slope_vanishes(loss: GANLoss) -> bool:
  """Whether D's fake term has ``f'(p) = 0`` on an interval of logits (hinge: ``p <= -1``).

  There ``gamma = g'/f'`` is infinite, so the asymmetric one-stage rule is
  undefined. The property is read from ``loss.d_fake`` itself (``f'`` exactly
  zero at two or more consecutive points of a grid of step 0.01 on [-50, 50]),
  not from the loss's name: a renamed or hand-written hinge counts too, while
  LSGAN's isolated zero at ``p = a`` does not. Evaluated once per loss, outside
  any trace.
  """
  with jax.ensure_compile_time_eval():
    slope = np.asarray(jax.vmap(jax.grad(loss.d_fake))(jnp.asarray(_SLOPE_GRID)))
  flat = slope == 0.0
  return bool(np.any(flat[1:] & flat[:-1]))


LOSSES: dict[str, Callable[..., GANLoss]] = {
  'minimax': _minimax,
  'ns': _non_saturating,
  'wgan': _wgan,
  'hinge': _hinge,
  'lsgan': _lsgan,
}


def get_loss(name: str, **kwargs) -> GANLoss:
  """Returns the loss registered under ``name`` (``LOSSES`` lists them).

  ``kwargs`` go to the loss factory (only ``lsgan`` takes any: ``a``, ``b``,
  ``c``, the fake label, the real label and G's target).
  """
  if name not in LOSSES:
    raise ValueError(
      f"unknown GAN loss {name!r}; choose one of {sorted(LOSSES)} (e.g. config.loss='ns')."
    )
  return LOSSES[name](**kwargs)
