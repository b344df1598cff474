"""A masked (sparse) optimizer around your own optax chain.

``jaxgan.sparse.random_masks`` draws masks of an exact density per kernel, and
``masked_optimizer`` wraps the user's optax chain (clipping + AdamW, whose weight decay would
move pruned weights) so pruned weights stay exactly 0.0 in a user-written step.

Run: ``python -m experiments.examples.masked_optimizer``
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgan import sparse


class MLP(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(1)(nn.tanh(nn.Dense(32)(nn.tanh(nn.Dense(32)(x)))))[:, 0]


def main(steps: int = 100, density: float = 0.3) -> dict:
  """Trains the sparse MLP; returns the first/last loss and the mask checks."""
  model, x = MLP(), np.random.default_rng(0).standard_normal((256, 4)).astype(np.float32)
  y = np.sin(x @ np.array([1.0, -2.0, 0.5, 1.5], np.float32))
  params = model.init(jax.random.PRNGKey(0), x)['params']
  densities = sparse.uniform_densities(params, density)  # kernels only; biases stay dense
  masks = sparse.random_masks(jax.random.PRNGKey(1), params, densities)
  inner = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-2, weight_decay=1e-2))
  tx = sparse.masked_optimizer(inner, masks)
  opt_state, params = tx.init(params), sparse.apply_masks(params, masks)  # zero once
  loss_fn = lambda p: jnp.mean((model.apply({'params': p}, x) - y) ** 2)

  @jax.jit
  def train_step(params, opt_state):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)  # masked_optimizer needs the params
    return optax.apply_updates(params, updates), opt_state, loss

  losses = []
  for _ in range(steps):
    params, opt_state, loss = train_step(params, opt_state)
    losses.append(float(loss))
  pairs = zip(jax.tree.leaves(masks, is_leaf=lambda m: m is None), jax.tree.leaves(params))
  pairs = [(np.asarray(m), np.asarray(w)) for m, w in pairs if m is not None]
  out = {'first_loss': losses[0], 'final_loss': losses[-1], 'alive': int(sparse.count_alive(masks))}
  out['nonzero'] = sum(int(np.count_nonzero(w)) for _, w in pairs)
  out['max_abs_pruned'] = max(float(np.max(np.abs(w[~m]), initial=0.0)) for m, w in pairs)
  out['pattern_ok'] = all(np.array_equal(w != 0, m) for m, w in pairs)
  return out


if __name__ == '__main__':
  print(main())
