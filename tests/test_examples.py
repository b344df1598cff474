"""Runs every script of the functional API guide (``experiments/examples``) so they cannot rot.

Each example is imported and its ``main`` called in-process with small settings;
the test checks a property the library guarantees for what the example returns.
A new example needs a ``test_<name>`` function here, and every example stays
under ``MAX_LINES`` lines (:func:`test_every_example_is_short_documented_and_tested`).
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import pytest

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / 'experiments' / 'examples'
PACKAGE = 'experiments.examples'
MAX_LINES = 59  # "under 60 lines", docstring included


def example_names() -> list[str]:
  return sorted(p.stem for p in EXAMPLES_DIR.glob('*.py') if p.stem != '__init__')


def run(name: str, **kwargs) -> dict:
  out = importlib.import_module(f'{PACKAGE}.{name}').main(**kwargs)
  assert isinstance(out, dict) and out, f'{name}.main must return a non-empty dict'
  return out


def assert_finite(out: dict) -> None:
  bad = {k: v for k, v in out.items() if not math.isfinite(float(v))}
  assert not bad, f'non-finite values: {bad}'


def test_onestage_own_models():
  out = run('onestage_own_models', steps=3)
  assert_finite(out)
  assert out['step'] == 3
  assert out['d_loss'] > 0.0  # ns: softplus terms
  # 'auto' resolves to the asymmetric rule for ns, gamma = -exp(-p) < 0 and finite everywhere.
  assert out['onestage/gamma_mean'] < 0.0
  assert out['onestage/gamma_dropped'] == 0.0
  exact = run('onestage_own_models', steps=2, mode='exact')  # D's backward taken twice
  assert_finite(exact)
  assert exact['step'] == 2


def test_masked_optimizer():
  density = 0.25
  out = run('masked_optimizer', steps=20, density=density)
  assert_finite(out)
  assert out['max_abs_pruned'] == 0.0  # exactly zero despite AdamW's weight decay
  assert out['pattern_ok']  # nonzero exactly where the mask is alive
  # 'exact' sampling keeps round(d * N) weights in each kernel: 4x32, 32x32, 32x1.
  assert out['alive'] == out['nonzero'] == sum(round(density * n) for n in (128, 1024, 32))
  assert out['final_loss'] < out['first_loss']


def test_dat_d_loss():
  out = run('dat_d_loss', steps=20, batch=32)
  assert_finite(out)
  # Once D separates the data (mean D(real) > mean D(fake)), the reference attack moves
  # fakes up and reals down D's landscape, so both raise the ns D loss.
  assert out['d_real'] > out['d_fake']
  assert out['perturbed'] > out['clean']


def test_langevin_revision():
  out = run('langevin_revision', steps=3, noise_scale=0.0, batch=32)
  assert_finite(out)
  # Noise-free chains are gradient ascent with a small step: the mean f rises.
  assert out['bump_revised'] > out['bump_init']
  assert out['f_revised'] > out['f_init']
  assert out['teach'] >= 0.0


def test_trainstate_onestage():
  out = run('trainstate_onestage', steps=5)
  assert_finite(out)
  assert out['step'] == 5  # TrainState counts the applied updates
  assert out['onestage/gamma_mean'] < 0.0 and out['onestage/gamma_dropped'] == 0.0
  n_lines = len((EXAMPLES_DIR / 'trainstate_onestage.py').read_text().splitlines())
  assert n_lines < 40, f'the TrainState example must stay under 40 lines, has {n_lines}'


def test_nnx_onestage_dat_sparse():
  out = run('nnx_onestage_dat_sparse', steps=30)
  assert_finite(out)
  assert abs(out['g_density'] - 0.3) < 1e-3  # 'exact' ERK sampling keeps round(d * N) weights
  assert out['pruned_zero']  # pruned weights exactly zero in G's EMA
  assert out['onestage/gamma_dropped'] == 0.0


@pytest.mark.slow
def test_nnx_onestage_dat_sparse_learns_the_ring():
  out = run('nnx_onestage_dat_sparse')  # the default few hundred steps
  assert out['modes'] >= 6, out


def test_every_example_is_short_documented_and_tested():
  names = example_names()
  assert names, f'no examples found in {EXAMPLES_DIR}'
  for name in names:
    text = (EXAMPLES_DIR / f'{name}.py').read_text()
    n_lines = len(text.splitlines())
    assert n_lines <= MAX_LINES, f'{name}.py has {n_lines} lines (at most {MAX_LINES})'
    module = importlib.import_module(f'{PACKAGE}.{name}')
    assert f'python -m {PACKAGE}.{name}' in (module.__doc__ or ''), f'{name}: no run line'
    assert callable(getattr(module, 'main', None)), f'{name}.py has no main()'
    assert "if __name__ == '__main__':" in text, f'{name}.py is not runnable as a script'
  missing = [name for name in names if not callable(globals().get(f'test_{name}'))]
  assert not missing, f'examples without a test_<name> in {Path(__file__).name}: {missing}'
  assert (EXAMPLES_DIR / '__init__.py').exists(), 'python -m needs experiments/examples/__init__.py'
