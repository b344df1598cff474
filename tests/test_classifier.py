"""LeNet-5 classifiers: shapes, parameter counts, input sizes, features vs logits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan.models.classifier import LeNet5, LeNet5Half


def _random_variables(module, x, seed=0):
  # Random params from the init's shapes: jit-compiling Flax's random
  # initialisers costs seconds of CPU, numpy draws cost nothing.
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), x)
  return jax.tree.map(lambda s: (0.3 * rng.standard_normal(s.shape)).astype(np.float32), shapes)


def _param_count(tree):
  return sum(x.size for x in jax.tree.leaves(tree))


@pytest.mark.parametrize(
  'module, expected',
  [
    # conv 5*5*1*6+6, conv 5*5*6*16+16, fc 400*120+120, fc 120*84+84, head 84*10+10
    (LeNet5(), 156 + 2416 + 48120 + 10164 + 850),
    # halved: conv 5*5*1*3+3, 5*5*3*8+8, fc 200*60+60, 60*42+42, head 42*10+10
    (LeNet5Half(), 78 + 608 + 12060 + 2562 + 430),
  ],
)
def test_parameter_counts_match_lenet5_arithmetic(module, expected):
  variables = jax.eval_shape(module.init, jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))
  assert set(variables) == {'params'}
  assert _param_count(variables) == expected


@pytest.mark.parametrize(
  'module, width, size, channels',
  [(LeNet5(), 84, 28, 1), (LeNet5(), 84, 32, 3), (LeNet5Half(), 42, 32, 1)],
)
def test_shapes_and_logits_are_the_head_of_the_features(module, width, size, channels):
  x = jax.random.uniform(jax.random.PRNGKey(1), (3, size, size, channels), minval=-1, maxval=1)
  variables = _random_variables(module, x)
  feats, logits = jax.jit(lambda v, x: module.apply(v, x, method=module.features_and_logits))(
    variables, x
  )
  assert feats.shape == (3, width) and logits.shape == (3, 10)
  assert bool(jnp.all(feats >= 0))  # post-ReLU
  head = variables['params']['head']
  np.testing.assert_allclose(logits, feats @ head['kernel'] + head['bias'], rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(jax.jit(module.apply)(variables, x), logits)


def test_28_pixel_input_is_the_zero_padded_32_pixel_input():
  module = LeNet5()
  x = jax.random.uniform(jax.random.PRNGKey(2), (2, 28, 28, 1), minval=-1, maxval=1)
  variables = _random_variables(module, x)
  padded = jnp.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
  apply = jax.jit(module.apply)
  np.testing.assert_allclose(apply(variables, x), apply(variables, padded), rtol=1e-6)


@pytest.mark.parametrize('shape', [(2, 30, 30, 1), (2, 28, 32, 1), (28, 28, 1)])
def test_rejects_other_sizes(shape):
  with pytest.raises(ValueError, match='28, 28, C'):
    jax.eval_shape(LeNet5().init, jax.random.PRNGKey(0), jnp.zeros(shape))
