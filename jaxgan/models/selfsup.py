"""Self-supervised heads of the discriminators (SSGAN rotation, InfoMax-GAN projections).

:class:`~jaxgan.models.sngan.SNGANDiscriminator` and
:class:`~jaxgan.models.dcgan.DCGANDiscriminator` take a field ``aux_head``, one of
:data:`AUX_HEADS`. With ``'none'`` (the default) the module, its parameters and outputs are
exactly the plain discriminator's. Otherwise D gets parameters created at ``init`` and outputs
selected with ``__call__(x, train, output=...)``; the default ``output='logits'`` returns only the
logits ``[B]`` and does not run the heads.

* ``'rotation'`` (SSGAN, Chen et al., CVPR 2019; Mimicry's ``SSGANDiscriminator``): a linear
  layer ``l_y`` from D's global feature (the input of its last linear layer) to 4 rotation logits.
* ``'infomax'`` (InfoMax-GAN, Lee et al., WACV 2021; Mimicry's heads): residual projections into
  ``infomax_dim`` units (Mimicry's ``nrkhs``, 1024): a local head of 1x1 convolutions on an
  intermediate map, ``local_nrkhs_sc(x) + local_nrkhs_b(relu(local_nrkhs_a(x)))``, and a global
  head of dense layers, ``global_nrkhs_sc(y) + global_nrkhs_b(relu(global_nrkhs_a(y)))``.
* ``'rotation+infomax'``: both. Every head layer is spectrally normalized when D is.

:func:`rotation_apply` and :func:`infomax_apply` turn such a module into the callables that
:mod:`jaxgan.ssgan` and :mod:`jaxgan.infomax` take (``docs/TECHNIQUES.md``, SSGAN and InfoMax-GAN).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax

from jaxgan.nn import spectral_norm

AUX_HEADS = ('none', 'rotation', 'infomax', 'rotation+infomax')
OUTPUTS = ('logits', 'rotation', 'infomax')
NUM_ROTATIONS = 4
_NOT_STATE = ('params', 'perturbations')


def check_aux_head(aux_head: str, infomax_dim: int, where: str) -> None:
  """Raises ``ValueError`` for an unknown ``aux_head`` or a bad ``infomax_dim``."""
  if aux_head not in AUX_HEADS:
    raise ValueError(f'{where}.aux_head must be one of {list(AUX_HEADS)}, got {aux_head!r}.')
  if not isinstance(infomax_dim, int) or infomax_dim < 1:
    raise ValueError(
      f'{where}.infomax_dim must be a positive int (Mimicry: 1024), got {infomax_dim!r}.'
    )


def has_head(d_module: Any, kind: str) -> bool:
  """Whether ``d_module`` has the ``kind`` head (``'rotation'`` or ``'infomax'``)."""
  return kind in str(getattr(d_module, 'aux_head', 'none')).split('+')


def check_output(aux_head: str, output: str, where: str) -> None:
  """Raises ``ValueError`` when ``output`` needs a head the module does not have."""
  if output not in OUTPUTS:
    raise ValueError(f'{where}: output must be one of {list(OUTPUTS)}, got {output!r}.')
  if output != 'logits' and output not in aux_head.split('+'):
    raise ValueError(
      f'{where}: output={output!r} needs aux_head to include {output!r}, but aux_head='
      f"{aux_head!r}; build D with aux_head='{output}' (model_kwargs.aux_head)."
    )


def rotation_head(
  global_feat: jax.Array, *, spectral: bool, train: bool, kernel_init, dtype: Any
) -> jax.Array:
  """The rotation classifier ``l_y``: global features ``[B, F]`` -> logits ``[B, 4]``.

  Call it inside the discriminator's compact method (it creates the layer there).
  """
  layer = nn.Dense(NUM_ROTATIONS, kernel_init=kernel_init, dtype=dtype, name='l_y')
  return spectral_norm(layer, spectral, train)(global_feat)


def infomax_heads(
  local_feat: jax.Array,
  global_feat: jax.Array,
  *,
  dim: int,
  global_hidden: int,
  spectral: bool,
  train: bool,
  kernel_init,
  dtype: Any,
) -> tuple[jax.Array, jax.Array]:
  """The InfoMax projections, created inside the discriminator's compact method.

  Args:
    local_feat: D's local feature map ``[B, h, w, c]``.
    global_feat: D's global feature ``[B, F]``.
    dim: projection size ``K`` (Mimicry's ``nrkhs``).
    global_hidden: units of the global head's hidden layer.
    spectral: spectral-normalize every head layer.
    train: store the spectral-norm power-iteration state.
    kernel_init: initializer of every head kernel.
    dtype: computation dtype.

  Returns:
    ``(local [B, h, w, K], global [B, K])``.
  """

  def conv(features, name):
    layer = nn.Conv(features, (1, 1), kernel_init=kernel_init, dtype=dtype, name=name)
    return spectral_norm(layer, spectral, train)

  def dense(features, name):
    layer = nn.Dense(features, kernel_init=kernel_init, dtype=dtype, name=name)
    return spectral_norm(layer, spectral, train)

  c = local_feat.shape[-1]
  local = conv(dim, 'local_nrkhs_b')(nn.relu(conv(c, 'local_nrkhs_a')(local_feat)))
  local = local + conv(dim, 'local_nrkhs_sc')(local_feat)
  glob = dense(dim, 'global_nrkhs_b')(nn.relu(dense(global_hidden, 'global_nrkhs_a')(global_feat)))
  glob = glob + dense(dim, 'global_nrkhs_sc')(global_feat)
  return local, glob


def _apply_output(d_module: nn.Module, output: str) -> Callable:
  def apply(variables, x):
    # Train mode (batch statistics, one power iteration) without storing the
    # updated collections: the step stores D's state from its GAN-loss forwards.
    mutable = [name for name in variables if name not in _NOT_STATE]
    out = d_module.apply(variables, x, train=True, output=output, mutable=mutable or False)
    return out[0] if mutable else out

  return apply


def _require(d_module: Any, kind: str) -> None:
  if not has_head(d_module, kind):
    raise ValueError(
      f'{type(d_module).__name__} (aux_head={getattr(d_module, "aux_head", None)!r}) has no '
      f"{kind} head; build it with aux_head='{kind}' or 'rotation+infomax' "
      "(config: model_kwargs.aux_head, models 'sngan32', 'dcgan28/32/64')."
    )


def rotation_apply(d_module: nn.Module) -> Callable[[dict, jax.Array], jax.Array]:
  """``rot_apply(d_variables, x [N, H, W, C]) -> rotation logits [N, 4]`` of ``d_module``.

  D runs in train mode (batch statistics, spectral-norm power iteration) and its
  updated collections are dropped.
  """
  _require(d_module, 'rotation')
  return _apply_output(d_module, 'rotation')


def infomax_apply(d_module: nn.Module) -> Callable[[dict, jax.Array], tuple]:
  """``feat_apply(d_variables, x) -> (local [N, h, w, K], global [N, K])`` of ``d_module``.

  The projected features (after the InfoMax heads); D runs as in
  :func:`rotation_apply`.
  """
  _require(d_module, 'infomax')
  return _apply_output(d_module, 'infomax')
