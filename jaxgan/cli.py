"""The ``jaxgan-train`` console script (same as ``python -m experiments.main``).

Errors reach the user here, in one place: a bad command line, config value,
input or work directory prints one line ``error: ...`` (no traceback) and exits
with status 2; a run that stops (divergence, a full disk) prints one line and
exits with status 1. The config and the work directory are checked before JAX,
orbax and the data are imported, so a bad value answers in about a second.
"""

from __future__ import annotations

import ast
import errno
import logging
import sys
import threading
from collections.abc import Sequence

from absl import flags
from ml_collections import ConfigDict, config_flags

from jaxgan import config_checks
from jaxgan.config_checks import OPEN_SECTION, ConfigError

USAGE = """\
usage: jaxgan-train --config CONFIG.py[:ARG] --workdir DIR [--config.FIELD=VALUE ...]

Trains a GAN as CONFIG says, in DIR. Rerun the same command to resume from the
latest checkpoint in DIR (bit-identical on CPU, even after kill -9).

  --config CONFIG.py[:ARG]  an ml_collections config file, e.g.
                            experiments/configs/quickstart.py; ':ARG' is passed to its
                            get_config (experiments/configs/toy2d.py:8ring)
  --workdir DIR             where checkpoints, logs, samples and plots go
  --config.FIELD=VALUE      overrides a field of the config, e.g.
                              --config.num_steps=5000 --config.d_optimizer.lr=1e-4
                              --config.sparse.enabled=True --config.sparse.variant=strict
                              --config.model_kwargs.width=32   (model fields; may be new keys)
                            Every field and its default: experiments/configs/default.py.
                            Useful ones:
                              --config.dry_run=True       check the config and DIR, build the
                                                          run, compile one step, write nothing
                              --config.allow_changes=num_steps,d_optimizer.lr
                                                          resume with fields you changed on purpose
  -h, --help                prints this message

Exit status: 0 finished; 2 a bad command line, config value, input or work directory
(one line on stderr, nothing trained); 1 the run stopped (divergence, full disk).
"""

_HELP = ('-h', '-help', '--help', '--helpshort', '--helpfull')


class UsageError(ConfigError):
  """The command line itself is wrong."""


def main() -> None:
  """Entry point of ``jaxgan-train``: runs :func:`run` and exits with its status.

  Like ``python -m``, it puts the working directory first on the module path, so a config
  file in a checkout (``experiments/configs/*.py``) imports its neighbours from the root.
  """
  if '' not in sys.path:
    sys.path.insert(0, '')
  _configure_logging()
  _one_line_background_errors()
  sys.exit(run(sys.argv))


def run(argv: Sequence[str]) -> int:
  """Parses ``argv``, checks, trains; returns the exit status (0, 1 or 2).

  Args:
    argv: the program name, then its arguments.
  """
  args = list(argv[1:])
  if any(a in _HELP for a in args):
    print(USAGE, end='')
    return 0
  try:
    config, workdir = parse(argv)
    config_checks.validate_config(config)
    config_checks.check_workdir(workdir, config)
  except ConfigError as err:
    return _report(err, 2)
  from jaxgan import checkpoint, train  # the heavy imports: JAX, orbax, the data

  try:
    train.train_and_evaluate(config, workdir)
  except ConfigError as err:
    return _report(err, 2)
  except (train.DivergenceError, checkpoint.CheckpointSaveError) as err:
    return _report(err, 1)
  except KeyboardInterrupt:
    return _report('interrupted; rerun the same command to resume from the last checkpoint.', 130)
  except Exception as err:
    cause = _disk_full(err)
    if cause is None:
      raise
    # orbax's unfinished writes fail again when collected at exit: the cause is said below.
    logging.getLogger('asyncio').setLevel(logging.CRITICAL)
    return _report(
      f'disk full while writing to {workdir} ({cause}); free space or move the run to a larger '
      'disk, then rerun the same command: it resumes from the last complete checkpoint.',
      1,
    )
  return 0


def parse(argv: Sequence[str]) -> tuple[ConfigDict, str]:
  """The config (with overrides applied) and the work directory named by ``argv``.

  Raises:
    UsageError: a missing or unknown flag, an unknown config field, a value of
      the wrong type, or a config file that does not load.
  """
  model_overrides, args = _split_model_overrides(list(argv[1:]))
  values = flags.FlagValues()
  holder = config_flags.DEFINE_config_file(
    'config',
    None,
    'ml_collections config file.',
    flag_values=values,
    lock_config=True,
    sys_argv=[argv[0], *args],  # not sys.argv: run() may be called with other arguments
  )
  workdir = flags.DEFINE_string('workdir', None, 'run directory.', flag_values=values)
  try:
    rest = values([argv[0], *args])
  except flags.Error as err:
    raise UsageError(f'{_one_line(err)}; see --help.') from None
  except (AttributeError, KeyError) as err:  # an override of a field the config lacks
    raise UsageError(_unknown_field(args, str(err).strip('"\''))) from None
  except Exception as err:  # noqa: BLE001 - the config file failed to load
    raise UsageError(f'--config: cannot load the config file: {_one_line(err)}') from None
  if rest[1:]:
    raise UsageError(f'unexpected arguments {rest[1:]}: give flags only (see --help).')
  config = holder.value
  if config is None:
    raise UsageError('--config is required, e.g. --config experiments/configs/quickstart.py.')
  if not workdir.value:
    raise UsageError('--workdir is required, e.g. --workdir runs/quickstart.')
  try:
    config.get(OPEN_SECTION)  # a config file that failed to load raises on first use
  except Exception as err:  # noqa: BLE001
    raise UsageError(f'--config: cannot load the config file: {_one_line(err)}') from None
  _apply_model_overrides(config, model_overrides)
  return config, workdir.value


