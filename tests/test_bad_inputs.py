"""Bad inputs, one row each: the message names the value and the fix.

Rows of ``CLI_ROWS`` go through the command line (``jaxgan.cli.run``, as
``jaxgan-train`` runs it): exit status 2, one ``error:`` line last on stderr, no
traceback. Rows of ``API_ROWS`` call the library and expect a ``ValueError``.
Append rows to either table; a row is ``Bad(id, args or call, value, fix)``, with
an optional ``setup(tmp_path)`` that prepares files and may return a cleanup.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from jaxgan import cli, config_checks

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / 'experiments' / 'configs'
TOY = str(CONFIGS / 'toy2d.py')
SMALL = ['--config.num_steps=4', '--config.eval_samples=0', '--config.toy_points=512']


@dataclasses.dataclass(frozen=True)
class Bad:
  """One bad input.

  Attributes:
    id: the row's name.
    args: CLI rows: the arguments after the program name, or a function of the
      test's ``tmp_path`` returning them; ``{run}`` stands for ``tmp_path/'run'``.
      API rows: a function of ``tmp_path`` that should raise ``ValueError``.
    value: text the message must contain that names the bad value.
    fix: text the message must contain that says what to do.
    setup: ``setup(tmp_path)`` run first; it may return a cleanup callable.
  """

  id: str
  args: list[str] | Callable
  value: str
  fix: str
  setup: Callable | None = None


def toy(*overrides: str) -> list[str]:
  return [f'--config={TOY}', '--workdir={run}', *SMALL, *overrides]


def config_row(id, override, value, fix, *extra):
  return Bad(id, toy(*extra, override), value, fix)


CONFIG_ROWS = [
  config_row('negative_lr', '--config.d_optimizer.lr=-0.001', 'd_optimizer.lr=-0.001', 'e.g. 2e-4'),
  config_row('zero_lr', '--config.g_optimizer.lr=0.0', 'g_optimizer.lr=0.0', 'positive learning'),
  config_row(
    'lr_schedule', '--config.g_optimizer.schedule=cosine', "schedule='cosine'", 'linear_decay'
  ),
  config_row('decay_from', '--config.d_optimizer.decay_from=1.0', 'decay_from=1.0', '[0, 1)'),
  config_row(
    'beta_one', '--config.g_optimizer.b1=1.0', 'g_optimizer.b1=1.0', 'betas lie in [0, 1)'
  ),
  config_row(
    'negative_weight_decay', '--config.d_optimizer.weight_decay=-0.1', 'weight_decay=-0.1', '>= 0'
  ),
  config_row('ema_decay_one', '--config.ema_decay=1.0', 'ema_decay=1.0', '0 turns the EMA off'),
  config_row('zero_batch', '--config.batch_size=0', 'batch_size=0', 'positive integer'),
  config_row('negative_steps', '--config.num_steps=-5', 'num_steps=-5', 'positive integer'),
  config_row('zero_log_every', '--config.log_every=0', 'log_every=0', 'positive integer'),
  config_row('zero_ckpt_every', '--config.checkpoint_every=0', 'checkpoint_every=0', 'positive'),
  config_row('zero_keep', '--config.keep_checkpoints=0', 'keep_checkpoints=0', 'positive'),
  config_row('negative_sample_every', '--config.sample_every=-1', 'sample_every=-1', '0 turns it'),
  config_row('zero_latent', '--config.latent_dim=0', 'latent_dim=0', 'positive integer'),
  config_row('zero_n_dis', '--config.n_dis=0', 'n_dis=0', 'positive integer'),
  config_row('trainer', '--config.trainer=three_stage', "trainer='three_stage'", 'one_stage'),
  config_row('loss', '--config.loss=hinj', "loss='hinj'", "'hinge'"),
  config_row('onestage_mode', '--config.onestage_mode=fast', "onestage_mode='fast'", 'asymmetric'),
  config_row(
    'onestage_mode_two_stage',
    '--config.onestage_mode=exact',
    "onestage_mode='exact'",
    '--config.trainer=one_stage',
  ),
  config_row(
    'one_stage_n_dis', '--config.n_dis=2', 'n_dis=2', 'use n_dis=1', '--config.trainer=one_stage'
  ),
  config_row('precision', '--config.precision=float16', "precision='float16'", 'bfloat16'),
  config_row('weight_clip', '--config.weight_clip=-0.01', 'weight_clip=-0.01', '0 turns it off'),
  config_row('r1', '--config.r1_weight=-1.0', 'r1_weight=-1.0', 'value >= 0'),
  config_row('diffaugment', '--config.diffaugment=colour', "'colour'", "did you mean 'color'"),
  config_row(
    'dat_steps', '--config.dat.steps=0', 'dat.steps=0', 'positive', '--config.dat.enabled=True'
  ),
  config_row(
    'dat_step_size',
    '--config.dat.step_size=-1.0',
    'dat.step_size=-1.0',
    'positive',
    '--config.dat.enabled=True',
  ),
  config_row(
    'coopinit_t_init',
    '--config.coopinit.t_init=10',
    'coopinit.t_init=10',
    'use t_init < num_steps',
    '--config.coopinit.enabled=True',
  ),
  config_row(
    'coopinit_n_steps',
    '--config.coopinit.n_steps=0',
    'n_steps=0',
    'Langevin',
    '--config.coopinit.enabled=True',
    '--config.coopinit.t_init=1',
  ),
  config_row(
    'coopinit_logit_penalty',
    '--config.coopinit.logit_penalty=-1.0',
    'logit_penalty=-1.0',
    '>= 0 (0: off)',
    '--config.coopinit.enabled=True',
    '--config.coopinit.t_init=1',
  ),
  config_row(
    'sparse_variant',
    '--config.sparse.variant=relaxx',
    "sparse.variant='relaxx'",
    "did you mean 'relax'",
    '--config.sparse.enabled=True',
  ),
  config_row(
    'sparse_density',
    '--config.sparse.g_density=1.5',
    'g_density=1.5',
    '(0, 1]',
    '--config.sparse.enabled=True',
  ),
  config_row(
    'sparse_interval',
    '--config.sparse.d_control_every=0',
    'd_control_every=0',
    'positive number of steps',
    '--config.sparse.enabled=True',
  ),
  config_row('ticket', '--config.lottery.ticket=/no/ticket.npz', '/no/ticket.npz', 'lottery_mnist'),
  config_row('ssgan_model', '--config.ssgan.enabled=True', "model='mlp'", 'dcgan28'),
  config_row('subset_fraction', '--config.subset.fraction=2.0', 'subset.fraction=2.0', '(0, 1]'),
  config_row(
    'subset_both',
    '--config.subset.count=10',
    'subset.count=10',
    'not both',
    '--config.subset.fraction=0.5',
  ),
  config_row('best_mode', '--config.best_mode=median', "best_mode='median'", "'max'"),
  config_row('guard', '--config.guard.max_param_norm=-1.0', 'max_param_norm=-1.0', '0 to turn'),
  config_row(
    'allow_changes', '--config.allow_changes=nums_steps', "'nums_steps'", "did you mean 'num_steps'"
  ),
  config_row('inception_weights', '--config.inception_weights=/no/w.npz', '/no/w.npz', 'converted'),
]


def _file(tmp_path, name='a_file'):
  (tmp_path / name).write_text('not a directory')


CLI_MISUSE_ROWS = [
  Bad('unknown_key', toy('--config.foo=1'), "'foo'", 'default.py'),
  Bad('unknown_nested_key', toy('--config.dat.foo=1'), 'config.dat has no field', 'default.py'),
  Bad('wrong_type', toy('--config.num_steps=abc'), 'num_steps=abc', '--help'),
  Bad('wrong_bool', toy('--config.dat.enabled=maybe'), 'maybe', '--help'),
  Bad('unknown_flag', toy('--foo=1'), "'foo'", '--help'),
  Bad('positional', toy('extra'), "['extra']", 'flags only'),
  Bad('no_workdir', [f'--config={TOY}'], '--workdir is required', '--workdir runs/'),
  Bad('no_config', ['--workdir={run}'], '--config is required', 'quickstart.py'),
  Bad(
    'missing_config_file',
    ['--config=/no/config.py', '--workdir={run}'],
    '/no/config.py',
    'cannot load',
  ),
  Bad('model_kwargs_type', toy('--config.model_kwargs.hidden=5'), 'hidden=5', 'value of that type'),
  Bad(
    'model_kwargs_no_value',
    toy('--config.model_kwargs.width'),
    'model_kwargs.width',
    'give a value',
  ),
  Bad('model_kwargs_unknown', toy('--config.model_kwargs.foo=1'), 'foo', 'hidden'),
  Bad('unknown_model', toy('--config.model=dcgan99'), "'dcgan99'", 'choose one of'),
]


def _fake_checkpoint(tmp_path):
  (tmp_path / 'run' / 'checkpoints' / '10').mkdir(parents=True)


def _hold_lock(tmp_path):
  code = (
    'import time; from jaxgan.workdir_lock import WorkdirLock; '
    f"lock = WorkdirLock({str(tmp_path / 'run')!r}); lock.acquire(); print('held', flush=True); "
    'time.sleep(600)'
  )
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  proc = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, text=True, env=env)
  assert proc.stdout.readline().strip() == 'held'
  return lambda: (proc.kill(), proc.wait())


def _read_only_run(tmp_path):
  """An existing run in a read-only directory (a read-only tmpfs as root, else chmod)."""
  run = tmp_path / 'run'
  run.mkdir()
  (run / 'config.json').write_text('{}')
  if os.geteuid() != 0:
    run.chmod(0o555)
    return lambda: run.chmod(0o755)
  mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', str(run)])
  if mounted.returncode != 0:
    pytest.skip('cannot make a read-only directory here')
  (run / 'config.json').write_text('{}')
  subprocess.run(['mount', '-o', 'remount,ro', str(run)], check=True)
  return lambda: subprocess.run(['umount', str(run)], check=True)


def _trained_run(tmp_path):
  shutil.copytree(TRAINED, tmp_path / 'run')


WORKDIR_ROWS = [
  Bad(
    'workdir_is_a_file',
    [f'--config={TOY}', '--workdir={tmp}/a_file'],
    'a_file is a file',
    'give a directory',
    _file,
  ),
  Bad(
    'workdir_under_a_file',
    [f'--config={TOY}', '--workdir={tmp}/a_file/run'],
    'a_file is a file',
    'under a directory',
    _file,
  ),
  Bad('read_only_workdir', toy(), 'cannot write in', 'writable directory', _read_only_run),
  Bad('num_steps_below_checkpoint', toy(), 'num_steps=4', 'use num_steps >= 10', _fake_checkpoint),
  Bad('workdir_in_use', toy(), 'is in use by pid', 'another --workdir', _hold_lock),
  Bad(
    'resume_other_loss',
    toy('--config.loss=hinge'),
    "loss: 'ns' -> 'hinge'",
    'allow_changes=loss',
    _trained_run,
  ),
  Bad(
    'resume_other_trainer',
    toy('--config.trainer=one_stage'),
    "trainer: 'two_stage' -> 'one_stage'",
    'allow_changes=trainer',
    _trained_run,
  ),
  Bad(
    'resume_other_technique',
    toy('--config.dat.enabled=True'),
    'dat.enabled: False -> True',
    'new --workdir',
    _trained_run,
  ),
  Bad(
    'resume_other_shapes',
    toy('--config.model_kwargs.hidden=(8,8,8)', '--config.allow_changes=model_kwargs'),
    'dense0',
    'the config the run was started with',
    _trained_run,
  ),
]


def _image_folder(tmp_path, broken=False):
  folder = tmp_path / 'images'
  folder.mkdir()
  if broken:
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / 'ok.png')
    (folder / 'broken.png').write_bytes(b'not a png')


def _folder_args(*extra):
  """The 100-shot config on a folder of the test's (which holds the image_folder section)."""
  return [
    f'--config={CONFIGS / "stylegan2_100shot.py"}',
    '--workdir={run}',
    '--config.image_folder.path={tmp}/images',
    '--config.image_folder.resolution=8',
    '--config.data_dir={tmp}/tfds',
    *extra,
  ]


