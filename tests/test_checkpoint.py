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


def test_corrupt_latest_falls_back_to_previous(tmp_path, caplog):
  s1, s2 = trained_state(1), trained_state(2)
  ck = checkpoint.RunCheckpointer(tmp_path, keep=3)
  ck.save(1, s1, {'i': 1}, '{}')
  ck.save(2, s2, {'i': 2}, '{}')
  ck.close()
  # Truncate every array file of the latest checkpoint, as a crash mid-write on a
  # non-atomic filesystem would.
  for f in (tmp_path / 'checkpoints' / '2' / 'state').rglob('*'):
    if f.is_file():
      f.write_bytes(b'')
  ck = checkpoint.RunCheckpointer(tmp_path, keep=3)
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
