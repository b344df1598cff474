"""DiffAugment: differentiable augmentations of everything D sees.

Zhao, Liu, Lin, Zhu and Han, "Differentiable Augmentation for Data-Efficient GAN Training"
(NeurIPS 2020). The same kind of random, differentiable transform is applied to the reals, to the
fakes in D's loss and to the fakes in G's loss (``Game.d_input_transform``), so D never sees
un-augmented data and G still gets gradients through the transform. :func:`diff_augment` applies a
policy string of the reference code, ``'color,translation,cutout'`` by default, to NHWC images in
[-1, 1], each draw independent per sample; :func:`make_diff_augment` makes the ``(x, key) -> x``
entry of a :class:`~jaxgan.game.Game`.

The ops have the semantics of the public DiffAugment code (its PyTorch and TensorFlow versions
agree): nothing is clipped unless ``clip=True``. ``strength`` (every op moved toward the
identity) and ``probability`` (each entry applied to each sample with that chance, as ADA) go
beyond the reference and default to it. Everything is shape-static (gathers and masks), so one
compiled step serves every batch. ``docs/TECHNIQUES.md`` (DiffAugment) has the table of ops.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp

Array = jax.Array

DEFAULT_POLICY = 'color,translation,cutout'
# Policy entries and the elementary ops each one runs, in order.
POLICY_OPS: dict[str, tuple[str, ...]] = {
  'color': ('brightness', 'saturation', 'contrast'),
  'brightness': ('brightness',),
  'saturation': ('saturation',),
  'contrast': ('contrast',),
  'translation': ('translation',),
  'cutout': ('cutout',),
}

Strength = float | Mapping[str, float]


# ----------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------


def parse_policy(policy: str) -> tuple[str, ...]:
  """Splits a policy string into its entries, rejecting unknown ones.

  Args:
    policy: comma-separated entries of :data:`POLICY_OPS`, applied in order,
      e.g. ``'color,translation,cutout'``; ``''`` is the identity.

  Returns:
    The entries, e.g. ``('color', 'translation', 'cutout')``.
  """
  if not isinstance(policy, str):
    raise TypeError(f'DiffAugment policy must be a string like {DEFAULT_POLICY!r}, got {policy!r}.')
  entries = tuple(p.strip() for p in policy.split(',') if p.strip())
  unknown = [p for p in entries if p not in POLICY_OPS]
  if unknown:
    raise ValueError(
      f'unknown DiffAugment op(s) {unknown} in policy {policy!r}; valid ops are '
      f'{sorted(POLICY_OPS)} (the reference policy is {DEFAULT_POLICY!r}).'
    )
  return entries


def _per_entry(value: Strength, entries: tuple[str, ...], name: str) -> dict[str, float]:
  """A float or a mapping {entry: float} -> one float per policy entry."""
  if isinstance(value, Mapping):
    extra = sorted(set(value) - set(entries))
    if extra:
      raise ValueError(
        f'DiffAugment {name} given for {extra}, which the policy {",".join(entries)!r} '
        f'does not contain; use keys among {list(entries)}.'
      )
    out = {e: float(value.get(e, 1.0)) for e in entries}
  else:
    out = {e: float(value) for e in entries}
  for e, v in out.items():
    if not v >= 0.0:
      raise ValueError(f'DiffAugment {name} for {e!r} must be >= 0, got {v!r}.')
  return out


def _check_options(
  policy: str,
  translation_ratio: float,
  cutout_ratio: float,
  strength: Strength,
  probability: Strength,
) -> tuple[tuple[str, ...], dict[str, float], dict[str, float]]:
  entries = parse_policy(policy)
  for name, ratio in (('translation_ratio', translation_ratio), ('cutout_ratio', cutout_ratio)):
    if not 0.0 <= ratio <= 1.0:
      raise ValueError(
        f'{name} must be in [0, 1] (a fraction of the image size), got {ratio!r}; '
        'the reference uses translation_ratio=0.125, cutout_ratio=0.5.'
      )
  strengths = _per_entry(strength, entries, 'strength')
  probs = _per_entry(probability, entries, 'probability')
  for e, p in probs.items():
    if p > 1.0:
      raise ValueError(f'DiffAugment probability for {e!r} must be in [0, 1], got {p!r}.')
  return entries, strengths, probs


def _check_images(x: Array) -> None:
  if x.ndim != 4:
    raise ValueError(
      f'DiffAugment expects images [B, H, W, C], got shape {tuple(x.shape)}; add a channel '
      'axis for grayscale images (x[..., None]).'
    )
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f'DiffAugment expects float images in [-1, 1], got dtype {x.dtype}.')


def scaled_size(size: int, ratio: float) -> int:
  """``int(size * ratio + 0.5)``: the reference's rounding of a ratio to pixels."""
  return int(size * ratio + 0.5)


