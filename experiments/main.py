"""Launcher: ``python -m experiments.main --config CONFIG.py --workdir DIR`` (= ``jaxgan-train``).

Override any config field with ``--config.field=value``; ``--help`` lists the
options. Restarting with the same command resumes from the latest checkpoint in
DIR.
"""

from jaxgan.cli import main

if __name__ == '__main__':
  main()
