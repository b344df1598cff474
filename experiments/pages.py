"""Markdown report pages written section by section (``## title`` headings)."""

from __future__ import annotations

from pathlib import Path


def earlier_sections(out: Path) -> dict[str, str]:
  """Title -> markdown of the ``## `` sections already in the page at ``out``, in order
  (empty when there is no page); what precedes the first section is left out."""
  if not out.exists():
    return {}
  parts = out.read_text().split('\n## ')[1:]
  return {p.split('\n', 1)[0]: '## ' + p.rstrip('\n') + '\n' for p in parts}
