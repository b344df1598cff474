"""Upsampling layers of DCGAN generators, fast on CPU.

:func:`conv_transpose_4x4s2` computes exactly the transposed convolution with a 4x4 kernel, stride
2 and PyTorch padding 1 (``ConvTranspose2d(k=4, s=2, p=1)``; output ``2H x 2W``), the upsampling
layer of every DCGAN. XLA on CPU computes the kernel gradient of a strided ``lax.conv_transpose``
very slowly (seconds per DCGAN layer), so the function has its own VJP, built only from stride-1
convolutions, strided convolutions and matrix products (``experiments/bench_upsample.py`` measures
it). :class:`ConvTranspose4x4s2` is the Flax layer.

Parameter layout: the kernel is ``[4, 4, in, out]`` exactly as flax's ``nn.ConvTranspose(out,
(4, 4), strides=(2, 2), padding=((2, 2), (2, 2)))`` stores it, i.e. the kernel of
``lax.conv_transpose(x, kernel, (2, 2), ((2, 2), (2, 2)))`` with ``transpose_kernel=False``. A
PyTorch weight ``w[in, out, kh, kw]`` maps to it as ``w.transpose(2, 3, 0, 1)[::-1, ::-1]``
(:mod:`jaxgan.nn.torch_weights`). :class:`Project4x4` is the stride-1, padding-0 transposed
convolution from a 1x1 input to 4x4 (the 64x64 DCGAN generator's first layer), one matrix product.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

_DN = ('NHWC', 'HWIO', 'NHWC')
_PAD = ((2, 2), (2, 2))  # lax.conv_transpose padding equal to PyTorch's p=1 for k=4, s=2
Initializer = Callable[..., jax.Array]


def conv_transpose_4x4s2_reference(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """The same map through XLA's ``lax.conv_transpose`` (slow gradients on CPU).

  Args:
    x: ``[B, H, W, in]``.
    kernel: ``[4, 4, in, out]`` (layout of the module docstring).

  Returns:
    ``[B, 2H, 2W, out]``.
  """
  return jax.lax.conv_transpose(x, kernel, (2, 2), _PAD, dimension_numbers=_DN)


def _forward_phases(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Forward as one 2x2 convolution to 4*out channels + phase interleave.

  Output row ``2m + a`` (phase ``a`` in {0, 1}) takes the kernel taps ``t = a + 2j`` (``j`` in
  {0, 1}) at input rows ``m - 1 + a + j``. So after padding the input by one on each side, every
  output phase is a 2x2 window convolution of the padded input, and the four phases (rows x
  columns) are one 2x2 convolution with ``4 * out`` output channels on an ``(H + 1) x (W + 1)``
  grid, from which each phase reads its ``H x W`` block.
  """
  b, h, w, cin = x.shape
  cout = kernel.shape[-1]
  # kernel[2 * j + a] is tap j of phase a (per spatial dim).
  k2 = kernel.reshape(2, 2, 2, 2, cin, cout).transpose(0, 2, 4, 1, 3, 5)
  k2 = k2.reshape(2, 2, cin, 4 * cout)  # [jh, jw, in, (a, c, out)]
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  z = jax.lax.conv_general_dilated(xp, k2, (1, 1), 'VALID', dimension_numbers=_DN)
  z = z.reshape(b, h + 1, w + 1, 2, 2, cout)
  rows = [jnp.stack([z[:, a : a + h, c : c + w, a, c] for c in range(2)], axis=3) for a in range(2)]
  return jnp.stack(rows, axis=2).reshape(b, 2 * h, 2 * w, cout)  # [B, H, a, W, c, out]


def _input_grad(g: jax.Array, kernel: jax.Array) -> jax.Array:
  """``dx``: the transposed conv is the input-adjoint of a strided conv, so its own
  input gradient is that strided conv applied to the cotangent."""
  kf = kernel[::-1, ::-1].transpose(0, 1, 3, 2)
  return jax.lax.conv_general_dilated(g, kf, (2, 2), ((1, 1), (1, 1)), dimension_numbers=_DN)


