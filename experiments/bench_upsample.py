"""Times formulations of the k4 s2 p1 transposed convolution (and its adjoint) on this CPU.

Each variant computes the same map as PyTorch's ``ConvTranspose2d(k=4, s=2, p=1)``
(output ``2H x 2W``) with the kernel stored as flax's ``nn.ConvTranspose`` stores
it (``[4, 4, in, out]``, padding ``((2, 2), (2, 2))``), and is timed on forward +
gradients w.r.t. input and kernel. Variants run interleaved; the table gives the
median of the rounds after warm-up and the ratio to the library's layer. A second
table times the discriminator's ``Conv2d(k=4, s=2, p=1)`` as XLA computes it against
:func:`jaxgan.nn.conv_4x4s2` (whose input gradient is the fast transposed conv).

Run: ``python -m experiments.bench_upsample [--rounds 20]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxgan.nn import downsample, upsample

_DN = ('NHWC', 'HWIO', 'NHWC')


def stock(x, k):
  return jax.lax.conv_transpose(x, k, (2, 2), ((2, 2), (2, 2)), dimension_numbers=_DN)


def subpixel3x3(x, k):
  """One 3x3 conv to 4*out channels (zero taps included) + depth-to-space."""
  b, h, w, _ = x.shape
  cin, cout = k.shape[2], k.shape[3]
  # Phase a of a dim uses input offsets {-1, 0} (a=0, taps 0, 2) or {0, +1}
  # (a=1, taps 1, 3): place them in a 3-tap window over offsets -1, 0, +1.
  k3 = jnp.zeros((3, 3, cin, 2, 2, cout), k.dtype)
  for a in range(2):
    for bb in range(2):
      for wh in range(2):
        for ww in range(2):
          k3 = k3.at[wh + a, ww + bb, :, a, bb, :].set(k[2 * wh + a, 2 * ww + bb])
  k3 = k3.reshape(3, 3, cin, 4 * cout)
  z = jax.lax.conv_general_dilated(x, k3, (1, 1), ((1, 1), (1, 1)), dimension_numbers=_DN)
  z = z.reshape(b, h, w, 2, 2, cout).transpose(0, 1, 3, 2, 4, 5)
  return z.reshape(b, 2 * h, 2 * w, cout)


def phase4(x, k):
  """Four 2x2 convs, one per output phase, then interleave (exact FLOPs)."""
  b, h, w, _ = x.shape
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  rows = []
  for a in range(2):
    cols = []
    for bb in range(2):
      ka = k[a::2, bb::2]
      cols.append(
        jax.lax.conv_general_dilated(
          xp[:, a : a + h + 1, bb : bb + w + 1], ka, (1, 1), 'VALID', dimension_numbers=_DN
        )
      )
    rows.append(jnp.stack(cols, axis=3))
  y = jnp.stack(rows, axis=2)  # [B, H, 2, W, 2, C]
  return y.reshape(b, 2 * h, 2 * w, -1)


def phase_merged(x, k):
  """One 2x2 conv to 4*out channels on the padded input, phases sliced out."""
  b, h, w, cin = x.shape
  cout = k.shape[-1]
  k2 = k.reshape(2, 2, 2, 2, cin, cout).transpose(0, 2, 4, 1, 3, 5).reshape(2, 2, cin, 4 * cout)
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  z = jax.lax.conv_general_dilated(xp, k2, (1, 1), 'VALID', dimension_numbers=_DN)
  z = z.reshape(b, h + 1, w + 1, 2, 2, cout)
  rows = [jnp.stack([z[:, a : a + h, c : c + w, a, c] for c in range(2)], axis=3) for a in range(2)]
  return jnp.stack(rows, axis=2).reshape(b, 2 * h, 2 * w, cout)


@jax.custom_vjp
def adjoint(x, k):
  return stock(x, k)


def _adjoint_fwd(x, k):
  return stock(x, k), (x, k)


def _adjoint_bwd(res, g):
  x, k = res
  # y = A(k) x is the input-gradient of the strided conv c(u) = conv(u, k~, stride 2)
  # with k~ the flipped kernel with in/out swapped, so dx = c(g).
  kf = k[::-1, ::-1].transpose(0, 1, 3, 2)
  dx = jax.lax.conv_general_dilated(g, kf, (2, 2), ((1, 1), (1, 1)), dimension_numbers=_DN)
  # dk~[t, i, o] = sum g[2m - 1 + t] x[m]: the kernel gradient of c with g as input and x
  # as cotangent, computed by XLA through vjp of the strided conv.
  _, vjp = jax.vjp(
    lambda kk: jax.lax.conv_general_dilated(g, kk, (2, 2), ((1, 1), (1, 1)), dimension_numbers=_DN),
    kf,
  )
  (dkf,) = vjp(x)
  return dx, dkf.transpose(0, 1, 3, 2)[::-1, ::-1]


adjoint.defvjp(_adjoint_fwd, _adjoint_bwd)


VARIANTS = {
  'stock lax.conv_transpose': stock,
  'sub-pixel 3x3 + depth-to-space': subpixel3x3,
  'four 2x2 phase convs': phase4,
  'one 2x2 conv, phases sliced': phase_merged,
  'adjoint custom_vjp (DESIGN.md)': adjoint,
  'jaxgan.nn.conv_transpose_4x4s2': upsample.conv_transpose_4x4s2,
}
OURS = 'jaxgan.nn.conv_transpose_4x4s2'


def make_timed(fn):
  def loss(x, k, r):
    return jnp.sum(fn(x, k) * r)

  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def make_torch(x, k, r):
  """PyTorch eager forward + backward of the same layer, or None without torch."""
  try:
    import torch
  except ImportError:
    return None
  xt = torch.tensor(np.asarray(x).transpose(0, 3, 1, 2).copy(), requires_grad=True)
  # flax [4, 4, in, out] (flipped) -> torch [in, out, 4, 4]
  wt = torch.tensor(np.asarray(k)[::-1, ::-1].transpose(2, 3, 0, 1).copy(), requires_grad=True)
  rt = torch.tensor(np.asarray(r).transpose(0, 3, 1, 2).copy())

  def run():
    xt.grad = None
    wt.grad = None
    y = torch.nn.functional.conv_transpose2d(xt, wt, stride=2, padding=1)
    (y * rt).sum().backward()
    return xt.grad, wt.grad

  return run


def check_and_time(fns, ref_fn, args, rounds, torch_name, torch_fn):
  """Compiles and checks every variant against ``ref_fn``, then times them interleaved."""
  ref = jax.block_until_ready(ref_fn(*args))
  errs = {}
  for name, f in list(fns.items()):  # compile, warm up, check agreement with the reference
    out = jax.block_until_ready(f(*args))
    jax.block_until_ready(f(*args))
    errs[name] = max(
      float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(b)) + 1e-30))
      for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(ref))
    )
  if torch_fn is not None:
    torch_fn()
    fns[torch_name] = lambda *_: torch_fn()
    errs[torch_name] = float('nan')
  times = {name: [] for name in fns}
  for _ in range(rounds):
    for name, f in fns.items():
      t0 = time.perf_counter()
      jax.block_until_ready(f(*args))
      times[name].append(time.perf_counter() - t0)
  return times, errs


def print_table(title, times, errs, ours_name):
  print(f'\n{title}, {len(next(iter(times.values())))} interleaved rounds after warm-up')
  print(
    f'{"formulation":34s} {"median ms":>10s} {"p10 ms":>8s} {"/ jaxgan":>9s} {"max rel err":>12s}'
  )
  ours = float(np.median(times[ours_name]))
  for name, ts in times.items():
    med = float(np.median(ts))
    print(
      f'{name:34s} {1e3 * med:10.1f} {1e3 * np.quantile(ts, 0.1):8.1f} {med / ours:9.2f} '
      f'{errs[name]:12.1e}'
    )


def bench_shape(batch, size, cin, cout, rounds, skip_stock):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(batch, size, size, cin)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(4, 4, cin, cout)) * 0.02, jnp.float32)
  r = jnp.asarray(rng.normal(size=(batch, 2 * size, 2 * size, cout)), jnp.float32)
  variants = dict(VARIANTS)
  if skip_stock:
    variants.pop('stock lax.conv_transpose')
  fns = {name: make_timed(fn) for name, fn in variants.items()}
  ref_fn = make_timed(upsample.conv_transpose_4x4s2_reference)
  torch_fn = make_torch(x, k, r)
  times, errs = check_and_time(
    fns, ref_fn, (x, k, r), rounds, 'PyTorch eager conv_transpose2d', torch_fn
  )
  title = (
    f'batch {batch}, {cin}->{cout}, {size}x{size} -> {2 * size}x{2 * size}, forward + dx + dkernel'
  )
  print_table(title, times, errs, OURS)


def make_torch_conv(x, k, r):
  """PyTorch eager ``Conv2d(k=4, s=2, p=1)`` forward + backward, or None without torch."""
  try:
    import torch
  except ImportError:
    return None
  xt = torch.tensor(np.asarray(x).transpose(0, 3, 1, 2).copy(), requires_grad=True)
  wt = torch.tensor(np.asarray(k).transpose(3, 2, 0, 1).copy(), requires_grad=True)
  rt = torch.tensor(np.asarray(r).transpose(0, 3, 1, 2).copy())

  def run():
    xt.grad = None
    wt.grad = None
    (torch.nn.functional.conv2d(xt, wt, stride=2, padding=1) * rt).sum().backward()
    return xt.grad, wt.grad

  return run


def bench_strided(batch, size, cin, cout, rounds):
  """The discriminator's ``Conv2d(k=4, s=2, p=1)``: XLA's against :func:`conv_4x4s2`."""
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(batch, size, size, cin)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(4, 4, cin, cout)) * 0.02, jnp.float32)
  r = jnp.asarray(rng.normal(size=(batch, size // 2, size // 2, cout)), jnp.float32)
  ours = 'jaxgan.nn.conv_4x4s2'
  fns = {'XLA conv_general_dilated': make_timed(downsample.conv_4x4s2_reference)}
  fns[ours] = make_timed(downsample.conv_4x4s2)
  times, errs = check_and_time(
    fns,
    fns['XLA conv_general_dilated'],
    (x, k, r),
    rounds,
    'PyTorch eager conv2d',
    make_torch_conv(x, k, r),
  )
  title = f'batch {batch}, {cin}->{cout}, stride-2 conv {size}x{size} -> {size // 2}x{size // 2}, forward + dx + dkernel'
  print_table(title, times, errs, ours)


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument(
    '--shape',
    action='append',
    help='BATCH,SIZE,CIN,COUT (repeatable); default: the DESIGN.md layer 64,8,256,128',
  )
  parser.add_argument('--rounds', type=int, default=20)
  parser.add_argument(
    '--strided-shape',
    action='append',
    help="BATCH,SIZE,CIN,COUT of D's stride-2 conv (repeatable); default: DCGAN-32's 64,32,64,64",
  )
  parser.add_argument('--skip-stock', action='store_true', help='leave out lax.conv_transpose')
  args = parser.parse_args()
  shapes = args.shape or ['64,8,256,128']
  print(
    f'machine: {platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__}, '
    f'backend {jax.default_backend()}'
  )
  for shape in shapes:
    batch, size, cin, cout = (int(v) for v in shape.split(','))
    bench_shape(batch, size, cin, cout, args.rounds, args.skip_stock)
  for shape in args.strided_shape or ['64,32,64,64']:
    batch, size, cin, cout = (int(v) for v in shape.split(','))
    bench_strided(batch, size, cin, cout, args.rounds)


if __name__ == '__main__':
  main()
