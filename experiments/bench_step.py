"""Times one alternating GAN step: jaxgan (fast / stock strided convs) vs PyTorch eager.

For the MNIST DCGAN-28 and the DCGAN-32 (``jaxgan.models.dcgan``; BatchNorm D)
at batch 64: one ``two_stage_step`` (n_dis=1, Adam(2e-4, 0.5), NS loss) with the
library's fast stride-2 convolutions (G's transposed ones and D's, whose input
gradient is a transposed one), the same with XLA's stock ``lax.conv_transpose``
and ``lax.conv_general_dilated``, and, when torch is installed, a hand-written PyTorch
module mirroring the architecture running the same alternating step in eager
mode (D on real and on a fresh no-grad fake, then G on new latents through D
with D's weights frozen). Both frameworks start from the same weights
(converted with ``jaxgan.nn.torch_weights``). Rounds are interleaved after
warm-up; the table gives medians and ratios.

``--breakdown`` also times the pieces (G forward+backward, D forward+backward)
in both frameworks.

Run: ``python -m experiments.bench_step [--rounds 20] [--skip-stock]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgan import losses, models
from jaxgan.game import Game, gaussian_latents, make_apply
from jaxgan.nn import torch_weights
from jaxgan.state import create_state
from jaxgan.steps import two_stage_step

CONFIGS = {  # model -> (image shape, latent dim)
  'dcgan28': ((28, 28, 1), 100),
  'dcgan32': ((32, 32, 3), 128),
}


# ----------------------------------------------------------------------------
# PyTorch mirrors of jaxgan's DCGAN-28/32 (NCHW) and their conversion to flax
# ----------------------------------------------------------------------------


def torch_dcgan(image_size: int, width: int, channels: int, nz: int):
  """PyTorch G and D with the layers of ``jaxgan.models.dcgan`` (BatchNorm D)."""
  import torch
  from torch import nn as tnn

  d = width
  bn = dict(eps=1e-5, momentum=0.1)

  class G(tnn.Module):
    def __init__(self):
      super().__init__()
      if image_size == 32:
        self.base, self.c0 = 4, 8 * d
        ups = [(8 * d, 4 * d), (4 * d, 2 * d), (2 * d, d)]
      else:
        self.base, self.c0 = 7, 4 * d
        ups = [(4 * d, 2 * d)]
      self.project = tnn.Linear(nz, self.base * self.base * self.c0)
      self.project_bn = tnn.BatchNorm2d(self.c0, **bn)
      self.ups = tnn.ModuleList([tnn.ConvTranspose2d(i, o, 4, 2, 1) for i, o in ups])
      self.bns = tnn.ModuleList([tnn.BatchNorm2d(o, **bn) for _, o in ups])
      if image_size == 32:
        self.out = tnn.Conv2d(d, channels, 3, 1, 1)
      else:
        self.out = tnn.ConvTranspose2d(2 * d, channels, 4, 2, 1)

    def forward(self, z):
      h = self.project(z).view(z.shape[0], self.c0, self.base, self.base)
      h = torch.relu(self.project_bn(h))
      for up, b in zip(self.ups, self.bns):
        h = torch.relu(b(up(h)))
      return torch.tanh(self.out(h))

  class D(tnn.Module):
    def __init__(self):
      super().__init__()
      if image_size == 32:
        spec = [(3, 1, channels, d), (4, 2, d, d), (3, 1, d, 2 * d), (4, 2, 2 * d, 2 * d)]
        spec += [(3, 1, 2 * d, 4 * d), (4, 2, 4 * d, 4 * d), (3, 1, 4 * d, 8 * d)]
        self.feat = 4 * 4 * 8 * d
      else:
        spec = [(4, 2, channels, 2 * d), (4, 2, 2 * d, 4 * d)]
        self.feat = 7 * 7 * 4 * d
      self.convs = tnn.ModuleList([tnn.Conv2d(i, o, k, s, 1) for k, s, i, o in spec])
      self.norms = tnn.ModuleList([tnn.BatchNorm2d(o, **bn) for *_, o in spec[1:]])
      self.head = tnn.Linear(self.feat, 1)

    def forward(self, x):
      h = torch.nn.functional.leaky_relu(self.convs[0](x), 0.2)
      for conv, norm in zip(self.convs[1:], self.norms):
        h = torch.nn.functional.leaky_relu(norm(conv(h)), 0.2)
      return self.head(h.reshape(h.shape[0], -1))[:, 0]

  return G(), D()


def flax_variables_from_torch(tg, td, image_size: int):
  """(G variables, D variables) of jaxgan's DCGAN holding the torch mirror's weights."""

  def a(t):
    return t.detach().cpu().numpy()

  def bn(m):
    return torch_weights.batch_norm(a(m.weight), a(m.bias), a(m.running_mean), a(m.running_var))

  gp, gs = {}, {}
  gp['project'] = torch_weights.linear_to_feature_map(
    a(tg.project.weight), a(tg.project.bias), tg.c0, tg.base, tg.base
  )
  gp['project_bn'], gs['project_bn'] = bn(tg.project_bn)
  for i, (up, b) in enumerate(zip(tg.ups, tg.bns)):
    gp[f'up{i + 1}'] = torch_weights.conv_transpose(a(up.weight), a(up.bias))
    gp[f'up{i + 1}_bn'], gs[f'up{i + 1}_bn'] = bn(b)
  if image_size == 32:
    gp['out'] = torch_weights.conv(a(tg.out.weight), a(tg.out.bias))
  else:
    gp['up2'] = torch_weights.conv_transpose(a(tg.out.weight), a(tg.out.bias))

  dp, ds = {}, {}
  for i, conv in enumerate(td.convs):
    dp[f'conv{i + 1}'] = torch_weights.conv(a(conv.weight), a(conv.bias))
  for i, norm in enumerate(td.norms):
    dp[f'conv{i + 2}_norm'], ds[f'conv{i + 2}_norm'] = bn(norm)
  last = td.convs[-1]
  side = 4 if image_size == 32 else 7
  dp['head'] = torch_weights.linear_from_feature_map(
    a(td.head.weight), a(td.head.bias), last.out_channels, side, side
  )
  to_jnp = lambda tree: jax.tree.map(jnp.asarray, tree)
  return (
    to_jnp({'params': gp, 'batch_stats': gs}),
    to_jnp({'params': dp, 'batch_stats': ds}),
  )


def torch_init_normal(module, std=0.02):
  """N(0, 0.02) weights and zero biases, as jaxgan's DCGAN init."""
  import torch

  with torch.no_grad():
    for m in module.modules():
      if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d | torch.nn.Linear):
        m.weight.normal_(0.0, std)
        m.bias.zero_()


