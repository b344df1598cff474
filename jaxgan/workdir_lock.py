"""One training process per work directory.

:class:`WorkdirLock` holds an exclusive ``flock`` on ``<workdir>/.lock`` for as
long as a run trains there, and writes its holder (host, pid, start time) into
the file. A second process is refused with a message naming the holder. The
kernel drops the lock when its process ends, however it ends (``kill -9``
included), so a lock left by a killed run is taken over by the next one with no
staleness guess. In a multi-host run only process 0 takes it.

``flock`` is advisory: it keeps jaxgan runs apart. On network filesystems whose
``flock`` is local to one client, two hosts are not kept apart.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from jaxgan.config_checks import ConfigError

LOCK_NAME = '.lock'


class WorkdirBusyError(ConfigError):
  """Another live process trains in the work directory."""


class WorkdirLock:
  """Exclusive lock of a run directory; a context manager.

  Args:
    workdir: the run's directory (created if missing).
  """

  def __init__(self, workdir: str | Path):
    self.path = Path(workdir) / LOCK_NAME
    self._file = None

  def acquire(self) -> None:
    """Takes the lock, or raises :class:`WorkdirBusyError` naming its holder."""
    self.path.parent.mkdir(parents=True, exist_ok=True)
    f = open(self.path, 'a+')  # held open while the run trains
    try:
      fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      holder = _describe(f.read())
      f.close()
      raise WorkdirBusyError(
        f'--workdir {self.path.parent} is in use by {holder}: wait for that run to end or stop '
        'it, or use another --workdir.'
      ) from None
    f.seek(0)
    f.truncate()
    f.write(
      json.dumps({'host': socket.gethostname(), 'pid': os.getpid(), 'since': time.time()}) + '\n'
    )
    f.flush()
    self._file = f

  def release(self) -> None:
    if self._file is not None:
      fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
      self._file.close()
      self._file = None

  def __enter__(self) -> WorkdirLock:
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()


def _describe(text: str) -> str:
  try:
    info = json.loads(text)
    since = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(info['since']))
    return f'pid {info["pid"]} on host {info["host"]} (since {since})'
  except (ValueError, KeyError, TypeError):
    return 'another process (it has not written its host and pid yet)'
