"""Run in a subprocess with 2 forced CPU devices (see test_parallel.py).

Checks that one step gives the single-device result when the batch is sharded
over a 2-device mesh, and when the step runs under jax.pmap with axis_name.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tiny_models as tm

from jaxgan import onestage, parallel
from jaxgan.steps import two_stage_step

assert jax.device_count() == 2, jax.devices()
B = 8
Z = jax.random.normal(jax.random.PRNGKey(3), (B, tm.LATENT_DIM))


def sampler(key, n):
  """The global Z, or under pmap this device's rows of it."""
  try:
    i = jax.lax.axis_index('data')
  except NameError:
    return Z[:n]
  return jax.lax.dynamic_slice_in_dim(Z, i * n, n)


def check(builder, **kw):
  game, g_mod, d_mod = tm.make_game('ns', z=Z)
  game = game.replace(sample_latents=sampler)
  tx = optax.adam(1e-2)
  state = tm.make_state(g_mod, d_mod, g_tx=tx, d_tx=tx)
  batch = tm.real_batch(B)
  single, m_single = jax.jit(builder(game, tx, tx, **kw))(state, batch)

  mesh = parallel.make_mesh()
  dp_step = parallel.jit_data_parallel(builder(game, tx, tx, **kw), mesh, donate=False)
  sharded, _ = dp_step(parallel.replicate(state, mesh), parallel.shard_batch(batch, mesh))
  assert sharded.d.params['Dense_0']['kernel'].sharding.is_fully_replicated

  pstep = jax.pmap(builder(game, tx, tx, axis_name='data', **kw), axis_name='data')
  rep = jax.tree.map(lambda x: jnp.stack([x, x]), state)
  pbatch = jax.tree.map(lambda x: x.reshape(2, B // 2, *x.shape[1:]), batch)
  pm, m_pm = pstep(rep, pbatch)
  pm0 = jax.tree.map(lambda x: x[0], pm)
  for other in (sharded, pm0):
    for a, b in zip(
      jax.tree.leaves((single.g.params, single.d.params)),
      jax.tree.leaves((other.g.params, other.d.params)),
    ):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=2e-6)
  np.testing.assert_allclose(m_single['d_loss'], m_pm['d_loss'][0], rtol=1e-5)


check(two_stage_step)
check(onestage.one_stage_step)
print('PARALLEL_OK')
