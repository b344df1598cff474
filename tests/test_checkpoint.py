"""RunCheckpointer: complete round trip, corrupt-latest fallback, mismatch refusal."""

import shutil

import chex
import jax
import optax
import pytest
import tiny_models as tm

from jaxgan import checkpoint
from jaxgan.steps import two_stage_step


def trained_state(steps=2, d_module=None):
  game, g_mod, d_mod = tm.make_game('ns', d_module=d_module)
  tx = optax.adam(1e-2)
  state = tm.make_state(g_mod, d_mod, g_tx=tx, d_tx=tx, use_ema=True)
  step = jax.jit(two_stage_step(game, tx, tx, ema_decay=0.9))
  for i in range(steps):
    state, _ = step(state, tm.real_batch(seed=i))
  return state


def truncate_checkpoint(workdir, step):
  """Empties every array file of checkpoint ``step``, as a crash mid-write on a non-atomic
  filesystem would."""
  for f in (workdir / 'checkpoints' / str(step) / 'state').rglob('*'):
    if f.is_file():
      f.write_bytes(b'')


def test_round_trip_restores_everything(tmp_path):
  state = trained_state(d_module=tm.TinyBND())
  ck = checkpoint.RunCheckpointer(tmp_path, keep=2)
  ck.save(2, state, {'epoch': 1, 'index': 17}, '{"a": 1}')
  ck.wait()
  fresh = trained_state(0, d_module=tm.TinyBND())
  restored, pos, cfg, step = ck.restore(fresh)
  ck.close()
  chex.assert_trees_all_equal(restored, state)  # params, BN stats, Adam moments, EMA, rng, step
  assert pos == {'epoch': 1, 'index': 17} and cfg == '{"a": 1}' and step == 2


def test_keeps_last_n(tmp_path):
  state = trained_state(1)
  ck = checkpoint.RunCheckpointer(tmp_path, keep=2)
  for s in (1, 2, 3):
    ck.save(s, state, {}, '{}')
  ck.wait()
  assert ck.steps() == [2, 3]
  ck.close()


def latest_of_two_truncated(tmp_path):
  """Checkpoints of steps 1 and 2 with step 2 truncated; ``(s1, s2, a reopened checkpointer)``."""
  s1, s2 = trained_state(1), trained_state(2)
  ck = checkpoint.RunCheckpointer(tmp_path, keep=3)
  ck.save(1, s1, {'i': 1}, '{}')
  ck.save(2, s2, {'i': 2}, '{}')
  ck.close()
  truncate_checkpoint(tmp_path, 2)
  return s1, s2, checkpoint.RunCheckpointer(tmp_path, keep=3)


def test_corrupt_latest_falls_back_to_previous(tmp_path, caplog):
  s1, s2, ck = latest_of_two_truncated(tmp_path)
  with caplog.at_level('WARNING'):
    restored, pos, _, step = ck.restore(trained_state(0))
  ck.close()
  assert step == 1 and pos == {'i': 1}
  chex.assert_trees_all_equal(restored.g.params, s1.g.params)
  assert 'trying the previous one' in caplog.text


def test_missing_metadata_falls_back_too(tmp_path):
  ck = checkpoint.RunCheckpointer(tmp_path, keep=3)
  ck.save(1, trained_state(1), {}, '{}')
  ck.save(2, trained_state(2), {}, '{}')
  ck.close()
  shutil.rmtree(tmp_path / 'checkpoints' / '2' / 'state')
  ck = checkpoint.RunCheckpointer(tmp_path, keep=3)
  assert ck.restore(trained_state(0))[3] == 1
  ck.close()


def test_mismatched_shapes_refused_with_names(tmp_path):
  ck = checkpoint.RunCheckpointer(tmp_path, keep=2)
  ck.save(1, trained_state(1), {}, '{}')
  ck.close()
  other = trained_state(0, d_module=tm.TinyBND())  # adds BatchNorm params and stats
  ck = checkpoint.RunCheckpointer(tmp_path, keep=2)
  with pytest.raises(
    checkpoint.CheckpointMismatchError, match=r'BatchNorm_0.*not in the checkpoint'
  ):
    ck.restore(other)
  ck.close()