def make_torch_step(tg, td, nz: int, batch: int):
  """The alternating NS step of ``two_stage_step`` (n_dis=1) in PyTorch eager."""
  import torch
  import torch.nn.functional as F

  opt_g = torch.optim.Adam(tg.parameters(), lr=2e-4, betas=(0.5, 0.999))
  opt_d = torch.optim.Adam(td.parameters(), lr=2e-4, betas=(0.5, 0.999))

  def step(real):
    td.requires_grad_(True)
    with torch.no_grad():
      fake = tg(torch.randn(batch, nz))
    opt_d.zero_grad(set_to_none=True)
    loss_d = F.softplus(-td(real)).mean() + F.softplus(td(fake)).mean()
    loss_d.backward()
    opt_d.step()
    td.requires_grad_(False)  # G's step needs no D weight gradients (as in jaxgan)
    opt_g.zero_grad(set_to_none=True)
    loss_g = F.softplus(-td(tg(torch.randn(batch, nz)))).mean()
    loss_g.backward()
    opt_g.step()
    return loss_d.item() + loss_g.item()

  return step


# ----------------------------------------------------------------------------
# Benchmark
# ----------------------------------------------------------------------------


def build_jax(model: str, method: str, batch: int, variables=None):
  shape, nz = CONFIGS[model]
  g, d = models.get_models(model, image_shape=shape, g_upsample=method, d_downsample=method)
  game = Game(
    g_apply=make_apply(g),
    d_apply=make_apply(d),
    loss=losses.get_loss('ns'),
    sample_latents=gaussian_latents(nz),
    d_batch_coupled=models.d_is_batch_coupled(d),
  )
  tx = optax.adam(2e-4, b1=0.5)
  state = create_state(
    jax.random.PRNGKey(0),
    g_module=g,
    d_module=d,
    g_tx=tx,
    d_tx=tx,
    latent_dim=nz,
    image_shape=shape,
    use_ema=False,
  )
  if variables is not None:
    gv, dv = variables
    state = state.replace(
      g=state.g.replace(params=gv['params'], model_state={'batch_stats': gv['batch_stats']}),
      d=state.d.replace(params=dv['params'], model_state={'batch_stats': dv['batch_stats']}),
    )
    state = state.replace(
      g=state.g.replace(opt_state=tx.init(state.g.params)),
      d=state.d.replace(opt_state=tx.init(state.d.params)),
    )
  state = jax.tree.map(jnp.copy, state)  # own buffers: the step donates its state
  step = jax.jit(two_stage_step(game, tx, tx), donate_argnums=0)
  return state, step, g, d