DATA_ROWS = [
  Bad(
    'image_folder_missing',
    _folder_args('--config.image_folder.path=/no/such/folder'),
    "'/no/such/folder'",
    'existing folder',
  ),
  Bad(
    'image_folder_unset',
    _folder_args('--config.image_folder.path='),
    "image_folder.path=''",
    'PNG/JPEG',
  ),
  Bad(
    'empty_image_folder', _folder_args(), 'no images', 'put PNG or JPEG files there', _image_folder
  ),
  Bad(
    'broken_image',
    _folder_args(),
    'broken.png',
    'cannot read image',
    lambda t: _image_folder(t, broken=True),
  ),
  Bad(
    'batch_above_data', toy('--config.toy_points=10'), 'batch_size=256', 'exceeds the 10 training'
  ),
]

CLI_ROWS = CONFIG_ROWS + CLI_MISUSE_ROWS + WORKDIR_ROWS + DATA_ROWS


def _checkpointer_keep_zero(tmp_path):
  from jaxgan import checkpoint

  checkpoint.RunCheckpointer(tmp_path, keep=0)


def _image_at_resolution_zero(tmp_path):
  from jaxgan.data import image_folder

  image_folder.load_image(tmp_path / 'any.png', 0)


def _step_call(
  images=None, *, builder='two_stage', loss='ns', mode='auto', d_module=None, g_tx=None, batch=None
):
  """Builds a step of the tiny game and calls it once on ``images`` (or ``batch``)."""
  import optax
  import tiny_models as tm

  from jaxgan import onestage, steps

  game, g, d = tm.make_game(
    loss if isinstance(loss, str) else 'ns', d_module=d_module, d_batch_coupled=None
  )
  if not isinstance(loss, str):
    game = game.replace(loss=loss)
  state = tm.make_state(g, d)
  g_tx = g_tx or optax.identity()
  if builder == 'two_stage':
    step = steps.two_stage_step(game, g_tx, optax.identity())
  else:
    step = onestage.one_stage_step(game, g_tx, optax.identity(), mode=mode)
  step(state, {'image': images} if batch is None else batch)