def test_no_checkpoint_returns_none(tmp_path):
  ck = checkpoint.RunCheckpointer(tmp_path)
  assert ck.restore(trained_state(0)) is None
  ck.close()


def test_unreadable_latest_is_set_aside_and_saved_again(tmp_path):
  """orbax never saves a step at or below the newest on disk: the unreadable one must go."""
  s1, s2, ck = latest_of_two_truncated(tmp_path)
  assert ck.restore(trained_state(0))[3] == 1
  assert ck.steps() == [1] and ck.set_aside == [tmp_path / checkpoint.UNREADABLE_DIR / '2']
  ck.save(2, s2, {'i': 2}, '{}')  # the retrained step 2
  ck.close()
  ck = checkpoint.RunCheckpointer(tmp_path, keep=3)
  restored, pos, _, step = ck.restore(trained_state(0))
  ck.close()
  assert step == 2 and pos == {'i': 2}
  chex.assert_trees_all_equal(restored, s2)


def test_a_declined_save_raises(tmp_path):
  ck = checkpoint.RunCheckpointer(tmp_path, keep=3)
  ck.save(2, trained_state(1), {}, '{}')
  with pytest.raises(checkpoint.CheckpointSaveError, match='did not save step 1.*holds step 2'):
    ck.save(1, trained_state(1), {}, '{}')
  ck.close()


def _state_with(tx, steps=2):
  game, g_mod, d_mod = tm.make_game('ns')
  state = tm.make_state(g_mod, d_mod, g_tx=tx, d_tx=tx)
  step = jax.jit(two_stage_step(game, tx, tx))
  for i in range(steps):
    state, _ = step(state, tm.real_batch(seed=i))
  return state


@pytest.mark.parametrize('saved_skip', [False, True])
def test_skip_wrapper_restores_either_way(tmp_path, saved_skip):
  """Switching optax.apply_if_finite on or off on resume keeps params and Adam moments."""
  plain, skip = optax.adam(1e-2), optax.apply_if_finite(optax.adam(1e-2), 10)
  saved = _state_with(skip if saved_skip else plain)
  ck = checkpoint.RunCheckpointer(tmp_path)
  ck.save(2, saved, {}, '{}')
  ck.wait()
  target = _state_with(plain if saved_skip else skip, steps=0)
  restored, _, _, step = ck.restore(target)
  ck.close()
  assert step == 2
  chex.assert_trees_all_equal_structs(restored, target)
  chex.assert_trees_all_equal(restored.g.params, saved.g.params)
  inner = (lambda s: s.inner_state) if saved_skip else (lambda s: s)
  outer = (lambda s: s) if saved_skip else (lambda s: s.inner_state)
  chex.assert_trees_all_equal(outer(restored.d.opt_state), inner(saved.d.opt_state))
  if not saved_skip:  # fresh counters
    assert int(restored.d.opt_state.notfinite_count) == 0
    assert bool(restored.d.opt_state.last_finite)


def test_latest_config_and_one_line_mismatch(tmp_path):
  ck = checkpoint.RunCheckpointer(tmp_path, keep=2)
  assert ck.latest_config() is None
  ck.save(1, trained_state(1), {}, '{"a": 1}')
  ck.save(3, trained_state(1), {}, '{"a": 3}')
  ck.close()
  ck = checkpoint.RunCheckpointer(tmp_path, keep=2)
  assert ck.latest_config() == (3, '{"a": 3}')
  with pytest.raises(checkpoint.CheckpointMismatchError) as err:
    ck.restore(trained_state(0, d_module=tm.TinyBND()))
  ck.close()
  assert '\n' not in str(err.value) and 'BatchNorm_0' in str(err.value)
