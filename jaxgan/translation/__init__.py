"""Unpaired image-to-image translation: CUT (Park et al., ECCV 2020) on jaxgan's steps.

* :mod:`~jaxgan.translation.models`: ResNet encoder-decoder G (with PatchNCE heads),
  PatchGAN D, and their :class:`~jaxgan.game.Game` adapters.
* :mod:`~jaxgan.translation.patchnce`: the PatchNCE loss and its G regularizer.
* :mod:`~jaxgan.translation.cut`: the CUT game, optimizer and state.
* :mod:`~jaxgan.translation.metrics`: FID to the target domain and content accuracy
  (import it directly; it loads the MNIST metrics).

G's input comes from the batch's ``'latent'`` entry (``docs/INTERFACES.md``, Steps).
"""

from jaxgan.translation.cut import (
  LSGAN_G_SCALE,
  create_translation_state,
  cut_game,
  cut_optimizer,
)
from jaxgan.translation.models import (
  PatchDiscriminator,
  ResnetGenerator,
  patch_d_apply,
  patch_map_size,
  translation_g_apply,
)
from jaxgan.translation.patchnce import (
  nce_between,
  nce_from_features,
  patch_nce_loss,
  patch_nce_regularizer,
)

__all__ = [
  'LSGAN_G_SCALE',
  'PatchDiscriminator',
  'ResnetGenerator',
  'create_translation_state',
  'cut_game',
  'cut_optimizer',
  'nce_between',
  'nce_from_features',
  'patch_d_apply',
  'patch_map_size',
  'patch_nce_loss',
  'patch_nce_regularizer',
  'translation_g_apply',
]
