"""DAT (direct adversarial training) as a D-loss wrapper in your own D update.

``jaxgan.dat.dat_d_loss`` replaces ``loss.d_loss(D(real), D(fake))`` in a
user-written D step: it perturbs reals and fakes against D (frozen statistics,
no gradient through the attack), then evaluates the GAN loss at the perturbed
inputs. ``DATConfig(step_size=B / 64)`` keeps the reference strength at batch
size B. Once D separates real from fake, the perturbed loss is above the clean
one (DAT acts as an adaptive gradient penalty). G here is fixed.

Run: ``python -m experiments.examples.dat_d_loss``
"""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np
import optax

from jaxgan import dat, losses
from jaxgan.game import make_apply


class PointD(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool):
    return nn.Dense(1)(nn.tanh(nn.Dense(32)(x)))[:, 0]


def main(steps: int = 30, batch: int = 64) -> dict[str, float]:
  """Runs ``steps`` DAT D updates; returns the last clean/perturbed D loss and mean logits."""
  d, loss, rng = PointD(), losses.get_loss('ns'), np.random.default_rng(0)
  d_apply, cfg, tx = make_apply(d), dat.DATConfig(step_size=batch / 64), optax.adam(1e-2)
  params = d.init(jax.random.PRNGKey(0), np.zeros((1, 2), np.float32), train=False)['params']
  opt_state, key = tx.init(params), jax.random.PRNGKey(1)  # key: used by random_start only

  @jax.jit
  def d_step(params, opt_state, real, fake, key):
    dat_loss = lambda p: dat.dat_d_loss(d_apply, {'params': p}, real, fake, loss, key, cfg)[0]
    perturbed, grads = jax.value_and_grad(dat_loss)(params)
    logits = lambda x: d_apply({'params': params}, x, train=False)[0]
    q, p = logits(real), logits(fake)
    out = dict(clean=loss.d_loss(q, p), perturbed=perturbed, d_real=q.mean(), d_fake=p.mean())
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, out

  for t in range(steps):
    real = np.clip(0.5 + 0.1 * rng.standard_normal((batch, 2)), -1, 1).astype(np.float32)
    fake = np.tanh(rng.standard_normal((batch, 2))).astype(np.float32)  # a fixed "G"
    params, opt_state, out = d_step(params, opt_state, real, fake, key)
    if t % 10 == 0 or t == steps - 1:
      print(f'step {t:3d}  clean {out["clean"]:.4f}  perturbed {out["perturbed"]:.4f}')
  return {k: float(v) for k, v in out.items()}


if __name__ == '__main__':
  main()
