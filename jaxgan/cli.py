"""The ``jaxgan-train`` console script (same as ``python -m experiments.main``)."""

import logging
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
  'config', None, 'Path to an ml_collections config file.', lock_config=True
)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and samples.')


def _run(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  from jaxgan import train

  logging.getLogger('absl').setLevel(logging.WARNING)
  train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


def main():
  flags.mark_flags_as_required(['config', 'workdir'])
  app.run(_run, argv=sys.argv)
