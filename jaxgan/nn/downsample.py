"""Strided convolutions of DCGAN discriminators, fast on CPU.

A DCGAN discriminator downsamples with ``Conv2d(k=4, s=2, p=1)``. XLA on CPU
computes the input gradient of that convolution (a stride-2 transposed
convolution of the cotangent) about three times slower than its forward pass,
and a GAN step needs that gradient in every G update and every regularizer that
differentiates D with respect to its input. :func:`conv_4x4s2` is the same
convolution with its own VJP: the input gradient is
:func:`jaxgan.nn.conv_transpose_4x4s2` of the cotangent (the two maps are
adjoint), the kernel gradient is XLA's own.

:func:`conv_general_dilated` is a drop-in for ``lax.conv_general_dilated`` that
routes exactly that geometry (4x4 kernel, stride 2, padding 1, even input size,
NHWC/HWIO, no dilation or groups) to :func:`conv_4x4s2` and everything else to
XLA. Pass it to ``flax.linen.Conv(conv_general_dilated=...)``: parameters, names
and values are unchanged, so checkpoints and converted PyTorch weights load as
before. Measured with ``experiments/bench_upsample.py`` (its second table).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax

from jaxgan.nn.upsample import conv_transpose_4x4s2

_DN = ('NHWC', 'HWIO', 'NHWC')
_PAD = ((1, 1), (1, 1))


def conv_4x4s2_reference(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """``Conv2d(k=4, s=2, p=1)`` through XLA: ``[B, H, W, in] -> [B, H/2, W/2, out]``."""
  return jax.lax.conv_general_dilated(x, kernel, (2, 2), _PAD, dimension_numbers=_DN)


@jax.custom_vjp
def conv_4x4s2(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Convolution, kernel 4, stride 2, padding 1, with a VJP that is fast on CPU.

  Equal to :func:`conv_4x4s2_reference` in values and gradients (also nested
  reverse mode, e.g. gradient penalties); forward mode is not defined for it.

  Args:
    x: ``[B, H, W, in]`` with ``H`` and ``W`` even.
    kernel: ``[4, 4, in, out]`` (``flax.linen.Conv`` layout).

  Returns:
    ``[B, H / 2, W / 2, out]``.
  """
  return conv_4x4s2_reference(x, kernel)


def _fwd(x, kernel):
  return conv_4x4s2_reference(x, kernel), (x, kernel)


def _bwd(res, g):
  x, kernel = res
  # conv_transpose_4x4s2(g, k') with k' = kernel flipped in space, in/out swapped,
  # is the adjoint of this convolution in x.
  dx = conv_transpose_4x4s2(g, kernel[::-1, ::-1].transpose(0, 1, 3, 2))
  _, kernel_vjp = jax.vjp(lambda k: conv_4x4s2_reference(x, k), kernel)
  return dx.astype(x.dtype), kernel_vjp(g)[0]


conv_4x4s2.defvjp(_fwd, _bwd)


def _is_nhwc(dimension_numbers, lhs_shape, rhs_shape) -> bool:
  if dimension_numbers is None:
    return False
  want = jax.lax.conv_dimension_numbers(lhs_shape, rhs_shape, _DN)
  got = jax.lax.conv_dimension_numbers(lhs_shape, rhs_shape, dimension_numbers)
  return got == want


def _ones(v) -> bool:
  return v is None or all(d == 1 for d in v)


def conv_general_dilated(
  lhs: jax.Array,
  rhs: jax.Array,
  window_strides: Sequence[int],
  padding,
  lhs_dilation: Sequence[int] | None = None,
  rhs_dilation: Sequence[int] | None = None,
  dimension_numbers=None,
  feature_group_count: int = 1,
  batch_group_count: int = 1,
  precision=None,
  preferred_element_type=None,
) -> jax.Array:
  """``lax.conv_general_dilated`` with the DCGAN downsampling case made fast.

  Same signature and values; see the module docstring for the routed case.
  """
  fast = (
    lhs.ndim == 4
    and tuple(rhs.shape[:2]) == (4, 4)
    and tuple(window_strides) == (2, 2)
    and not isinstance(padding, str)
    and tuple(map(tuple, padding)) == _PAD
    and lhs.shape[1] % 2 == 0
    and lhs.shape[2] % 2 == 0
    and _ones(lhs_dilation)
    and _ones(rhs_dilation)
    and feature_group_count == 1
    and batch_group_count == 1
    and precision is None
    and preferred_element_type is None
    and _is_nhwc(dimension_numbers, lhs.shape, rhs.shape)
  )
  if fast:
    return conv_4x4s2(lhs, rhs)
  return jax.lax.conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=lhs_dilation,
    rhs_dilation=rhs_dilation,
    dimension_numbers=dimension_numbers,
    feature_group_count=feature_group_count,
    batch_group_count=batch_group_count,
    precision=precision,
    preferred_element_type=preferred_element_type,
  )
