"""Converts PyTorch layer weights (numpy arrays) to the flax params of jaxgan's layers.

Each function takes arrays in PyTorch's layout and returns the flax dict of the equivalent layer
(``{'kernel': ..., 'bias': ...}``; BatchNorm also returns its ``batch_stats`` entry). Inputs may
be numpy arrays or anything ``np.asarray`` accepts (``tensor.detach().numpy()``); torch itself is
never imported. Layouts:

* ``ConvTranspose2d`` ``[in, out, kh, kw]`` -> ``[kh, kw, in, out]`` flipped in space
  (:class:`~jaxgan.nn.ConvTranspose4x4s2`, :class:`~jaxgan.nn.Project4x4`, or ``nn.ConvTranspose``
  with padding ``k - 1 - p``): :func:`conv_transpose`;
* ``Conv2d`` ``[out, in, kh, kw]`` -> ``nn.Conv`` ``[kh, kw, in, out]``: :func:`conv`;
* ``Linear`` ``[out, in]`` -> ``nn.Dense`` ``[in, out]``: :func:`linear`;
* ``BatchNorm2d``/``1d`` (weight, bias, running statistics) -> ``nn.BatchNorm`` scale, bias and
  ``batch_stats``: :func:`batch_norm`; ``GroupNorm`` -> ``nn.GroupNorm``: :func:`group_norm`.

PyTorch flattens NCHW feature maps channel-first while flax's are NHWC, so a ``Linear`` that reads
a flattened feature map, or whose output is viewed as one, needs its rows or columns permuted:
:func:`linear_from_feature_map` and :func:`linear_to_feature_map`.
"""

from __future__ import annotations

import numpy as np


def _arr(a, name: str, ndim: int) -> np.ndarray:
  a = np.asarray(a)
  if a.ndim != ndim:
    raise ValueError(f'{name} must have {ndim} dimensions, got shape {a.shape}.')
  return a


def _with_bias(params: dict, bias, n: int, name: str) -> dict:
  if bias is not None:
    bias = _arr(bias, f'{name} bias', 1)
    if bias.shape != (n,):
      raise ValueError(f'{name} bias must have shape ({n},), got {bias.shape}.')
    params['bias'] = bias.copy()
  return params


def conv_transpose(weight, bias=None) -> dict:
  """``ConvTranspose2d`` weight ``[in, out, kh, kw]`` -> flax ``[kh, kw, in, out]``.

  Valid for :class:`jaxgan.nn.ConvTranspose4x4s2` (k=4, s=2, p=1),
  :class:`jaxgan.nn.Project4x4` (k=4, s=1, p=0 on a 1x1 input) and, in general,
  ``nn.ConvTranspose(out, (kh, kw), strides=s, padding=((kh-1-p, kh-1-p),
  (kw-1-p, kw-1-p)))`` (``transpose_kernel=False``). The kernel is flipped in
  space because ``lax.conv_transpose`` correlates where PyTorch scatters.
  """
  w = _arr(weight, 'ConvTranspose2d weight', 4)
  params = {'kernel': np.ascontiguousarray(w.transpose(2, 3, 0, 1)[::-1, ::-1])}
  return _with_bias(params, bias, w.shape[1], 'ConvTranspose2d')


def conv(weight, bias=None) -> dict:
  """``Conv2d`` weight ``[out, in, kh, kw]`` -> ``nn.Conv`` kernel ``[kh, kw, in, out]``."""
  w = _arr(weight, 'Conv2d weight', 4)
  params = {'kernel': np.ascontiguousarray(w.transpose(2, 3, 1, 0))}
  return _with_bias(params, bias, w.shape[0], 'Conv2d')


def linear(weight, bias=None) -> dict:
  """``Linear`` weight ``[out, in]`` -> ``nn.Dense`` kernel ``[in, out]``."""
  w = _arr(weight, 'Linear weight', 2)
  return _with_bias({'kernel': np.ascontiguousarray(w.T)}, bias, w.shape[0], 'Linear')