# ----------------------------------------------------------------------------
# Deterministic building blocks (explicit per-sample parameters)
# ----------------------------------------------------------------------------


def _per_sample(v: Array, x: Array) -> Array:
  return jnp.asarray(v, x.dtype).reshape(-1, 1, 1, 1)


def adjust_brightness(x: Array, offset: Array) -> Array:
  """``x + offset`` per sample. ``x`` ``[B, H, W, C]``, ``offset`` ``[B]``."""
  return x + _per_sample(offset, x)


def adjust_saturation(x: Array, factor: Array) -> Array:
  """Scales each pixel's deviation from its channel mean by ``factor`` ``[B]``."""
  mean = jnp.mean(x, axis=3, keepdims=True)
  return x + (_per_sample(factor, x) - 1.0) * (x - mean)


def adjust_contrast(x: Array, factor: Array) -> Array:
  """Scales each image's deviation from its mean (over H, W, C) by ``factor`` ``[B]``."""
  mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  return x + (_per_sample(factor, x) - 1.0) * (x - mean)


def translate(x: Array, shift_h: Array, shift_w: Array) -> Array:
  """Moves each image's content by whole pixels, filling with zeros.

  ``out[b, i, j] = x[b, i - shift_h[b], j - shift_w[b]]`` where that index is
  inside the image, else 0 (positive shifts move the content down / right).

  Args:
    x: images ``[B, H, W, C]``.
    shift_h: integer row shifts ``[B]``.
    shift_w: integer column shifts ``[B]``.

  Returns:
    ``[B, H, W, C]``.
  """
  b, h, w, _ = x.shape
  rows = jnp.arange(h)[None, :] - jnp.asarray(shift_h, jnp.int32).reshape(b, 1)  # [B, H]
  cols = jnp.arange(w)[None, :] - jnp.asarray(shift_w, jnp.int32).reshape(b, 1)  # [B, W]
  inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
  gathered = x[
    jnp.arange(b)[:, None, None],
    jnp.clip(rows, 0, h - 1)[:, :, None],
    jnp.clip(cols, 0, w - 1)[:, None, :],
  ]
  return jnp.where(inside[..., None], gathered, jnp.zeros((), x.dtype))


def cutout(x: Array, center_h: Array, center_w: Array, size: tuple[int, int]) -> Array:
  """Zeroes one rectangle per image, clipped at the border.

  Rows ``[center_h - size_h // 2, center_h - size_h // 2 + size_h)`` times the
  analogous columns are set to 0 (the reference's placement of the square).

  Args:
    x: images ``[B, H, W, C]``.
    center_h: integer rectangle centres (rows) ``[B]``.
    center_w: integer rectangle centres (columns) ``[B]``.
    size: ``(size_h, size_w)`` in pixels (static).

  Returns:
    ``[B, H, W, C]``.
  """
  b, h, w, _ = x.shape
  size_h, size_w = size
  top = jnp.asarray(center_h, jnp.int32).reshape(b, 1) - size_h // 2
  left = jnp.asarray(center_w, jnp.int32).reshape(b, 1) - size_w // 2
  r = jnp.arange(h)[None, :]
  c = jnp.arange(w)[None, :]
  in_rows = (r >= top) & (r < top + size_h)  # [B, H]
  in_cols = (c >= left) & (c < left + size_w)  # [B, W]
  hole = in_rows[:, :, None] & in_cols[:, None, :]
  return jnp.where(hole[..., None], jnp.zeros((), x.dtype), x)


# ----------------------------------------------------------------------------
# Random ops
# ----------------------------------------------------------------------------


# Uniform draws per sample that each elementary op consumes. All the draws of
# one call come from a single ``uniform(key, [n, B])`` (threefry is the costly
# part of compiling this module; one call keeps the compile short); integers
# are ``floor(u * n)``, whose bias for n << 2^23 is negligible.
_DRAWS = {'brightness': 1, 'saturation': 1, 'contrast': 1, 'translation': 2, 'cutout': 2}


def _randint(u: Array, low: int, high: int) -> Array:
  """Integers uniform in ``{low, ..., high}`` from uniforms ``u`` in [0, 1)."""
  n = high - low + 1
  return low + jnp.minimum(jnp.floor(u * n).astype(jnp.int32), n - 1)