def _kernel_grad_input_patches(x: jax.Array, g: jax.Array) -> jax.Array:
  """``dkernel`` as one matrix product: 2x2 patches of the padded input against
  the cotangent's phases placed on the ``(H + 1) x (W + 1)`` grid."""
  b, h, w, cin = x.shape
  cout = g.shape[-1]
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  patches = jnp.stack(
    [xp[:, i : i + h + 1, j : j + w + 1] for i in range(2) for j in range(2)], axis=3
  ).reshape(b * (h + 1) * (w + 1), 4 * cin)
  g6 = g.reshape(b, h, 2, w, 2, cout)
  dz = jnp.stack(
    [
      jnp.pad(g6[:, :, a, :, c], ((0, 0), (a, 1 - a), (c, 1 - c), (0, 0)))
      for a in range(2)
      for c in range(2)
    ],
    axis=3,
  ).reshape(b * (h + 1) * (w + 1), 4 * cout)
  d = jax.lax.dot_general(patches, dz, (((0,), (0,)), ((), ())))  # [(jh, jw, in), (a, c, out)]
  d = d.reshape(2, 2, cin, 2, 2, cout).transpose(0, 3, 1, 4, 2, 5)  # [jh, a, jw, c, in, out]
  return d.reshape(4, 4, cin, cout)


def _kernel_grad_cotangent_patches(x: jax.Array, g: jax.Array) -> jax.Array:
  """``dkernel`` as one matrix product: the input against the 16 stride-2 taps of
  the cotangent (tap ``t`` of input row ``m`` meets output row ``2m + 2 - t``)."""
  b, h, w, cin = x.shape
  cout = g.shape[-1]
  gp = jnp.pad(g, ((0, 0), (1, 1), (1, 1), (0, 0)))  # gp[r + 1] = g[r]
  taps = jnp.stack(
    [
      gp[:, 3 - th : 3 - th + 2 * h : 2, 3 - tw : 3 - tw + 2 * w : 2]
      for th in range(4)
      for tw in range(4)
    ],
    axis=3,
  ).reshape(b * h * w, 16 * cout)
  d = jax.lax.dot_general(x.reshape(b * h * w, cin), taps, (((0,), (0,)), ((), ())))
  return d.reshape(cin, 4, 4, cout).transpose(1, 2, 0, 3)


def _use_phase_forward(h: int, w: int, cout: int) -> bool:
  # The phase form computes an (H+1)x(W+1) grid: 56% extra work at 4x4, 27% at 8x8.
  # Measured (bench_upsample): it beats XLA's dilated conv from 8x8 up when the
  # layer has at least 32 output channels, and loses below that.
  return min(h, w) >= 8 and cout >= 32


