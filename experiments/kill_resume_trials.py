"""Adversarial runs of the training program: SIGKILLs, damaged checkpoints, bad inputs.

  nice -n 10 python -m experiments.kill_resume_trials [--kills 20] [--families base,lottery]
      [--parts kills,corrupt,bad_inputs] [--workdir runs/kill_trials] [--json FILE] [--seed 0]

* ``kills``: per technique family (``base``; ``onestage_ddst``: one-stage updates of a DDST
  sparse G and D; ``coop_dat_diffaug``: CoopInit, DAT and DiffAugment on MNIST;
  ``lottery``: a lottery ticket of G), trials of one to three SIGKILLs each (at a random
  time, or 0-40 ms after a checkpoint directory appears, i.e. during its write) until
  ``--kills`` kills were sent; each trial then runs to the end and its final checkpoint
  is compared with an uninterrupted run's, bit for bit, and its ``metrics.jsonl`` must
  hold each logged step once.
* ``corrupt``: a finished base run's checkpoints damaged in several ways (the final one
  truncated, its metadata or manifest removed, its data overwritten with noise, its config
  item broken, every checkpoint damaged, a write left half-done); the same command must
  end with a readable final checkpoint equal to the uninterrupted run's.
* ``bad_inputs``: the bad inputs of issues 19 and 20, each classified as a clear error (one
  ``error:`` line, no traceback), handled (the right result), a traceback, or a silent
  wrong result.

Runs are tiny (2-D toy mixtures, an 8-wide DCGAN-28 on MNIST) but the trials start many
processes: run it on an otherwise idle machine, with ``nice``. It prints one table and
writes the details as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / 'experiments' / 'configs'
TOY = [f'--config={CONFIGS / "toy2d.py"}', '--config.toy_points=4096', '--config.eval_samples=0']
TOY += ['--config.sample_every=0', '--config.log_every=5', '--config.keep_checkpoints=3']
FAMILIES = {
  'base': TOY + ['--config.num_steps=60', '--config.checkpoint_every=10'],
  'onestage_ddst': TOY
  + ['--config.num_steps=60', '--config.checkpoint_every=10', '--config.trainer=one_stage']
  + ['--config.sparse.enabled=True', '--config.sparse.variant=relax']
  + ['--config.sparse.g_update_every=10', '--config.sparse.d_control_every=20']
  + ['--config.sparse.br_window=10', '--config.sparse.br_freq=1'],
  'coop_dat_diffaug': [f'--config={CONFIGS / "quickstart.py"}', '--config.model_kwargs.width=8']
  + ['--config.batch_size=16', '--config.num_steps=30', '--config.checkpoint_every=5']
  + ['--config.eval_samples=0', '--config.sample_every=0', '--config.log_every=5']
  + ['--config.coopinit.enabled=True', '--config.coopinit.t_init=10']
  + ['--config.coopinit.n_steps=2', '--config.dat.enabled=True']
  + ['--config.diffaugment=color,translation,cutout'],
  'lottery': TOY
  + ['--config.num_steps=60', '--config.checkpoint_every=10']
  + ['--config.lottery.ticket={ticket}'],
}


def _env() -> dict:
  return dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=str(ROOT))


def _cmd(args: list[str], workdir: Path) -> list[str]:
  return [sys.executable, '-m', 'experiments.main', *args, f'--workdir={workdir}']


def _run(args, workdir, timeout=1800) -> subprocess.CompletedProcess:
  return subprocess.run(
    _cmd(args, workdir), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout
  )


def _final_arrays(args: list[str], workdir: Path) -> tuple[int, list[np.ndarray]] | None:
  """The newest readable checkpoint's step and arrays, restored with the run's own config."""
  import jax

  from jaxgan import checkpoint, cli, run_setup

  config, _ = cli.parse(['x', *args, f'--workdir={workdir}'])
  run = run_setup.build_run(config)
  ck = checkpoint.RunCheckpointer(workdir)
  try:
    found = ck.restore(run.init_state(jax.random.PRNGKey(config.seed)), set_aside=False)
  finally:
    ck.close()
  if found is None:
    return None
  return found[3], [np.asarray(x) for x in jax.tree.leaves(found[0])]


def _identical(a, b) -> bool:
  return (
    a is not None
    and b is not None
    and a[0] == b[0]
    and len(a[1]) == len(b[1])
    and all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a[1], b[1]))
  )


def _log_steps_once(workdir: Path) -> bool:
  path = workdir / 'metrics.jsonl'
  steps = [json.loads(x)['step'] for x in path.read_text().splitlines()] if path.exists() else []
  return bool(steps) and steps == sorted(set(steps))


def _make_ticket(path: Path) -> str:
  """A random 50% ticket of the toy G (what experiments.lottery_mnist writes, at random)."""
  import jax

  from jaxgan import cli, run_setup
  from jaxgan.sparse import lottery

  config, _ = cli.parse(['x', *TOY, '--workdir=unused'])
  params = run_setup.build_run(config).init_state(jax.random.PRNGKey(0)).g.params
  rng = np.random.default_rng(0)
  masks = jax.tree.map(lambda m: rng.random(m.shape) < 0.5, lottery.dense_masks(params))
  path.parent.mkdir(parents=True, exist_ok=True)
  np.savez(path, **lottery.masks_to_arrays(masks))
  return str(path)


def _kill_once(args, workdir: Path, rng: random.Random, wall: float) -> bool:
  """Starts the run and SIGKILLs it; False if it finished first."""
  proc = subprocess.Popen(
    _cmd(args, workdir),
    cwd=ROOT,
    env=_env(),
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  ckpts = workdir / 'checkpoints'
  if rng.random() < 0.5:  # during a checkpoint write
    seen = set(os.listdir(ckpts)) if ckpts.is_dir() else set()
    skip = rng.randrange(3)
    while proc.poll() is None:
      now = set(os.listdir(ckpts)) if ckpts.is_dir() else set()
      if now - seen:
        seen = now
        if skip == 0:
          time.sleep(rng.uniform(0.0, 0.04))
          break
        skip -= 1
      time.sleep(0.002)
  else:
    deadline = time.time() + rng.uniform(0.3, 1.2) * wall
    while proc.poll() is None and time.time() < deadline:
      time.sleep(0.01)
  if proc.poll() is not None:
    return False
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  return True


def kill_trials(family: str, args: list[str], root: Path, kills: int, rng: random.Random) -> dict:
  """Trials of SIGKILL + restart until ``kills`` kills; each final state vs. the reference."""
  t0 = time.time()
  ref_dir = root / family / 'reference'
  shutil.rmtree(ref_dir, ignore_errors=True)
  done = _run(args, ref_dir)
  if done.returncode:
    raise RuntimeError(f'{family}: the reference run failed:\n{done.stderr[-3000:]}')
  wall = time.time() - t0
  reference = _final_arrays(args, ref_dir)
  trials, sent = [], 0
  while sent < kills:
    workdir = root / family / f'trial{len(trials)}'
    shutil.rmtree(workdir, ignore_errors=True)
    n = 0
    for _ in range(rng.randint(1, 3)):
      n += _kill_once(args, workdir, rng, wall)
    sent += n
    finish = _run(args, workdir)
    final = _final_arrays(args, workdir) if finish.returncode == 0 else None
    trials.append(
      {
        'kills': n,
        'exit': finish.returncode,
        'identical': _identical(final, reference),
        'log_steps_once': _log_steps_once(workdir),
        'stderr_tail': finish.stderr[-500:] if finish.returncode else '',
      }
    )
    print(f'  {family} trial {len(trials)}: {n} kills, identical={trials[-1]["identical"]}')
  return {
    'kills': sent,
    'trials': len(trials),
    'identical': sum(t['identical'] and t['log_steps_once'] for t in trials),
    'details': trials,
  }


def _damage_final(files: Callable[[Path], list[Path]], how: str):
  def damage(workdir: Path) -> None:
    final = workdir / 'checkpoints' / str(_latest(workdir))
    for f in files(final):
      if how == 'truncate':
        f.write_bytes(b'')
      elif how == 'noise':
        f.write_bytes(os.urandom(max(16, f.stat().st_size)))
      else:
        f.unlink()

  return damage


def _latest(workdir: Path) -> int:
  return max(int(p.name) for p in (workdir / 'checkpoints').iterdir() if p.name.isdigit())


def _all_files(d: Path) -> list[Path]:
  return [f for f in d.rglob('*') if f.is_file()]


def _every_checkpoint(workdir: Path) -> None:
  for d in (workdir / 'checkpoints').iterdir():
    for f in _all_files(d / 'state'):
      f.write_bytes(b'')


def _half_written(workdir: Path) -> None:
  final = workdir / 'checkpoints' / str(_latest(workdir))
  shutil.copytree(final, final.parent / f'{_latest(workdir) + 10}.orbax-checkpoint-tmp-1234')


CORRUPTIONS = {
  'final truncated': _damage_final(lambda d: _all_files(d / 'state'), 'truncate'),
  'final data overwritten with noise': _damage_final(
    lambda d: [f for f in _all_files(d / 'state') if 'ocdbt.process' in str(f)], 'noise'
  ),
  'final metadata removed': _damage_final(lambda d: [d / '_CHECKPOINT_METADATA'], 'remove'),
  'final state manifest removed': _damage_final(
    lambda d: [d / 'state' / 'manifest.ocdbt'], 'remove'
  ),
  'final config item broken': _damage_final(lambda d: _all_files(d / 'config'), 'noise'),
  'final data position removed': _damage_final(lambda d: _all_files(d / 'data'), 'remove'),
  'every checkpoint truncated': _every_checkpoint,
  'a half-written later checkpoint': _half_written,
}


def corrupt_trials(root: Path) -> dict:
  args = FAMILIES['base']
  ref_dir = root / 'corrupt' / 'reference'
  shutil.rmtree(ref_dir, ignore_errors=True)
  if _run(args, ref_dir).returncode:
    raise RuntimeError('corrupt: the reference run failed')
  reference = _final_arrays(args, ref_dir)
  results = {}
  for name, damage in CORRUPTIONS.items():
    workdir = root / 'corrupt' / name.replace(' ', '_')
    shutil.rmtree(workdir, ignore_errors=True)
    shutil.copytree(ref_dir, workdir)
    damage(workdir)
    rerun = _run(args, workdir)
    final = _final_arrays(args, workdir) if rerun.returncode == 0 else None
    warnings = [x for x in rerun.stderr.splitlines() if x.startswith('WARNING')]
    results[name] = {
      'survived': rerun.returncode == 0 and _identical(final, reference),
      'warning_lines': len(warnings),
      'longest_warning': max((len(x) for x in warnings), default=0),
    }
    print(f'  corrupt: {name}: {results[name]}')
  return results


# ---------------------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------------------

SMALL = TOY + ['--config.num_steps=4', '--config.checkpoint_every=2']


def _classify(out: subprocess.CompletedProcess, handled: bool | None = None) -> str:
  """'clear error', 'handled', 'traceback' or 'silent'."""
  lines = [x for x in out.stderr.splitlines() if x.strip()]
  if 'Traceback' in out.stderr:
    return 'traceback'
  if out.returncode != 0 and lines and lines[-1].startswith('error: '):
    return 'clear error'
  if out.returncode == 0 and handled:
    return 'handled'
  return 'silent'


def _cli_case(*extra, config=SMALL):
  def case(tmp: Path) -> str:
    return _classify(_run([*config, *extra], tmp / 'run'))

  return case


def _resume_case(*changed):
  def case(tmp: Path) -> str:
    _run(SMALL, tmp / 'run')
    return _classify(_run([*SMALL, *changed], tmp / 'run'))

  return case


def _python(code: str) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, '-c', code], cwd=ROOT, env=_env(), capture_output=True, text=True
  )


def _two_processes(tmp: Path) -> str:
  first = subprocess.Popen(
    _cmd([*TOY, '--config.num_steps=100000000'], tmp / 'run'),
    cwd=ROOT,
    env=_env(),
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  try:
    while not (tmp / 'run' / '.lock').exists() or not (tmp / 'run' / '.lock').read_text():
      time.sleep(0.05)
    return _classify(_run(SMALL, tmp / 'run'))
  finally:
    first.kill()
    first.wait()


def _sixteen_bit(tmp: Path) -> str:
  code = (
    'import numpy as np; from PIL import Image; from jaxgan.data import image_folder as f; '
    'a = (np.arange(4096).reshape(64, 64) * 16).astype(np.uint16); '
    f'Image.fromarray(a).save({str(tmp / "g.png")!r}); '
    f'x = f.load_image({str(tmp / "g.png")!r}, 64); print((x == 255).mean())'
  )
  out = _python(code)
  return _classify(out, handled=out.returncode == 0 and float(out.stdout.split()[-1]) < 0.01)


def _read_only(tmp: Path) -> str:
  run = tmp / 'run'
  _run(SMALL, run)
  if os.geteuid() != 0:
    run.chmod(0o555)
    try:
      return _classify(_run([*SMALL, '--config.num_steps=6'], run))
    finally:
      run.chmod(0o755)
  shutil.move(run, tmp / 'saved')
  run.mkdir()
  if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=20m', 'tmpfs', str(run)]).returncode:
    return 'not run (cannot mount)'
  try:
    shutil.copytree(tmp / 'saved', run, dirs_exist_ok=True)
    subprocess.run(['mount', '-o', 'remount,ro', str(run)], check=True)
    t0 = time.time()
    verdict = _classify(_run([*SMALL, '--config.num_steps=6'], run))
    return f'{verdict} ({time.time() - t0:.1f} s)'
  finally:
    subprocess.run(['umount', str(run)])


def _disk_full(tmp: Path) -> str:
  run = tmp / 'run'
  run.mkdir()
  if (
    os.geteuid() != 0
    or subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=300k', 'tmpfs', str(run)]).returncode
  ):
    return 'not run (cannot mount)'
  try:
    out = _run(SMALL, run / 'r')
    verdict = _classify(out)
    said = 'disk full' in (out.stderr.splitlines() or [''])[-1]
    return f'{verdict}, {len(out.stderr.splitlines())} stderr lines, disk full said: {said}'
  finally:
    subprocess.run(['umount', str(run)])


def _model_kwargs(tmp: Path) -> str:
  out = _run([*SMALL, '--config.model_kwargs.hidden=(16,16)', '--config.dry_run=True'], tmp / 'r')
  return _classify(out, handled=out.returncode == 0)


def _killed_in_first_checkpoint(tmp: Path) -> str:
  args = [*TOY, '--config.num_steps=8', '--config.checkpoint_every=8', '--config.log_every=1']
  proc = subprocess.Popen(
    _cmd(args, tmp / 'run'),
    cwd=ROOT,
    env=_env(),
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  while proc.poll() is None and not (tmp / 'run' / 'checkpoints').is_dir():
    time.sleep(0.01)
  while proc.poll() is None and not os.listdir(tmp / 'run' / 'checkpoints'):
    time.sleep(0.002)
  proc.kill()
  proc.wait()
  out = _run(args, tmp / 'run')
  return _classify(out, handled=_log_steps_once(tmp / 'run'))


def _fresh_divergence(tmp: Path) -> str:
  out = _run([*SMALL, '--config.d_optimizer.lr=1e30', '--config.g_optimizer.lr=1e30'], tmp / 'r')
  right = 'No checkpoint was saved' in out.stderr and 'is kept' not in out.stderr
  return _classify(out) + ('' if right else ' (claims a kept checkpoint)')


def _huge_lr_guard(tmp: Path) -> str:
  lr = ['--config.d_optimizer.lr=1e6', '--config.g_optimizer.lr=1e6', '--config.num_steps=40']
  out = _run([*SMALL, *lr, '--config.guard.max_param_norm=10000.0'], tmp / 'r')
  return _classify(out) + (' (guard)' if 'guard.max_param_norm' in out.stderr else '')


def _step_api(batch: str, g_tx: str = 'run.g_tx') -> Callable[[Path], str]:
  """A misuse of the step API on MNIST: ``batch`` and ``g_tx`` are Python expressions.

  The step is called directly (no command line): a ``ValueError`` naming the
  problem is a clear error, any other exception a traceback, no error silent.
  """
  code = (
    'import jax, numpy as np, optax; from jaxgan import cli, run_setup, steps; '
    f"config, _ = cli.parse(['x', '--config={CONFIGS / 'quickstart.py'}', '--workdir=unused', "
    "'--config.model_kwargs.width=8', '--config.eval_samples=0']); "
    'run = run_setup.build_run(config); state = run.init_state(jax.random.PRNGKey(0)); '
    "real = np.asarray(run.arrays['image'][:8], np.float32) / 127.5 - 1; "
    f'step = steps.two_stage_step(run.game, {g_tx}, run.d_tx); '
    f"print(step(state, {{'image': {batch}}})[1])"
  )

  def case(tmp: Path) -> str:
    out = _python(code)
    last = (out.stderr.strip().splitlines() or [''])[-1]
    if out.returncode == 0:
      return 'silent'
    return 'clear error' if last.startswith('ValueError: ') else f'traceback ({last[:80]})'

  return case


def _workdir_is_a_file(tmp: Path) -> str:
  (tmp / 'file').write_text('not a directory')
  return _classify(_run(SMALL, tmp / 'file'))


BAD_INPUTS = {
  'two processes on one workdir': _two_processes,
  '16-bit PNG': _sixteen_bit,
  'images in [0, 255] to a step': _step_api('(real + 1) * 127.5'),
  'images in [0, 1] to a step': _step_api('(real + 1) / 2'),
  'num_steps below the checkpoint': _resume_case('--config.num_steps=2'),
  'loss changed on resume': _resume_case('--config.loss=hinge'),
  'trainer changed on resume': _resume_case('--config.trainer=one_stage'),
  'CoopInit t_init beyond num_steps': _cli_case(
    '--config.coopinit.enabled=True', '--config.coopinit.t_init=100'
  ),
  'onestage_mode under two-stage': _cli_case('--config.onestage_mode=asymmetric'),
  'unknown config key': _cli_case('--config.foo=1'),
  'model_kwargs from the command line': _model_kwargs,
  'workdir is a file': _workdir_is_a_file,
  'read-only workdir of a run': _read_only,
  'disk full': _disk_full,
  'empty batch': _step_api('real[:0]'),
  'optimizer not matching the state': _step_api('real', g_tx='optax.sgd(1e-3)'),
  'negative learning rate': _cli_case('--config.d_optimizer.lr=-0.001'),
  'ema_decay=1': _cli_case('--config.ema_decay=1.0'),
  'unknown sparse variant': _cli_case('--config.sparse.enabled=True', '--config.sparse.variant=x'),
  'DiffAugment typo': _cli_case('--config.diffaugment=colour'),
  'missing image folder': _cli_case(
    '--config.image_folder.path=/no/such/folder',
    config=[f'--config={CONFIGS / "stylegan2_100shot.py"}'],
  ),
  'killed during the first checkpoint write': _killed_in_first_checkpoint,
  'fresh run diverges': _fresh_divergence,
  'learning rate 1e6 (guard on)': _huge_lr_guard,
}


def bad_input_trials(root: Path) -> dict:
  results = {}
  for name, case in BAD_INPUTS.items():
    tmp = root / 'bad_inputs' / name.replace(' ', '_').replace('/', '_')
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    results[name] = case(tmp)
    print(f'  bad input: {name}: {results[name]}')
  return results


def main(argv: list[str] | None = None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--kills', type=int, default=20, help='SIGKILLs per family')
  p.add_argument('--families', default=','.join(FAMILIES))
  p.add_argument('--parts', default='kills,corrupt,bad_inputs')
  p.add_argument('--workdir', default='runs/kill_trials')
  p.add_argument('--json', default='')
  p.add_argument('--seed', type=int, default=0)
  args = p.parse_args(argv)
  root = Path(args.workdir).absolute()
  rng = random.Random(args.seed)
  parts = args.parts.split(',')
  report: dict = {'machine': {'cpus': os.cpu_count(), 'python': sys.version.split()[0]}}
  if 'kills' in parts:
    report['kills'] = {}
    for family in args.families.split(','):
      fam = FAMILIES[family]
      if any('{ticket}' in a for a in fam):
        ticket = _make_ticket(root / 'ticket.npz')
        fam = [a.replace('{ticket}', ticket) for a in fam]
      report['kills'][family] = kill_trials(family, fam, root, args.kills, rng)
  if 'corrupt' in parts:
    report['corrupt'] = corrupt_trials(root)
  if 'bad_inputs' in parts:
    report['bad_inputs'] = bad_input_trials(root)
  print('\nfamily              kills  trials  bit-identical (and each step logged once)')
  for family, r in report.get('kills', {}).items():
    print(f'{family:<20}{r["kills"]:>5}{r["trials"]:>8}  {r["identical"]}/{r["trials"]}')
  if 'corrupt' in report:
    ok = sum(r['survived'] for r in report['corrupt'].values())
    print(f'\ncorrupt checkpoints survived: {ok}/{len(report["corrupt"])}')
  if 'bad_inputs' in report:
    counts: dict[str, int] = {}
    for verdict in report['bad_inputs'].values():
      key = verdict.split(' (')[0].split(',')[0]
      counts[key] = counts.get(key, 0) + 1
    print(f'\nbad inputs ({len(report["bad_inputs"])}): {counts}')
  if args.json:
    Path(args.json).write_text(json.dumps(report, indent=2, default=str))
  return report


if __name__ == '__main__':
  main()