class Runner:
  """Holds a state and runs one timed step (the state is donated and replaced)."""

  def __init__(self, state, step, batch):
    self.state, self.step, self.batch = state, step, batch

  def __call__(self):
    self.state, metrics = self.step(self.state, self.batch)
    jax.block_until_ready((self.state, metrics))


def timed(fn):
  t0 = time.perf_counter()
  fn()
  return time.perf_counter() - t0


def breakdown(model: str, batch: int, rounds: int, torch_mirror):
  """Forward+backward of G and D alone, jaxgan (fast) vs torch."""
  shape, nz = CONFIGS[model]
  g, d = models.get_models(model, image_shape=shape)
  z = jax.random.normal(jax.random.PRNGKey(0), (batch, nz))
  x = jax.random.uniform(jax.random.PRNGKey(1), (batch, *shape), minval=-1, maxval=1)
  gv = g.init(jax.random.PRNGKey(2), z, train=False)
  dv = d.init(jax.random.PRNGKey(3), x, train=False)
  gv = {k: v for k, v in gv.items() if k != 'perturbations'}
  dv = {k: v for k, v in dv.items() if k != 'perturbations'}
  g_apply, d_apply = make_apply(g), make_apply(d)

  @jax.jit
  def g_fb(gv, z):
    return jax.grad(lambda p: jnp.sum(g_apply({**gv, 'params': p}, z, train=True)[0] ** 2))(
      gv['params']
    )

  @jax.jit
  def d_fb(dv, x):
    return jax.grad(
      lambda p, x: jnp.sum(d_apply({**dv, 'params': p}, x, train=True)[0]), argnums=(0, 1)
    )(dv['params'], x)

  @jax.jit
  def g_f(gv, z):
    return g_apply(gv, z, train=True)[0]

  pieces = {
    'jax G forward': lambda: jax.block_until_ready(g_f(gv, z)),
    'jax G fwd+bwd': lambda: jax.block_until_ready(g_fb(gv, z)),
    'jax D fwd+bwd (params, input)': lambda: jax.block_until_ready(d_fb(dv, x)),
  }
  if torch_mirror is not None:
    import torch

    tg, td = torch_mirror
    tz = torch.randn(batch, nz)
    tx = torch.rand(batch, shape[2], shape[0], shape[1]) * 2 - 1

    def t_gf():
      with torch.no_grad():
        tg(tz)

    def t_gfb():
      tg.zero_grad(set_to_none=True)
      (tg(tz) ** 2).sum().backward()

    def t_dfb():
      td.requires_grad_(True)
      td.zero_grad(set_to_none=True)
      xi = tx.clone().requires_grad_(True)
      td(xi).sum().backward()

    pieces.update(
      {'torch G forward': t_gf, 'torch G fwd+bwd': t_gfb, 'torch D fwd+bwd (params, input)': t_dfb}
    )
  for f in pieces.values():
    f()
    f()
  times = {k: [] for k in pieces}
  for _ in range(rounds):
    for k, f in pieces.items():
      times[k].append(timed(f))
  print(f'\n{model} pieces, batch {batch} (median ms of {rounds} interleaved runs)')
  for k, ts in times.items():
    print(f'  {k:34s} {1e3 * np.median(ts):9.1f}')


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--models', default='dcgan32,dcgan28')
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--rounds', type=int, default=20)
  parser.add_argument('--warmup', type=int, default=3)
  parser.add_argument(
    '--skip-stock', action='store_true', help="leave out XLA's stock strided convolutions"
  )
  parser.add_argument('--breakdown', action='store_true', help='also time G/D forward+backward')
  args = parser.parse_args()
  try:
    import torch

    torch_info = f'torch {torch.__version__} ({torch.get_num_threads()} threads)'
  except ImportError:
    torch = None
    torch_info = 'torch not installed'
  print(
    f'machine: {platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} '
    f'(backend {jax.default_backend()}), {torch_info}'
  )
  print(
    f'one alternating step (n_dis=1, Adam, NS loss, BatchNorm D), batch {args.batch}, '
    f'median of {args.rounds} interleaved rounds after {args.warmup} warm-up steps'
  )
  rows = []
  for model in args.models.split(','):
    shape, nz = CONFIGS[model]
    image_size = shape[0]
    real_np = np.random.default_rng(0).uniform(-1, 1, (args.batch, *shape)).astype(np.float32)
    variables, mirror = None, None
    if torch is not None:
      torch.manual_seed(0)
      tg, td = torch_dcgan(image_size, models.dcgan.DEFAULT_WIDTH[image_size], shape[2], nz)
      torch_init_normal(tg)
      torch_init_normal(td)
      variables = flax_variables_from_torch(tg, td, image_size)
      mirror = (tg, td)
    runners = {}
    for method in ['fast'] + ([] if args.skip_stock else ['stock']):
      state, step, _, _ = build_jax(model, method, args.batch, variables)
      runners[f'jaxgan ({method} strided convs)'] = Runner(
        state, step, {'image': jnp.asarray(real_np)}
      )
    if mirror is not None:
      real_t = torch.tensor(real_np.transpose(0, 3, 1, 2).copy())
      tstep = make_torch_step(*mirror, nz, args.batch)
      runners['PyTorch eager'] = lambda tstep=tstep, real_t=real_t: tstep(real_t)
    for _ in range(args.warmup):
      for run in runners.values():
        run()
    times = {name: [] for name in runners}
    for _ in range(args.rounds):
      for name, run in runners.items():
        times[name].append(timed(run))
    base = float(np.median(times['jaxgan (fast strided convs)']))
    for name, ts in times.items():
      med = float(np.median(ts))
      rows.append((model, name, 1e3 * med, 1e3 * float(np.quantile(ts, 0.1)), med / base))
    if args.breakdown:
      breakdown(model, args.batch, args.rounds, mirror)
  print('\n| model | variant | median ms | p10 ms | / jaxgan fast |')
  print('|---|---|---|---|---|')
  for model, name, med, p10, ratio in rows:
    print(f'| {model} | {name} | {med:.1f} | {p10:.1f} | {ratio:.2f} |')


if __name__ == '__main__':
  main()