@jax.custom_vjp
def conv_transpose_4x4s2(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Transposed convolution, kernel 4, stride 2, PyTorch padding 1: ``H -> 2H``.

  Equal to :func:`conv_transpose_4x4s2_reference` (values and gradients), with a
  custom VJP that is fast on CPU. Reverse mode only (``jax.grad``, ``jax.vjp``,
  also nested); forward mode (``jax.jvp``, ``jax.jacfwd``) is not defined for it:
  use the reference for that.

  Args:
    x: ``[B, H, W, in]``.
    kernel: ``[4, 4, in, out]``, flax ``nn.ConvTranspose`` layout (module doc).

  Returns:
    ``[B, 2H, 2W, out]``.
  """
  return _forward(x, kernel)


def _forward(x, kernel):
  _, h, w, _ = x.shape
  if _use_phase_forward(h, w, kernel.shape[-1]):
    return _forward_phases(x, kernel)
  return conv_transpose_4x4s2_reference(x, kernel)


def _fwd(x, kernel):
  return _forward(x, kernel), (x, kernel)


def _bwd(res, g):
  x, kernel = res
  cin, cout = kernel.shape[2], kernel.shape[3]
  # Both kernel-gradient forms are one matmul; they differ in the patch tensor
  # they build: ~4|x| + |g| floats (input patches) vs ~4|g| (cotangent taps).
  if cin < 3 * cout:
    dk = _kernel_grad_input_patches(x, g)
  else:
    dk = _kernel_grad_cotangent_patches(x, g)
  return _input_grad(g, kernel), dk.astype(kernel.dtype)


conv_transpose_4x4s2.defvjp(_fwd, _bwd)


def _check_input(x: jax.Array, rank: int, layer: str) -> None:
  if x.ndim != rank:
    raise ValueError(
      f'{layer} expects a rank-{rank} input, got shape {tuple(x.shape)}; '
      + ('pass images as [B, H, W, C].' if rank == 4 else 'pass latents as [B, nz].')
    )


class ConvTranspose4x4s2(nn.Module):
  """``ConvTranspose2d(in, features, kernel_size=4, stride=2, padding=1)`` in flax.

  Params ``kernel [4, 4, in, features]`` and ``bias [features]`` are named and laid
  out as in ``nn.ConvTranspose(features, (4, 4), strides=(2, 2),
  padding=((2, 2), (2, 2)))``, so the two are interchangeable.

  Attributes:
    features: output channels.
    use_bias: add a per-channel bias.
    method: ``'fast'`` (:func:`conv_transpose_4x4s2`) or ``'stock'`` (XLA's
      ``lax.conv_transpose``; same values, slow gradients on CPU, kept for
      benchmarks and forward-mode differentiation).
    kernel_init: initializer of the kernel.
    bias_init: initializer of the bias.
    dtype: computation dtype (``None``: the input's); params stay float32.
  """

  features: int
  use_bias: bool = True
  method: str = 'fast'
  kernel_init: Initializer = nn.initializers.lecun_normal()
  bias_init: Initializer = nn.initializers.zeros_init()
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Upsamples ``[B, H, W, in]`` to ``[B, 2H, 2W, features]``."""
    if self.method not in ('fast', 'stock'):
      raise ValueError(f"ConvTranspose4x4s2.method must be 'fast' or 'stock', got {self.method!r}.")
    _check_input(x, 4, 'ConvTranspose4x4s2')
    kernel = self.param('kernel', self.kernel_init, (4, 4, x.shape[-1], self.features))
    dtype = self.dtype or x.dtype
    x, kernel = x.astype(dtype), kernel.astype(dtype)
    if self.method == 'fast':
      y = conv_transpose_4x4s2(x, kernel)
    else:
      y = conv_transpose_4x4s2_reference(x, kernel)
    if self.use_bias:
      y = y + self.param('bias', self.bias_init, (self.features,)).astype(y.dtype)
    return y


class Project4x4(nn.Module):
  """``ConvTranspose2d(nz, features, kernel_size=4, stride=1, padding=0)`` on 1x1 input.

  Maps latents ``[B, nz]`` to ``[B, 4, 4, features]`` with one matrix product.
  Params ``kernel [4, 4, nz, features]`` and ``bias [features]`` are named and laid
  out as in ``nn.ConvTranspose(features, (4, 4), padding='VALID')`` applied to a
  ``[B, 1, 1, nz]`` input (which flips the kernel: output pixel ``(i, j)`` uses
  ``kernel[3 - i, 3 - j]``). Equivalent to a Dense to ``16 * features`` with a
  per-channel instead of per-unit bias.

  Attributes:
    features: output channels.
    use_bias: add a per-channel bias.
    kernel_init: initializer of the kernel.
    bias_init: initializer of the bias.
    dtype: computation dtype (``None``: the input's); params stay float32.
  """

  features: int
  use_bias: bool = True
  kernel_init: Initializer = nn.initializers.lecun_normal()
  bias_init: Initializer = nn.initializers.zeros_init()
  dtype: Any = None

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    """Projects ``[B, nz]`` to ``[B, 4, 4, features]``."""
    _check_input(z, 2, 'Project4x4')
    kernel = self.param('kernel', self.kernel_init, (4, 4, z.shape[-1], self.features))
    dtype = self.dtype or z.dtype
    z, kernel = z.astype(dtype), kernel.astype(dtype)[::-1, ::-1]
    kmat = kernel.transpose(2, 0, 1, 3).reshape(z.shape[-1], 16 * self.features)
    y = jnp.dot(z, kmat).reshape(z.shape[0], 4, 4, self.features)
    if self.use_bias:
      y = y + self.param('bias', self.bias_init, (self.features,)).astype(y.dtype)
    return y
