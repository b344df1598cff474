"""The command line: help, one-line errors and exit codes, checks before the heavy imports,
model fields from the command line, dry runs, a full disk."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jaxgan import cli

ROOT = Path(__file__).resolve().parents[1]
TOY = str(ROOT / 'experiments' / 'configs' / 'toy2d.py')
SMALL = [
  '--config.num_steps=4',
  '--config.checkpoint_every=2',
  '--config.eval_samples=0',
  '--config.sample_every=0',
  '--config.toy_points=2048',
]


def argv(workdir, *overrides):
  return ['jaxgan-train', f'--config={TOY}', f'--workdir={workdir}', *overrides]


def launch(*args, timeout=600):
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=str(ROOT))
  return subprocess.run(
    [sys.executable, '-m', 'experiments.main', *args],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def one_line_error(stderr: str) -> str:
  """The single ``error:`` line, last on stderr (after the run's own log lines, if any)."""
  lines = [x for x in stderr.splitlines() if x.strip()]
  errors = [x for x in lines if x.startswith('error: ')]
  assert len(errors) == 1 and lines[-1] == errors[0] and 'Traceback' not in stderr, stderr
  return errors[0]


def test_help_lists_the_flags_and_how_to_override():
  out = launch('--help')
  assert out.returncode == 0
  for text in ('--config', '--workdir', '--config.FIELD=VALUE', 'model_kwargs', 'dry_run'):
    assert text in out.stdout, text
  assert 'allow_changes' in out.stdout and 'default.py' in out.stdout


def test_a_bad_value_answers_before_jax_orbax_and_the_data_load():
  code = (
    'import sys; from jaxgan import cli; '
    f'rc = cli.run({argv("/tmp/unused", "--config.d_optimizer.lr=-0.001")!r}); '
    "print(rc, [m for m in ('jax', 'orbax.checkpoint', 'tensorflow_datasets', 'flax') "
    'if m in sys.modules])'
  )
  out = subprocess.run(
    [sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, timeout=120
  )
  assert out.stdout.split('\n')[0] == '2 []', out.stdout + out.stderr
  assert out.stderr == (
    'error: config.d_optimizer.lr=-0.001 is invalid: use a positive learning rate, e.g. 2e-4.\n'
  )


def test_config_errors_through_the_launcher_are_one_line_with_status_2(tmp_path):
  out = launch(*argv(tmp_path / 'run', '--config.foo=1')[1:])
  assert out.returncode == 2 and out.stderr.startswith('error: --config.foo=1: config has no')
  assert len(out.stderr.splitlines()) == 1
  out = launch('--workdir', str(tmp_path))
  assert out.returncode == 2 and out.stderr.startswith('error: --config is required')


def test_model_fields_are_set_from_the_command_line(tmp_path):
  config, workdir = cli.parse(
    argv(tmp_path, '--config.model_kwargs.hidden=(32,32)', '--config.model_kwargs.act', 'relu')
  )
  assert config.model_kwargs.hidden == (32, 32) and config.model_kwargs.act == 'relu'
  assert workdir == str(tmp_path)
  config, _ = cli.parse(
    ['jaxgan-train', '--config=experiments/configs/quickstart.py', '--workdir=x']
    + ['--config.model_kwargs.width=8', '--config.model_kwargs.d_norm=group']
  )
  assert config.model_kwargs.to_dict() == {'width': 8, 'd_norm': 'group'}
  with pytest.raises(cli.UsageError, match=r'hidden=5: the config holds a tuple there'):
    cli.parse(argv(tmp_path, '--config.model_kwargs.hidden=5'))


def test_dry_run_and_a_real_run_through_the_command_line(tmp_path, capsys):
  assert cli.run(argv(tmp_path / 'run', *SMALL, '--config.dry_run=True')) == 0
  assert not (tmp_path / 'run').exists()
  assert cli.run(argv(tmp_path / 'run', *SMALL)) == 0
  assert json.loads((tmp_path / 'run' / 'summary.json').read_text())['final_step'] == 4
  capsys.readouterr()
  # Resuming with another model width: the config check names it first, the shape check
  # names the arrays when the change is allowed.
  assert cli.run(argv(tmp_path / 'run', *SMALL, '--config.model_kwargs.hidden=(8,8,8)')) == 2
  assert 'model_kwargs.hidden: [128, 128, 128] -> [8, 8, 8]' in one_line_error(
    capsys.readouterr().err
  )
  overrides = ['--config.model_kwargs.hidden=(8,8,8)', '--config.allow_changes=model_kwargs']
  assert cli.run(argv(tmp_path / 'run', *SMALL, *overrides)) == 2
  assert 'does not match the state' in one_line_error(capsys.readouterr().err)


def test_divergence_is_one_line_with_status_1(tmp_path, capsys):
  lr = ['--config.d_optimizer.lr=1e30', '--config.g_optimizer.lr=1e30']
  assert cli.run(argv(tmp_path, *SMALL, *lr)) == 1
  line = one_line_error(capsys.readouterr().err)
  assert 'non-finite' in line and 'No checkpoint was saved' in line


@pytest.mark.parametrize('orbax_style', [False, True])
def test_a_full_disk_is_reported_as_such(tmp_path, capsys, monkeypatch, orbax_style):
  from jaxgan import checkpoint

  def save(*args, **kwargs):
    err = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if not orbax_style:
      raise err
    try:  # orbax reports TensorStore's write failure as a ValueError chained to its cause
      raise err
    except OSError:
      raise ValueError('RESOURCE_EXHAUSTED: Error writing "d.params" in OCDBT database') from None

  monkeypatch.setattr(checkpoint.RunCheckpointer, 'save', save)
  assert cli.run(argv(tmp_path, *SMALL)) == 1
  line = one_line_error(capsys.readouterr().err)
  assert line.startswith(f'error: disk full while writing to {tmp_path}')
  assert 'free space' in line and 'rerun the same command' in line


@pytest.fixture
def tiny_tmpfs(tmp_path):
  """A 300 kB tmpfs (needs root and mount rights; skipped otherwise)."""
  mount = tmp_path / 'small_disk'
  mount.mkdir()
  if os.geteuid() != 0 or not shutil.which('mount'):
    pytest.skip('mounting a tmpfs needs root')
  done = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=300k', 'tmpfs', str(mount)])
  if done.returncode != 0:
    pytest.skip('cannot mount a tmpfs here')
  yield mount
  subprocess.run(['umount', str(mount)], check=True)


def test_a_real_full_disk_gives_one_error_line(tiny_tmpfs):
  out = launch(*argv(tiny_tmpfs / 'run', *SMALL)[1:])
  assert out.returncode == 1
  assert 'Traceback' not in out.stderr
  errors = [x for x in out.stderr.splitlines() if x.startswith('error: ')]
  assert len(errors) == 1 and errors[0].startswith('error: disk full while writing'), out.stderr
  assert len(out.stderr.splitlines()) < 20, out.stderr


def test_the_installed_script_loads_a_config_of_the_checkout(tmp_path):
  script = Path(sys.executable).parent / 'jaxgan-train'
  if not script.exists():
    pytest.skip(f'no jaxgan-train script beside {sys.executable} (install the project first)')
  out = subprocess.run(
    [script, '--config=experiments/configs/quickstart.py', f'--workdir={tmp_path / "r"}']
    + ['--config.d_optimizer.lr=-0.001'],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert out.returncode == 2, out.stderr  # before the fix: "No module named 'experiments'"
  assert out.stderr.strip().startswith('error: config.d_optimizer.lr=-0.001 is invalid:')
