"""FLOPs counting against hand counts and the reference's Table 3 totals."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from jaxgan import sparse
from jaxgan.sparse import _distributions, flops


class Tiny(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = False):
    h = nn.Conv(4, (3, 3), strides=(2, 2))(x)  # [B, 4, 4, 4]
    h = nn.BatchNorm(use_running_average=not train)(h)
    h = h + nn.Embed(5, 4)(jnp.zeros(h.shape[:1], jnp.int32))[:, None, None, :]
    h = nn.ConvTranspose(2, (4, 4), strides=(2, 2))(h)  # [B, 8, 8, 2]
    return nn.Dense(3)(h.reshape(h.shape[0], -1))


def tiny_table():
  x = jnp.zeros((2, 8, 8, 3))
  variables = jax.eval_shape(Tiny().init, jax.random.PRNGKey(0), x)
  return flops.count_forward_flops(Tiny(), variables, x, train=False), variables


def test_hand_counted_tiny_net():
  table, _ = tiny_table()
  assert table.weights == {
    'Conv_0/kernel': 3 * 3 * 3 * 4 * 16,  # MACs at the 4x4 output
    'ConvTranspose_0/kernel': 4 * 4 * 4 * 2 * 16,  # per input position (4x4)
    'Dense_0/kernel': 128 * 3,
  }
  # conv bias 4*16, BN scale+bias 2*4*16, transposed-conv bias 2*64, dense bias 3; no embedding.
  assert table.fixed == 64 + 128 + 128 + 3
  assert table.dense == 1728 + 2048 + 384 + 323
  assert table.forward({'Conv_0/kernel': 0.5, 'Dense_0/kernel': 0.25}) == 864 + 2048 + 96 + 323
  with pytest.raises(ValueError, match='does not know'):
    table.forward({'Conv_1/kernel': 0.5})


def test_densities_from_masks_and_iteration_multipliers():
  table, variables = tiny_table()
  masks = {'Conv_0': {'kernel': jnp.zeros((3, 3, 3, 4), bool).at[0].set(True), 'bias': None}}
  masks = {**jax.tree.map(lambda _: None, variables['params']), **masks}
  out = flops.gan_iteration_flops(
    table, table, batch_size=64, n_critic=5, g_batch_size=128, g_masks=masks
  )
  g_inf = 1728 / 3 + 2048 + 384 + 323
  assert out['flops/g_inference'] == pytest.approx(g_inf)
  assert out['flops/d_inference'] == out['flops/d_inference_dense'] == table.dense
  assert out['flops/g_train'] == pytest.approx(g_inf * (64 * 5 + 3 * 128))
  assert out['flops/d_train'] == pytest.approx(table.dense * (3 * 64 * 5 + 128))
  assert out['flops/train_ratio'] == pytest.approx(out['flops/train'] / out['flops/train_dense'])
  assert flops.reference_training_flops(2.0, 3.0, 10, 5) == 2.0 * 10 + 3.0 * 10 * 5


def test_custom_upsampling_layer_counts_like_conv_transpose():
  from jaxgan.nn.upsample import ConvTranspose4x4s2

  x = jnp.zeros((1, 4, 4, 6))
  a = ConvTranspose4x4s2(features=5)
  b = nn.ConvTranspose(5, (4, 4), strides=(2, 2))
  ta = flops.count_forward_flops(a, jax.eval_shape(a.init, jax.random.PRNGKey(0), x), x)
  tb = flops.count_forward_flops(b, jax.eval_shape(b.init, jax.random.PRNGKey(0), x), x)
  assert ta.weights == tb.weights == {'kernel': 4 * 4 * 6 * 5 * 16}


# ----------------------------------------------------------------------------
# The reference's SNGAN (CIFAR-10) and its Table 3
# ----------------------------------------------------------------------------


def up2(x):
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def down2(x):
  return nn.avg_pool(x, (2, 2), (2, 2))


class GenBlock(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.relu(nn.BatchNorm(use_running_average=True, name='b1')(x))
    h = nn.Conv(256, (3, 3), name='c1')(up2(h))
    h = nn.relu(nn.BatchNorm(use_running_average=True, name='b2')(h))
    h = nn.Conv(256, (3, 3), name='c2')(h)
    return h + nn.Conv(256, (1, 1), name='c_sc')(up2(x))


class SNGANG(nn.Module):
  @nn.compact
  def __call__(self, z):
    h = nn.Dense(4 * 4 * 256, name='l1')(z).reshape(-1, 4, 4, 256)
    for i in (2, 3, 4):
      h = GenBlock(name=f'block{i}')(h)
    h = nn.relu(nn.BatchNorm(use_running_average=True, name='b5')(h))
    return jnp.tanh(nn.Conv(3, (3, 3), name='c5')(h))


class SNGAND(nn.Module):
  @nn.compact
  def __call__(self, x):
    c = lambda name, k=3: nn.Conv(128, (k, k), name=name)  # noqa: E731
    h = down2(c('b1_c2')(nn.relu(c('b1_c1')(x)))) + c('b1_sc', 1)(down2(x))
    h = down2(c('b2_c2')(nn.relu(c('b2_c1')(nn.relu(h))))) + down2(c('b2_sc', 1)(h))
    for i in (3, 4):
      h = c(f'b{i}_c2')(nn.relu(c(f'b{i}_c1')(nn.relu(h)))) + h
    h = nn.relu(h).sum(axis=(1, 2))
    return nn.Dense(1, use_bias=False, name='l5')(h)[:, 0]


def sngan_tables():
  z, x = jnp.zeros((1, 128)), jnp.zeros((1, 32, 32, 3))
  g, d = SNGANG(), SNGAND()
  gv = jax.eval_shape(g.init, jax.random.PRNGKey(0), z)
  dv = jax.eval_shape(d.init, jax.random.PRNGKey(0), x)
  return flops.count_forward_flops(g, gv, z), flops.count_forward_flops(d, dv, x), gv, dv


def test_reference_dense_total_cifar10_sngan():
  """Table 3: dense C10 SNGAN training costs 2.67e17 FLOPs (100k iterations,
  D batch 64, G batch 128, n_critic 5, D counted per D step)."""
  g_table, d_table, _, _ = sngan_tables()
  assert g_table.dense == 1_683_553_280  # hand count of the PyTorch model (ddst.md §6 rules)
  assert d_table.dense == 272_498_816
  out = flops.gan_iteration_flops(g_table, d_table, batch_size=64, n_critic=5, g_batch_size=128)
  total = flops.reference_training_flops(
    out['flops/g_train_dense'], out['flops/d_train_dense'], 100_000, 5
  )
  assert total == pytest.approx(2.67e17, rel=2e-3)


@pytest.mark.parametrize(
  'density,expected', [(0.1, 8.97), (0.2, 17.08), (0.3, 26.25), (0.5, 47.25)]
)
def test_reference_static_balance_flops_ratio(density, expected):
  """Table 3, Static-Balance (ERK masks at d for G and D, fixed): % of dense."""
  g_table, d_table, gv, dv = sngan_tables()
  g_dens = _distributions.density_items(sparse.erk_densities(gv['params'], density))
  d_dens = _distributions.density_items(sparse.erk_densities(dv['params'], density))
  g_it = g_table.forward(g_dens) * (64 * 5 + 3 * 128)
  d_it = d_table.forward(d_dens) * (3 * 64 * 5 + 128)
  sparse_total = flops.reference_training_flops(g_it, d_it, 100_000, 5)
  dense_total = flops.reference_training_flops(
    g_table.dense * 704, d_table.dense * 1088, 100_000, 5
  )
  assert 100 * sparse_total / dense_total == pytest.approx(expected, abs=0.1)
