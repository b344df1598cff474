"""Launcher: ``python -m experiments.main --config CONFIG.py --workdir DIR``.

Override any config field with ``--config.field=value`` (ml_collections).
Restarting with the same command resumes from the latest checkpoint in DIR.
"""

from jaxgan.cli import main

if __name__ == '__main__':
  main()