def _random_op(
  op: str, x: Array, u: Array, s: float, translation_ratio: float, cutout_ratio: float
):
  """One elementary op at strength ``s`` with the uniforms ``u`` ``[_DRAWS[op], B]``."""
  if op == 'brightness':
    return adjust_brightness(x, s * (u[0] - 0.5))
  if op == 'saturation':
    return adjust_saturation(x, 1.0 + s * (2.0 * u[0] - 1.0))
  if op == 'contrast':
    return adjust_contrast(x, 1.0 + s * (u[0] - 0.5))
  _, h, w, _ = x.shape
  if op == 'translation':
    max_h = scaled_size(h, translation_ratio * s)
    max_w = scaled_size(w, translation_ratio * s)
    if max_h == 0 and max_w == 0:
      return x
    return translate(x, _randint(u[0], -max_h, max_h), _randint(u[1], -max_w, max_w))
  if op == 'cutout':
    size_h = scaled_size(h, cutout_ratio * s)
    size_w = scaled_size(w, cutout_ratio * s)
    if size_h == 0 or size_w == 0:
      return x
    center_h = _randint(u[0], 0, h - size_h % 2)
    center_w = _randint(u[1], 0, w - size_w % 2)
    return cutout(x, center_h, center_w, (size_h, size_w))
  raise AssertionError(op)  # unreachable: entries are validated


def diff_augment(
  x: Array,
  key: Array,
  policy: str = DEFAULT_POLICY,
  *,
  translation_ratio: float = 0.125,
  cutout_ratio: float = 0.5,
  strength: Strength = 1.0,
  probability: Strength = 1.0,
  clip: bool = False,
) -> Array:
  """Applies the DiffAugment ``policy`` to a batch, independently per sample.

  Args:
    x: images ``[B, H, W, C]`` (float, [-1, 1]).
    key: PRNG key; the same key gives the same transforms.
    policy: comma-separated entries of :data:`POLICY_OPS`, applied in order.
    translation_ratio: maximal shift as a fraction of the image size.
    cutout_ratio: side of the cut square as a fraction of the image size.
    strength: a float for every entry, or ``{entry: float}`` (missing entries
      1.0); 0 makes an entry the identity, 1 is the reference.
    probability: chance that an entry is applied to a sample, a float or
      ``{entry: float}``; 1 is the reference.
    clip: clamp the result to [-1, 1] (the reference does not).

  Returns:
    Augmented images ``[B, H, W, C]``, same dtype.
  """
  entries, strengths, probs = _check_options(
    policy, translation_ratio, cutout_ratio, strength, probability
  )
  _check_images(x)
  return _augment(x, key, entries, strengths, probs, translation_ratio, cutout_ratio, clip)


def _augment(x, key, entries, strengths, probs, translation_ratio, cutout_ratio, clip):
  active = [e for e in entries if strengths[e] > 0.0 and probs[e] > 0.0]
  # Rows of the single draw: per active entry, one coin then its ops' draws.
  n_rows = sum(1 + sum(_DRAWS[op] for op in POLICY_OPS[e]) for e in active)
  if n_rows:
    u = jax.random.uniform(key, (n_rows, x.shape[0]), jnp.float32)
  row = 0
  for entry in active:
    s, p = strengths[entry], probs[entry]
    coin = u[row]
    row += 1
    y = x
    for op in POLICY_OPS[entry]:
      y = _random_op(op, y, u[row : row + _DRAWS[op]], s, translation_ratio, cutout_ratio)
      row += _DRAWS[op]
    if p < 1.0:
      y = jnp.where((coin < p)[:, None, None, None], y, x)
    x = y
  if clip:
    x = jnp.clip(x, -1.0, 1.0)
  return x


def make_diff_augment(
  policy: str = DEFAULT_POLICY,
  *,
  translation_ratio: float = 0.125,
  cutout_ratio: float = 0.5,
  strength: Strength = 1.0,
  probability: Strength = 1.0,
  clip: bool = False,
) -> Callable[[Array, Array], Array]:
  """Validates the options once and returns ``augment(x, key) -> x``.

  The result fits ``jaxgan.game.Game.d_input_transform``; the options are those
  of :func:`diff_augment`.
  """
  entries, strengths, probs = _check_options(
    policy, translation_ratio, cutout_ratio, strength, probability
  )
  run = functools.partial(
    _augment,
    entries=entries,
    strengths=strengths,
    probs=probs,
    translation_ratio=translation_ratio,
    cutout_ratio=cutout_ratio,
    clip=clip,
  )

  def augment(x: Array, key: Array) -> Array:
    _check_images(x)
    return run(x, key)

  return augment