def _split_model_overrides(args: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
  """Takes ``--config.model_kwargs.NAME=VALUE`` (or ``... NAME VALUE``) out of ``args``.

  ``model_kwargs`` holds the model's fields, which the config file need not
  list, so the command line may add keys to it (``config_flags`` only sets
  existing ones).

  Returns:
    ``[(name, value text)]`` and the remaining arguments.
  """
  prefix = f'--config.{OPEN_SECTION}.'
  found, rest = [], []
  i = 0
  while i < len(args):
    arg = args[i]
    i += 1
    if not arg.startswith(prefix):
      rest.append(arg)
      continue
    name, has_value, text = arg[len(prefix) :].partition('=')
    if not has_value:
      if i >= len(args):
        raise UsageError(f'{arg}: give a value, e.g. {arg}=32.')
      text, i = args[i], i + 1
    if not name.isidentifier():
      raise UsageError(f'{arg}: {OPEN_SECTION} fields are plain names, e.g. {prefix}width=32.')
    found.append((name, text))
  return found, rest


def _literal(text: str):
  """A command-line value as Python: ``32`` -> int, ``(64,64)`` -> tuple, ``group`` -> str."""
  if text.lower() in ('true', 'false'):
    return text.lower() == 'true'
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def _apply_model_overrides(config: ConfigDict, overrides: list[tuple[str, str]]) -> None:
  with config.unlocked():
    if config.get(OPEN_SECTION) is None:
      config[OPEN_SECTION] = ConfigDict()
    section = config[OPEN_SECTION]
    for name, text in overrides:
      try:
        section[name] = _literal(text)
      except TypeError:
        raise UsageError(
          f'--config.{OPEN_SECTION}.{name}={text}: the config holds a '
          f'{type(section[name]).__name__} there ({section[name]!r}); give a value of that type.'
        ) from None


def _unknown_field(args: list[str], missing: str) -> str:
  """The message for an override naming a field the config does not have."""
  for arg in args:
    if not arg.startswith('--config.'):
      continue
    path = arg[len('--config.') :].partition('=')[0]
    parts = path.split('.')
    if missing in parts:
      parent = '.'.join(['config', *parts[: parts.index(missing)]])
      return (
        f'{arg}: {parent} has no field {missing!r}; see experiments/configs/default.py for every '
        f'field (model fields go under --config.model_kwargs.NAME=VALUE).'
      )
  return f'the config has no field {missing!r}; see experiments/configs/default.py.'


def _one_line(err: BaseException | str) -> str:
  return ' '.join(str(err).split())


def _report(err: BaseException | str, status: int) -> int:
  print(f'error: {_one_line(err)}', file=sys.stderr)
  return status


def _disk_full(err: BaseException) -> str | None:
  """The out-of-space error in ``err``'s chain (causes, contexts, groups), if any."""
  seen, todo = set(), [err]
  while todo:
    e = todo.pop()
    if e is None or id(e) in seen:
      continue
    seen.add(id(e))
    text = str(e)
    if (isinstance(e, OSError) and e.errno == errno.ENOSPC) or 'No space left on device' in text:
      return _one_line(text)[:200]
    todo += [e.__cause__, e.__context__, *getattr(e, 'exceptions', ())]
  return None


class _OneLine(logging.Filter):
  """Logs of libraries (orbax's worker threads) as one line each, without traceback."""

  def filter(self, record: logging.LogRecord) -> bool:
    record.msg, record.args = _one_line(record.getMessage())[:300], None
    record.exc_info, record.exc_text, record.stack_info = None, None, None
    return True


def _one_line_background_errors() -> None:
  """Errors of background threads and callbacks (orbax's writers on a full disk) as one
  log line per distinct message, instead of a traceback each."""
  seen = set()

  def hook(args) -> None:
    text = _one_line(f'{args.exc_type.__name__}: {args.exc_value}')[:300]
    if text not in seen:
      seen.add(text)
      logging.getLogger(__name__).error('in a background task: %s', text)

  sys.unraisablehook = hook
  threading.excepthook = hook


def _configure_logging() -> None:
  handler = logging.StreamHandler()
  handler.setFormatter(logging.Formatter('%(levelname)s %(name)s: %(message)s'))
  handler.addFilter(_OneLine())
  root = logging.getLogger()
  root.handlers[:] = [handler]
  root.setLevel(logging.WARNING)
  logging.getLogger('jaxgan').setLevel(logging.INFO)
  flags.FLAGS.mark_as_parsed()  # absl logging (used by orbax) reads its defaults