def _renamed_hinge():
  import dataclasses

  from jaxgan import losses

  return dataclasses.replace(losses.get_loss('hinge'), name='my_hinge')


def _d_with_two_logits():
  import flax.linen as nn

  class TwoLogitD(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool):
      return nn.Dense(2)(x.reshape(x.shape[0], -1))

  return TwoLogitD()


def _batchnorm_d():
  import tiny_models as tm

  return tm.TinyBND()


_IMAGES = np.linspace(-1, 1, 8 * 4, dtype=np.float32).reshape(8, 2, 2, 1)

API_ROWS = [
  Bad('checkpointer_keep', _checkpointer_keep_zero, 'got 0', 'keep must be >= 1'),
  Bad('image_resolution', _image_at_resolution_zero, 'got 0', 'positive int (e.g. 256)'),
  Bad(
    'step_images_0_255',
    lambda t: _step_call(np.full((8, 2, 2, 1), 200.0, np.float32)),
    'spans [200, 200]',
    'jaxgan.data.to_float',
  ),
  Bad(
    'step_uint8_images',
    lambda t: _step_call(np.zeros((8, 2, 2, 1), np.uint8)),
    'dtype uint8',
    'jaxgan.data.to_float',
  ),
  Bad(
    'step_empty_batch',
    lambda t: _step_call(np.zeros((0, 2, 2, 1), np.float32)),
    'is empty',
    'at least one image',
  ),
  Bad('step_batch_not_a_dict', lambda t: _step_call(batch=_IMAGES), 'got ndarray', "{'image'"),
  Bad(
    'step_optimizer_not_the_states',
    lambda t: _step_call(_IMAGES, g_tx=__import__('optax').adam(1e-3)),
    'EmptyState',
    'create_state(g_tx=...)',
  ),
  Bad(
    'step_d_two_logits',
    lambda t: _step_call(_IMAGES, d_module=_d_with_two_logits()),
    'got shape (8, 2)',
    'out[:, 0]',
  ),
  Bad(
    'onestage_asymmetric_batchnorm_d',
    lambda t: _step_call(_IMAGES, builder='one_stage', mode='asymmetric', d_module=_batchnorm_d()),
    'batch-coupled D',
    "mode='exact'",
  ),
  Bad(
    'onestage_asymmetric_renamed_hinge',
    lambda t: _step_call(_IMAGES, builder='one_stage', mode='asymmetric', loss=_renamed_hinge()),
    "'my_hinge'",
    "mode='exact'",
  ),
  Bad(
    'onestage_symmetric_ns',
    lambda t: _step_call(_IMAGES, builder='one_stage', mode='symmetric'),
    "got 'ns'",
    "mode='asymmetric'",
  ),
  Bad(
    'onestage_unknown_mode',
    lambda t: _step_call(_IMAGES, builder='one_stage', mode='fast'),
    "'fast'",
    'choose one of',
  ),
  Bad(
    'step_images_of_another_shape',
    lambda t: _step_call(np.zeros((8, 4, 4, 1), np.float32)),
    '(4, 4, 1)',
    'image_shape',
  ),
]
TRAINED: Path


