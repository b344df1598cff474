"""2-D Gaussian mixtures for mode-collapse experiments.

Mode-collapse studies (CoopInit's included) count the covered modes of an
8-mode or a 25-mode mixture; jaxgan uses the settings of the VEEGAN / PacGAN /
unrolled-GAN benchmarks that such mode counts come from:

* ``'8ring'``: 8 equally weighted modes on a circle of radius 2, at angles
  ``2 pi k / 8`` (the first at ``(2, 0)``), isotropic std 0.02;
* ``'25grid'``: 25 equally weighted modes on the grid ``{-4, -2, 0, 2, 4}^2``,
  isotropic std 0.05.

A generated point is usually scored against these centres with a ``3 std``
radius (``jaxgan.metrics.mode_coverage.gaussian_mixture_quality``).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
  import jax


@dataclasses.dataclass(frozen=True)
class MixtureSpec:
  """One Gaussian mixture: equally weighted isotropic modes.

  Attributes:
    centers: float32 ``[K, 2]`` mode centres.
    std: the standard deviation of every mode, per coordinate.
  """

  centers: np.ndarray
  std: float


def _ring(num_modes: int = 8, radius: float = 2.0) -> np.ndarray:
  angles = 2.0 * np.pi * np.arange(num_modes) / num_modes
  return (radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)).astype(np.float32)


def _grid(values=(-4.0, -2.0, 0.0, 2.0, 4.0)) -> np.ndarray:
  xs, ys = np.meshgrid(values, values, indexing='ij')
  return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)


MIXTURES: dict[str, MixtureSpec] = {
  '8ring': MixtureSpec(centers=_ring(), std=0.02),
  '25grid': MixtureSpec(centers=_grid(), std=0.05),
}


def mixture_spec(name: str) -> MixtureSpec:
  """The centres ``[K, 2]`` and std of a named mixture (``'8ring'`` or ``'25grid'``)."""
  if name not in MIXTURES:
    raise ValueError(f'unknown Gaussian mixture {name!r}; choose one of {sorted(MIXTURES)}.')
  return MIXTURES[name]


def gaussian_mixture(
  name: str,
  n: int,
  key: 'jax.Array | None' = None,
  *,
  seed: int | None = None,
  std: float | None = None,
) -> np.ndarray:
  """Samples points from a named 2-D Gaussian mixture.

  Each point picks a mode uniformly at random and adds isotropic Gaussian
  noise.

  Args:
    name: ``'8ring'`` or ``'25grid'`` (see the module docstring).
    n: number of points.
    key: a JAX PRNG key (its key data seeds a numpy generator, so sampling
      compiles nothing); or give ``seed``.
    seed: integer seed for ``np.random.default_rng``, used when ``key`` is
      None.
    std: override the mixture's std.

  Returns:
    float32 ``[n, 2]``.
  """
  spec = mixture_spec(name)
  if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
    raise ValueError(f'n must be a positive integer number of points; got {n!r}.')
  if (key is None) == (seed is None):
    raise ValueError('give exactly one of key (a jax.random key) or seed (an int).')
  std = spec.std if std is None else float(std)
  if not std >= 0.0:
    raise ValueError(f'std must be non-negative; got {std}.')
  if key is not None:
    import jax  # imported on use, so that importing jaxgan.data stays light

    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).astype(np.uint64).ravel())
  else:
    rng = np.random.default_rng(seed)
  modes = rng.integers(0, len(spec.centers), size=int(n))
  noise = rng.standard_normal((int(n), 2), dtype=np.float32)
  return (spec.centers[modes] + np.float32(std) * noise).astype(np.float32)