def linear_to_feature_map(weight, bias, channels: int, height: int, width: int) -> dict:
  """A ``Linear`` whose output is viewed as ``[B, C, H, W]`` -> a Dense whose output
  reshapes to ``[B, H, W, C]`` (the projection of the 32x32 DCGAN/SNGAN G)."""
  w = _arr(weight, 'Linear weight', 2)
  if w.shape[0] != channels * height * width:
    raise ValueError(
      f'Linear weight has {w.shape[0]} outputs, not channels*height*width = '
      f'{channels}*{height}*{width}.'
    )
  k = w.reshape(channels, height, width, -1).transpose(3, 1, 2, 0).reshape(w.shape[1], -1)
  params = {'kernel': np.ascontiguousarray(k)}
  if bias is not None:
    b = _arr(bias, 'Linear bias', 1).reshape(channels, height, width).transpose(1, 2, 0)
    params['bias'] = np.ascontiguousarray(b.reshape(-1))
  return params


def linear_from_feature_map(weight, bias, channels: int, height: int, width: int) -> dict:
  """A ``Linear`` reading ``x.view(B, -1)`` of an NCHW map -> a Dense reading the NHWC
  map flattened (the head of the 28x28 and 32x32 DCGAN D)."""
  w = _arr(weight, 'Linear weight', 2)
  if w.shape[1] != channels * height * width:
    raise ValueError(
      f'Linear weight has {w.shape[1]} inputs, not channels*height*width = '
      f'{channels}*{height}*{width}.'
    )
  k = w.reshape(-1, channels, height, width).transpose(2, 3, 1, 0).reshape(-1, w.shape[0])
  return _with_bias({'kernel': np.ascontiguousarray(k)}, bias, w.shape[0], 'Linear')


def batch_norm(weight, bias, running_mean, running_var) -> tuple[dict, dict]:
  """``BatchNorm*d`` -> (``{'scale', 'bias'}`` params, ``{'mean', 'var'}`` batch_stats).

  jaxgan's BatchNorm uses PyTorch's epsilon (1e-5) and momentum (0.1 in PyTorch's
  convention). One difference remains in train mode: PyTorch updates
  ``running_var`` with the unbiased batch variance, flax with the biased one.
  """
  arrays = [
    _arr(a, n, 1)
    for a, n in zip(
      (weight, bias, running_mean, running_var), ('weight', 'bias', 'running_mean', 'running_var')
    )
  ]
  if len({a.shape for a in arrays}) != 1:
    raise ValueError(f'BatchNorm arrays must share one shape, got {[a.shape for a in arrays]}.')
  w, b, m, v = (a.copy() for a in arrays)
  return {'scale': w, 'bias': b}, {'mean': m, 'var': v}


def group_norm(weight, bias) -> dict:
  """``GroupNorm`` weight, bias -> ``nn.GroupNorm`` scale, bias (epsilon 1e-5 in jaxgan)."""
  return {
    'scale': _arr(weight, 'GroupNorm weight', 1).copy(),
    'bias': _arr(bias, 'GroupNorm bias', 1).copy(),
  }


def spectral_state(weight_flax_kernel, weight_u) -> dict:
  """PyTorch ``spectral_norm`` buffers -> the entry of jaxgan's ``'spectral'`` collection.

  Args:
    weight_flax_kernel: the layer's kernel already in flax layout (``weight_orig``
      converted with :func:`conv` or :func:`linear`).
    weight_u: PyTorch's ``weight_u`` buffer ``[out]``.

  Returns:
    ``{'u': [1, out], 'sigma': scalar}``; :func:`jaxgan.nn.spectral_norm` keeps them
    as ``'<layer>/kernel/u'`` and ``'<layer>/kernel/sigma'`` under ``'<layer>_sn'``.
  """
  k = np.asarray(weight_flax_kernel)
  mat = k.reshape(-1, k.shape[-1])  # [fan_in, out]: PyTorch's weight matrix transposed
  u = _arr(weight_u, 'weight_u', 1)
  if u.shape != (mat.shape[1],):
    raise ValueError(f'weight_u must have shape ({mat.shape[1]},), got {u.shape}.')
  v = mat @ u
  v = v / max(np.linalg.norm(v), 1e-12)
  return {'u': u[None, :].astype(k.dtype), 'sigma': np.asarray(v @ mat @ u, k.dtype)}
