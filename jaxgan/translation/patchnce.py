"""PatchNCE, CUT's contrastive content loss (Park et al., ECCV 2020), as a G regularizer.

For each NCE layer ``l`` of G's encoder the same ``P = min(num_patches, h_l * w_l)`` positions
(one random permutation per layer, shared by the batch) are taken from the features of the source
``x`` (keys, no gradient) and of ``G(x)`` (queries), both through the layer's projection head. For
image ``b`` and position ``i``::

    loss_bi = -log( exp(q_bi . k_bi / T) / sum_j exp(q_bi . k_bj / T) )

the negatives being the other ``P - 1`` positions of the same image (CUT's default). The layer
loss is the mean over ``b, i``, the NCE loss the mean over layers. CUT masks the positive out of
its negatives with a logit of ``-10 / T``; counting it once instead differs by ``exp(-10 / 0.07)``.

Settings (CUT's defaults): ``T = 0.07``, 256 patches, layers 0, 4, 8, 12, 16
(:mod:`jaxgan.translation.models`), 256-unit heads, ``lambda_NCE = 1`` and the identity term:
``lambda_NCE * (NCE(x, G(x)) + NCE(y, G(y))) / 2`` for real target images ``y``.
``docs/TECHNIQUES.md`` (CUT).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgan.game import GRegularizer

Array = jax.Array


def patch_nce_loss(queries: Array, keys: Array, temperature: float = 0.07) -> Array:
  """PatchNCE of one layer: cross-entropy of each query against the keys of its image.

  Args:
    queries: ``[B, P, C]`` projected features of the translation (normally unit norm).
    keys: ``[B, P, C]`` projected features of the source at the same positions; no
      gradient flows into them.
    temperature: T > 0.

  Returns:
    Scalar, the mean over the ``B * P`` queries of ``-log softmax_j(q_i . k_j / T)[i]``.
  """
  if queries.ndim != 3 or queries.shape != keys.shape:
    raise ValueError(
      f'patch_nce_loss takes queries and keys [B, P, C] of one shape, got {queries.shape} '
      f'and {keys.shape}.'
    )
  keys = jax.lax.stop_gradient(keys)
  logits = jnp.einsum('bic,bjc->bij', queries, keys) / temperature  # [B, P, P]
  positive = jnp.diagonal(logits, axis1=1, axis2=2)  # [B, P]
  return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - positive)


def sample_positions(key: Array, shape: Sequence[int], num_patches: int) -> Array:
  """``min(num_patches, h * w)`` distinct flat positions of an ``[B, h, w, c]`` map."""
  hw = shape[1] * shape[2]
  return jax.random.permutation(key, hw)[: min(num_patches, hw)]


def gather_patches(feature: Array, positions: Array) -> Array:
  """``[B, h, w, c]`` -> ``[B, P, c]`` at flat ``positions`` ``[P]``."""
  b, h, w, c = feature.shape
  return feature.reshape(b, h * w, c)[:, positions]


def nce_from_features(
  g_module: nn.Module,
  g_variables: dict,
  feats_k: Sequence[Array],
  feats_q: Sequence[Array],
  key: Array,
  *,
  num_patches: int = 256,
  temperature: float = 0.07,
) -> Array:
  """PatchNCE between encoder features of the source (keys) and the translation (queries).

  Args:
    g_module: the :class:`~jaxgan.translation.models.ResnetGenerator` (``project``).
    g_variables: G's variables (its params hold the projection heads).
    feats_k: ``encode(source)``, one ``[B, h_l, w_l, c_l]`` map per NCE layer.
    feats_q: ``encode(G(source))``, the same shapes.
    key: PRNG key of the patch positions (layer ``l`` uses ``fold_in(key, l)``).
    num_patches: positions per layer (fewer when a map is smaller).
    temperature: T.

  Returns:
    Scalar loss, the mean over layers of :func:`patch_nce_loss`.
  """
  positions = [
    sample_positions(jax.random.fold_in(key, i), f.shape, num_patches)
    for i, f in enumerate(feats_k)
  ]
  keys = g_module.apply(
    g_variables, [gather_patches(f, p) for f, p in zip(feats_k, positions)], method='project'
  )
  queries = g_module.apply(
    g_variables, [gather_patches(f, p) for f, p in zip(feats_q, positions)], method='project'
  )
  losses = [patch_nce_loss(q, k, temperature) for q, k in zip(queries, keys)]
  return sum(losses) / len(losses)


def nce_between(
  g_module: nn.Module,
  g_variables: dict,
  source: Array,
  key: Array,
  *,
  num_patches: int = 256,
  temperature: float = 0.07,
) -> Array:
  """PatchNCE between ``source`` and its translation ``G(source)``, mean over layers.

  One G pass gives the translation and the source's features (``translate_and_encode``),
  one encoder pass the translation's features.

  Args:
    g_module: the :class:`~jaxgan.translation.models.ResnetGenerator`.
    g_variables: G's variables.
    source: ``[B, H, W, C]`` inputs of G.
    key: PRNG key of the patch positions.
    num_patches: positions per layer.
    temperature: T.

  Returns:
    Scalar loss.
  """
  translated, feats_k = g_module.apply(g_variables, source, method='translate_and_encode')
  feats_q = g_module.apply(g_variables, translated, method='encode')
  return nce_from_features(
    g_module,
    g_variables,
    feats_k,
    feats_q,
    key,
    num_patches=num_patches,
    temperature=temperature,
  )


def patch_nce_regularizer(
  g_module: nn.Module,
  *,
  weight: float = 1.0,
  num_patches: int = 256,
  temperature: float = 0.07,
  identity: bool = True,
) -> GRegularizer:
  """PatchNCE as a ``Game.g_regularizer`` ``(g_variables, d_variables, z, key) -> scalar``.

  ``z`` is the batch's ``'latent'`` entry: ``{'source': [B, H, W, C] domain-A images,
  'target': [B, H, W, C] domain-B images}`` (``'target'`` only needed with
  ``identity``). The value is ``weight * NCE(source, G(source))``, or with ``identity``
  ``weight * (NCE(source, G(source)) + NCE(target, G(target))) / 2`` (CUT's
  ``loss_NCE_both``). G is run again here (on source and, with ``identity``, target),
  since a regularizer gets ``z``, not the step's ``G(z)``; G must not carry model state
  that changes its output between the two (instance norm has none).

  Args:
    g_module: the :class:`~jaxgan.translation.models.ResnetGenerator`.
    weight: ``lambda_NCE`` in the units of the step's G loss (see
      :mod:`jaxgan.translation.cut` for the CUT-equivalent value with jaxgan's LSGAN).
    num_patches: positions per layer (CUT: 256).
    temperature: T (CUT: 0.07).
    identity: add the identity term on the target images (CUT: ``nce_idt=True``).

  Returns:
    The regularizer.
  """
  _check_settings(weight, num_patches, temperature)
  needed = ('source', 'target') if identity else ('source',)
  how = dict(num_patches=num_patches, temperature=temperature)

  def regularizer(g_variables, d_variables, z, key):
    del d_variables
    if not isinstance(z, dict) or any(name not in z for name in needed):
      got = sorted(z) if isinstance(z, dict) else type(z).__name__
      raise ValueError(
        f'the PatchNCE regularizer needs z with keys {needed} (batch["latent"]), got {got}; '
        'pass identity=False to drop the target-domain identity term.'
      )
    if not identity:
      return weight * nce_between(g_module, g_variables, z['source'], key, **how)
    total = _nce_source_and_target(g_module, g_variables, z['source'], z['target'], key, how)
    return weight * total / 2

  return regularizer


def _check_settings(weight, num_patches, temperature) -> None:
  if not isinstance(weight, int | float) or weight < 0:
    raise ValueError(f'PatchNCE weight must be a float >= 0, got {weight!r} (CUT: 1.0).')
  if isinstance(num_patches, bool) or not isinstance(num_patches, int) or num_patches < 2:
    raise ValueError(
      f'num_patches must be an int >= 2 (one positive and at least one negative), got '
      f'{num_patches!r} (CUT: 256).'
    )
  if not isinstance(temperature, int | float) or not temperature > 0:
    raise ValueError(f'PatchNCE temperature must be > 0, got {temperature!r} (CUT: 0.07).')


def _nce_source_and_target(g_module, g_variables, source, target, key, how: dict) -> Array:
  """``NCE(source, G(source)) + NCE(target, G(target))`` from one G pass over both."""
  if source.shape != target.shape:
    raise ValueError(
      f'PatchNCE identity term: z["source"] {source.shape} and z["target"] {target.shape} '
      'must have one shape (G runs on both as one batch, as CUT does).'
    )
  # One G pass over [source; target] (CUT concatenates real A and real B the same way).
  both = jnp.concatenate([source, target])
  translated, feats_k = g_module.apply(g_variables, both, method='translate_and_encode')
  feats_q = g_module.apply(g_variables, translated, method='encode')
  n = source.shape[0]
  total = 0.0
  for half, k in zip((slice(None, n), slice(n, None)), jax.random.split(key)):
    total = total + nce_from_features(
      g_module, g_variables, [f[half] for f in feats_k], [f[half] for f in feats_q], k, **how
    )
  return total