@pytest.fixture(scope='module', autouse=True)
def trained_template(tmp_path_factory):
  """A finished 2-step toy run, copied by the resume rows."""
  global TRAINED
  TRAINED = tmp_path_factory.mktemp('trained') / 'run'
  argv = ['jaxgan-train', f'--config={TOY}', f'--workdir={TRAINED}', *SMALL, '--config.num_steps=2']
  assert cli.run(argv) == 0


def _fill(arg: str, tmp_path: Path) -> str:
  return arg.replace('{run}', str(tmp_path / 'run')).replace('{tmp}', str(tmp_path))


def test_the_table_is_large_and_its_ids_unique():
  ids = [row.id for row in CLI_ROWS + API_ROWS]
  assert len(ids) >= 40 and len(set(ids)) == len(ids)


@pytest.mark.parametrize('row', CLI_ROWS, ids=lambda r: r.id)
def test_bad_input_on_the_command_line(row, tmp_path, capsys):
  cleanup = row.setup(tmp_path) if row.setup else None
  try:
    args = row.args(tmp_path) if callable(row.args) else row.args
    status = cli.run(['jaxgan-train', *(_fill(a, tmp_path) for a in args)])
  finally:
    if callable(cleanup):
      cleanup()
  err = capsys.readouterr().err
  lines = [x for x in err.splitlines() if x.strip()]
  assert status == 2, err
  assert lines and lines[-1].startswith('error: ') and 'Traceback' not in err, err
  assert sum(x.startswith('error: ') for x in lines) == 1, err
  assert row.value in lines[-1], (row.value, lines[-1])
  assert row.fix in lines[-1], (row.fix, lines[-1])


@pytest.mark.parametrize('row', API_ROWS, ids=lambda r: r.id)
def test_bad_input_to_the_library(row, tmp_path):
  if row.setup:
    row.setup(tmp_path)
  with pytest.raises(ValueError) as err:
    row.args(tmp_path)
  assert row.value in str(err.value) and row.fix in str(err.value), str(err.value)


def test_name_lists_match_the_library():
  """config_checks and jaxgan.wiring repeat names so that they import nothing heavy: they must
  not drift."""
  from jaxgan import augment, infomax, losses, onestage, ssgan, wiring
  from jaxgan.sparse import ddst

  assert sorted(config_checks.LOSSES) == sorted(losses.LOSSES)
  assert config_checks.ONESTAGE_MODES == onestage.MODES
  assert wiring.sparse.VARIANTS == ddst.VARIANTS
  assert sorted(wiring.diffaugment.OPS) == sorted(augment.POLICY_OPS)
  assert wiring.ssgan.ROTATIONS == ssgan.ROTATIONS
  assert wiring.infomax.NEGATIVES == infomax.NEGATIVES
