"""Named (generator, discriminator) pairs and the batch-coupling query.

``get_models('dcgan32', d_norm='group', width=32)`` returns two Flax modules.
Keyword arguments go to the modules by field name: ``g_<field>`` only to G,
``d_<field>`` only to D, a plain ``<field>`` to every module that has it (so
``width`` sets both DCGAN widths and ``norm`` only D's). ``latent_dim``,
``image_shape`` and ``dtype`` are understood for every name (the arguments the
training loop passes).

Class-conditional networks: 'biggan32', 'biggan64', 'biggan128' (BigGAN at the
name's resolution) and 'stylegan2' (resolution from ``image_shape``) take
``num_classes=K`` (0, the default, is unconditional) and their modules'
fields (BigGAN ``width``, ``shared_dim``, ``hier``, ``attention``; StyleGAN2
``channel_base``, ``channel_max``, ``mapping_layers``, ``mbstd_group_size``).
:func:`num_classes_of` reads ``K`` back from the modules.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgan.models.biggan import BigGANDiscriminator, BigGANGenerator
from jaxgan.models.dcgan import DCGANDiscriminator, DCGANGenerator
from jaxgan.models.mlp import MLPDiscriminator, MLPGenerator
from jaxgan.models.sngan import SNGANDiscriminator, SNGANGenerator
from jaxgan.models.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator


@dataclasses.dataclass(frozen=True)
class _Spec:
  g_cls: type
  d_cls: type
  fixed: dict  # fields set by the name itself (e.g. image_size)
  shape_fields: Callable[[tuple], tuple[dict, dict]]  # image_shape -> (g fields, d fields)
  defaults: dict = dataclasses.field(default_factory=dict)  # G fields until image_shape says


def _square_image(size: int | None):
  def fields(shape: tuple) -> tuple[dict, dict]:
    if len(shape) != 3 or shape[0] != shape[1] or (size is not None and shape[0] != size):
      want = f'({size}, {size}, C)' if size else '(S, S, C)'
      raise ValueError(f'image_shape must be {want} for this model, got {shape!r}.')
    return {'channels': shape[2]}, {}

  return fields


def _sngan_fields(shape: tuple) -> tuple[dict, dict]:
  if len(shape) != 3 or shape[0] != shape[1] or shape[0] % 8:
    raise ValueError(
      f'image_shape must be (S, S, C) with S divisible by 8 for sngan, got {shape!r}.'
    )
  return {'channels': shape[2], 'bottom_width': shape[0] // 8}, {}


def _mlp_fields(shape: tuple) -> tuple[dict, dict]:
  return {'out_shape': tuple(shape)}, {}


def _stylegan2_fields(shape: tuple) -> tuple[dict, dict]:
  size = shape[0] if len(shape) == 3 else 0
  if len(shape) != 3 or shape[0] != shape[1] or size < 8 or size & (size - 1):
    raise ValueError(
      f'image_shape must be (S, S, C) with S a power of two >= 8 for stylegan2 (tested 32..256), '
      f'got {shape!r}; resize the data (e.g. the image-folder source) or pad it (pad_to).'
    )
  return {'resolution': size, 'channels': shape[2]}, {'resolution': size}


MODELS: dict[str, _Spec] = {
  'dcgan28': _Spec(
    DCGANGenerator, DCGANDiscriminator, {'image_size': 28}, _square_image(28), {'channels': 1}
  ),  # MNIST-sized: grayscale unless image_shape says otherwise
  'dcgan32': _Spec(DCGANGenerator, DCGANDiscriminator, {'image_size': 32}, _square_image(32)),
  'dcgan64': _Spec(DCGANGenerator, DCGANDiscriminator, {'image_size': 64}, _square_image(64)),
  'sngan32': _Spec(SNGANGenerator, SNGANDiscriminator, {}, _sngan_fields),
  'mlp': _Spec(MLPGenerator, MLPDiscriminator, {}, _mlp_fields),
  'biggan32': _Spec(BigGANGenerator, BigGANDiscriminator, {'resolution': 32}, _square_image(32)),
  'biggan64': _Spec(BigGANGenerator, BigGANDiscriminator, {'resolution': 64}, _square_image(64)),
  'biggan128': _Spec(BigGANGenerator, BigGANDiscriminator, {'resolution': 128}, _square_image(128)),
  'stylegan2': _Spec(StyleGAN2Generator, StyleGAN2Discriminator, {}, _stylegan2_fields),
}


def _fields(cls: type) -> set[str]:
  return {f.name for f in dataclasses.fields(cls) if f.name not in ('parent', 'name')}


def get_models(
  name: str,
  *,
  latent_dim: int | None = None,
  image_shape: Sequence[int] | None = None,
  dtype: Any = None,
  **kwargs,
) -> tuple[nn.Module, nn.Module]:
  """Builds the generator and discriminator registered under ``name``.

  Args:
    name: one of :data:`MODELS` ('dcgan28', 'dcgan32', 'dcgan64', 'sngan32', 'mlp',
      'biggan32', 'biggan64', 'biggan128', 'stylegan2').
    latent_dim: ``nz``; only checked (the modules infer it from their input).
    image_shape: one sample's shape ``(H, W, C)`` (``(2,)`` for 2-D points); sets
      G's output channels/shape and is checked against the architecture.
      Without it G makes 1-channel images for 'dcgan28' (MNIST-sized) and
      3-channel images for the other DCGAN/SNGAN names.
    dtype: computation dtype of both modules (``None``: float32).
    **kwargs: module fields; ``g_``/``d_`` prefixes target one module (module
      docstring).

  Returns:
    ``(g_module, d_module)``: G maps ``[B, nz]`` to ``[B, *image_shape]``, D maps
    that to logits ``[B]``.
  """
  if name not in MODELS:
    raise ValueError(f'unknown model {name!r}; choose one of {sorted(MODELS)}.')
  if latent_dim is not None and int(latent_dim) <= 0:
    raise ValueError(f'latent_dim must be positive, got {latent_dim!r}.')
  spec = MODELS[name]
  g_kw = {**spec.defaults, **spec.fixed}
  d_kw = {k: v for k, v in spec.fixed.items() if k in _fields(spec.d_cls)}
  if image_shape is not None:
    g_shape, d_shape = spec.shape_fields(tuple(int(n) for n in image_shape))
    g_kw.update(g_shape)
    d_kw.update(d_shape)
  if dtype is not None:
    g_kw['dtype'] = d_kw['dtype'] = dtype
  _route_fields(name, spec, kwargs, g_kw, d_kw)
  g, d = spec.g_cls(**g_kw), spec.d_cls(**d_kw)
  num_classes_of(g, d)  # G and D must agree on the classes
  return g, d


def _route_fields(name: str, spec: _Spec, kwargs: dict, g_kw: dict, d_kw: dict) -> None:
  """Adds ``kwargs`` to G's and D's fields: ``g_``/``d_`` prefixed to one, plain to both.

  A prefixed field wins over the plain one whatever their order (``ConfigDict`` sorts its
  keys, so ``d_width`` comes before ``width``)."""
  g_fields, d_fields = _fields(spec.g_cls), _fields(spec.d_cls)
  prefixed = lambda key: key[:2] in ('g_', 'd_') and key[2:] in (g_fields, d_fields)[key[0] == 'd']
  for key, value in sorted(kwargs.items(), key=lambda kv: prefixed(kv[0])):
    if key.startswith('g_') and key[2:] in g_fields:
      targets = [(g_kw, key[2:])]
    elif key.startswith('d_') and key[2:] in d_fields:
      targets = [(d_kw, key[2:])]
    else:
      targets = [(kw, key) for kw, fields in ((g_kw, g_fields), (d_kw, d_fields)) if key in fields]
    if not targets:
      raise ValueError(
        f'get_models({name!r}): unknown argument {key!r}. {spec.g_cls.__name__} takes '
        f'{sorted(g_fields)} (prefix g_), {spec.d_cls.__name__} takes {sorted(d_fields)} '
        '(prefix d_); unprefixed names go to every module that has them.'
      )
    for kw, field in targets:
      if field in spec.fixed and value != spec.fixed[field]:
        raise ValueError(
          f'get_models({name!r}) fixes {field}={spec.fixed[field]!r}; got {value!r}. '
          f'Pick the model name for that {field} instead.'
        )
      kw[field] = value


def num_classes_of(g_module: nn.Module, d_module: nn.Module) -> int:
  """The class count ``K`` of a (G, D) pair (0: unconditional); they must agree.

  Modules without a ``num_classes`` field count as unconditional.
  """
  k_g = int(getattr(g_module, 'num_classes', 0) or 0)
  k_d = int(getattr(d_module, 'num_classes', 0) or 0)
  if k_g != k_d:
    raise ValueError(
      f'G is built with num_classes={k_g} but D with num_classes={k_d}; pass one unprefixed '
      'num_classes=K so that both condition on the same classes.'
    )
  return k_g


def d_is_batch_coupled(d_module: nn.Module, example_input: jax.Array | None = None) -> bool:
  """Whether D mixes the samples of a batch when called with ``train=True``.

  jaxgan's discriminators say so themselves (``batch_coupled``: BatchNorm). For
  any other module pass ``example_input`` (one batch): D then counts as coupled
  when its variables hold a ``batch_stats`` collection (flax BatchNorm).

  Args:
    d_module: the discriminator.
    example_input: an input batch ``[B, ...]`` for modules without
      ``batch_coupled``.

  Returns:
    True if D's outputs for one sample depend on the other samples of the batch.
  """
  coupled = getattr(d_module, 'batch_coupled', None)
  if coupled is not None:
    return bool(coupled)
  if example_input is None:
    raise ValueError(
      f'{type(d_module).__name__} does not declare batch_coupled; pass example_input '
      '(one input batch) so its variables can be inspected, or set Game.d_batch_coupled yourself.'
    )
  shapes = jax.eval_shape(
    lambda x: d_module.init(jax.random.PRNGKey(0), x, train=False),
    jax.ShapeDtypeStruct(example_input.shape, jnp.float32),
  )
  return 'batch_stats' in shapes


def count_params(params: Any) -> int:
  """Number of scalars in a params pytree."""
  return int(sum(math.prod(x.shape) for x in jax.tree.leaves(params)))
