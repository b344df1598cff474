"""Direct adversarial training of the discriminator (DAT, Li et al., arXiv 2008.09041).

DAT trains D on adversarially perturbed real and fake images. G's step is not
changed. The defaults reproduce ``advtrain_step`` of the official code
(``iceli1007/DAT-GAN``, a torch_mimicry fork):

1. Clean logits ``o_r = D(x)`` and ``o_f = D(x_hat)`` give two constant targets
   ``m_r = mean o_r`` and ``m_f = mean o_f``.
2. Fakes: ``g_f = grad_u |mean_i D(u_i) - m_r|`` at ``u = x_hat``, then
   ``x_hat' = clip(x_hat - clip(g_f, -t, t), -1, 1)``.
3. Reals: ``g_r = grad_u |mean_i D(u_i) - m_f|`` at ``u = x``, then
   ``x' = x - clip(g_r, -t, t)``. The reference base discriminator (SNGAN,
   DCGAN, WGAN) clamps ``x'`` only after D has read it, so reals are
   effectively not clamped (``clamp_real=False``, the default); its SSGAN and
   InfoMax-GAN variants do clamp them (``clamp_real=True``).
4. D's loss is its usual GAN loss on ``(x', x_hat')`` only: no clean term, no
   weight. The attack is not differentiated (no second-order terms).

The step is the raw gradient clipped elementwise at ``t = 1``, not a sign
(FGSM) step. Because the objective is a batch mean, each sample moves by
``-/+ grad_x D(x_i) / B``. The clip is therefore rarely active, and DAT's
strength scales like ``1/B``: set ``step_size = B / 64`` to keep the reference
strength (B = 64) at another batch size. In the usual regime ``m_r > m_f``,
fakes move up D's landscape and reals move down, so both moves increase D's
loss. When ``m_r == m_f`` exactly, the gradient of ``|.|`` is 0 and nothing
moves. To first order, with ``L_D = mean f_r(D(x)) + mean f(D(x_hat))``,

    L_D^DAT ~ L_D + (step_size / B^2) sum_i [ |f_r'(D(x_i))| ||grad D(x_i)||^2
                                             + f'(D(x_hat_i)) ||grad D(x_hat_i)||^2 ]

This is a gradient penalty weighted by the loss slope (zero outside the
hinge margin), the "adaptive Lipschitz penalty" of the paper.

The generalized attack (:class:`DATConfig`, :func:`pgd_perturbation`) adds
``steps`` iterations, a ``'sign'`` or ``'l2'``-normalized step, an
``epsilon``-ball in L-inf or L2 (optionally with a random start), a
per-sample objective ``sum_i |D(u_i) - m|`` (each sample moves by its own
gradient, B times the reference step, towards the target from either side),
and, in :func:`dat_d_loss`, a convex mix with the clean loss.

Statistics and cost. Every attack forward sees D with its current params
under ``stop_gradient``, with batch statistics used but not stored
(BatchNorm in train mode, spectral-norm power iteration not saved). Only the
final D-loss forwards store statistics, once per D step as without DAT. The
reference code ran power iteration in every forward, six per D step instead
of two. The first attack step reuses the clean forward (its VJP gives the
input gradient), so a D step costs four D forwards and two input backwards
(one forward and one input backward more per extra PGD step and class),
against six forwards in the reference. With a batch-coupled D (BatchNorm in
train mode), the batch-mean attack sees the whole batch, as in the reference.

Two ways to use it:

* ``Game(..., d_perturbation=make_dat_perturbation())``. The step builders
  evaluate D's loss at ``x + stop_gradient(x_adv - x)``, in the two-stage and
  the one-stage step alike.
* :func:`dat_d_loss` in a user's own train step: the complete D loss (attack
  with frozen statistics, then the final forwards).

Both call :func:`pgd_perturbation`.

Class-conditional D. D scores each image with its class, so the real and the
fake batch need their own logits function: the steps then pass
``d_logits_fn`` as a pair ``(real_logits_fn, fake_logits_fn)``, each closing
over its batch's labels, and :func:`dat_d_loss` takes ``real_label`` and
``fake_label``. The attack is otherwise unchanged.

One-stage training. The one-stage step (:mod:`jaxgan.onestage`) evaluates D's
loss at the perturbed inputs, ``G(z) + delta`` with ``delta`` a constant, so
DAT acts on D's gradient only. G's cotangent is taken at the clean (augmented)
fakes by one more D forward and input backward: G gets exactly the gradient of
its clean loss ``mean_i g(D(G(z)_i))`` through the D of this iteration, as in
two-stage DAT, where G's step is unchanged. The attack does not depend on G,
so no gradient of ``delta`` reaches G either way. Reading G's gradient at the
perturbed fakes instead (what :func:`dat_d_loss` with ``detach_fake=False``
gives) would make G minimize ``mean_i g(D(G(z)_i + delta_i))``, a look-ahead
objective: ``delta_i = clip(grad D(x_hat_i) / B)`` points where G wants to go,
so that gradient is read one step of size ``~||grad D|| / B`` ahead. Its gap
to the clean gradient is of order
``||grad D|| / B * (||Hessian_x D|| + |g''| ||grad D||^2)``: exactly 0 for a D
linear in x with a G loss linear in p (hinge, WGAN), not negligible when
``||grad D||`` is large, which is when DAT acts.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxgan.game import ApplyFn, DPerturbation
from jaxgan.losses import GANLoss

Array = jax.Array
LogitsFn = Callable[[Array], Array]
# One logits function for both batches, or (for reals, for fakes) in a conditional game.
LogitsFns = LogitsFn | tuple[LogitsFn, LogitsFn]

STEP_RULES = ('raw', 'sign', 'l2')
NORMS = ('linf', 'l2')
REDUCTIONS = ('batch_mean', 'per_sample')


@dataclasses.dataclass(frozen=True)
class DATConfig:
  """The attack of DAT; the defaults are the official code's.

  Attributes:
    steps: attack iterations (reference: 1).
    step_size: multiplies the gradient before the step rule (reference: 1).
      With ``'raw'`` the step is ``clip(step_size * g, -clip, clip)``; with
      ``'sign'`` it is ``step_size * sign(g)``; with ``'l2'`` it is
      ``step_size * g / ||g||_2`` per sample. ``B / 64`` restores the
      reference strength at batch size ``B``.
    clip: elementwise bound ``t`` of a ``'raw'`` step (reference: 1);
      ``None`` for no bound. Ignored by the other rules.
    step_rule: ``'raw'`` (reference), ``'sign'`` (FGSM/PGD-L-inf) or ``'l2'``
      (normalized gradient, PGD-L2).
    epsilon: radius of the ball around the clean input that the perturbation
      is projected onto after each step; ``None`` (reference) for no ball.
    norm: ``'linf'`` or ``'l2'`` (per sample), the ball's norm.
    random_start: start from a uniform point of the ball (needs
      ``epsilon``; uses the key).
    reduction: ``'batch_mean'`` (reference: ``|mean_i D(u_i) - m|``) or
      ``'per_sample'`` (``sum_i |D(u_i) - m|``).
    clamp_fake: clamp perturbed fakes to ``value_range`` after each step
      (reference: True).
    clamp_real: clamp perturbed reals too (reference base D: False;
      SSGAN/InfoMax-GAN variants: True).
    value_range: ``(low, high)`` of the data (images: ``(-1, 1)``).
  """

  steps: int = 1
  step_size: float = 1.0
  clip: float | None = 1.0
  step_rule: str = 'raw'
  epsilon: float | None = None
  norm: str = 'linf'
  random_start: bool = False
  reduction: str = 'batch_mean'
  clamp_fake: bool = True
  clamp_real: bool = False
  value_range: tuple[float, float] = (-1.0, 1.0)

  def __post_init__(self):
    if (
      isinstance(self.steps, bool) or not isinstance(self.steps, numbers.Integral) or self.steps < 1
    ):
      raise ValueError(f'DAT steps must be a positive int, got {self.steps!r} (reference: 1).')
    if not _positive(self.step_size):
      raise ValueError(
        f'DAT step_size must be a positive finite number, got {self.step_size!r} '
        '(reference: 1.0; B / 64 keeps the reference strength at batch size B).'
      )
    if self.clip is not None and not _positive(self.clip):
      raise ValueError(f'DAT clip must be positive or None, got {self.clip!r} (reference: 1.0).')
    if self.step_rule not in STEP_RULES:
      raise ValueError(f'unknown DAT step_rule {self.step_rule!r}; choose one of {STEP_RULES}.')
    if self.norm not in NORMS:
      raise ValueError(f'unknown DAT norm {self.norm!r}; choose one of {NORMS}.')
    if self.epsilon is not None and not _positive(self.epsilon):
      raise ValueError(
        f'DAT epsilon must be positive or None, got {self.epsilon!r} (e.g. 8/255 * 2 for '
        "images in [-1, 1] with norm='linf')."
      )
    if self.random_start and self.epsilon is None:
      raise ValueError(
        'DAT random_start=True needs a ball to start in; set epsilon (e.g. epsilon=0.03).'
      )
    if self.reduction not in REDUCTIONS:
      raise ValueError(f'unknown DAT reduction {self.reduction!r}; choose one of {REDUCTIONS}.')
    low, high = self.value_range
    if not low < high:
      raise ValueError(
        f'DAT value_range must be (low, high) with low < high, got {self.value_range!r}.'
      )


def _positive(v) -> bool:
  return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def _per_sample_norm(x: Array) -> Array:
  """``||x_i||_2`` broadcastable against ``x``: shape ``[B, 1, ..., 1]``."""
  axes = tuple(range(1, x.ndim))
  return jnp.sqrt(jnp.sum(jnp.square(x), axis=axes, keepdims=True))


def _step(g: Array, cfg: DATConfig) -> Array:
  """The displacement subtracted from ``u`` for objective gradient ``g``."""
  if cfg.step_rule == 'raw':
    step = cfg.step_size * g
    return step if cfg.clip is None else jnp.clip(step, -cfg.clip, cfg.clip)
  if cfg.step_rule == 'sign':
    return cfg.step_size * jnp.sign(g)
  norm = _per_sample_norm(g)
  return jnp.where(norm > 0, cfg.step_size * g / jnp.where(norm > 0, norm, 1.0), 0.0)


def _project(delta: Array, cfg: DATConfig) -> Array:
  """``delta`` projected onto the ``epsilon``-ball (identity without one)."""
  if cfg.epsilon is None:
    return delta
  if cfg.norm == 'linf':
    return jnp.clip(delta, -cfg.epsilon, cfg.epsilon)
  norm = _per_sample_norm(delta)
  scale = jnp.where(norm > cfg.epsilon, cfg.epsilon / jnp.where(norm > 0, norm, 1.0), 1.0)
  return delta * scale


def _random_start(key: Array, x: Array, cfg: DATConfig) -> Array:
  """A uniform draw from the ``epsilon``-ball, shape of ``x``."""
  if cfg.norm == 'linf':
    return jax.random.uniform(key, x.shape, x.dtype, -cfg.epsilon, cfg.epsilon)
  k_dir, k_rad = jax.random.split(key)
  direction = jax.random.normal(k_dir, x.shape, x.dtype)
  direction = direction / jnp.maximum(_per_sample_norm(direction), jnp.finfo(x.dtype).tiny)
  dim = math.prod(x.shape[1:])
  radius = jax.random.uniform(k_rad, (x.shape[0],) + (1,) * (x.ndim - 1), x.dtype)
  return direction * cfg.epsilon * radius ** (1.0 / dim)


def _objective_grad(out: Array, vjp: Callable, target: Array, cfg: DATConfig) -> Array:
  """Gradient of the attack objective from D's outputs ``out`` and their VJP.

  ``batch_mean``: ``grad |mean_i D(u_i) - m| = sign(mean D(u) - m) / B * grad
  sum_i D(u_i)``. ``per_sample``: ``grad sum_i |D(u_i) - m|``. ``sign(0) =
  0``, as ``abs'(0)`` in torch and JAX, so equal means give no step.
  """
  if cfg.reduction == 'batch_mean':
    ct = jnp.full_like(out, 1.0 / out.shape[0]) * jnp.sign(jnp.mean(out) - target)
  else:
    ct = jnp.sign(out - target)
  return vjp(ct)[0]


def _attack(
  d_logits_fn: LogitsFn,
  x: Array,
  first: tuple[Array, Callable],
  target: Array,
  clamp: bool,
  key: Array | None,
  cfg: DATConfig,
) -> Array:
  """Moves ``x`` so that D's output approaches ``target`` (a constant scalar).

  ``first`` is ``(D(x), vjp)`` from the clean forward, reused for the first
  step (without a random start), so the attack costs no extra forward.
  """
  low, high = cfg.value_range

  def finish(u):
    u = x + _project(u - x, cfg)
    return jnp.clip(u, low, high) if clamp else u

  def body(_, u):
    out, vjp = jax.vjp(d_logits_fn, u)
    return finish(u - _step(_objective_grad(out, vjp, target, cfg), cfg))

  if cfg.random_start:
    return jax.lax.fori_loop(0, cfg.steps, body, finish(x + _random_start(key, x, cfg)))
  u = finish(x - _step(_objective_grad(*first, target, cfg), cfg))
  if cfg.steps > 1:
    u = jax.lax.fori_loop(1, cfg.steps, body, u)
  return u


def _check_batch(x: Array, name: str) -> None:
  if x.ndim < 1 or not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(
      f'DAT: {name} must be a float batch [B, ...] (images [B, H, W, C] in [-1, 1]), got '
      f'shape {tuple(x.shape)} and dtype {x.dtype}.'
    )


def _clean_forward(d_logits_fn: LogitsFn, x: Array, name: str) -> tuple[Array, Callable]:
  """``(D(x), vjp)``, with a clear error if D's output is not ``[B]``."""
  out, vjp = jax.vjp(d_logits_fn, x)
  if out.shape != (x.shape[0],):
    raise ValueError(
      f'DAT: D must return logits of shape [B] = ({x.shape[0]},) for the {name} batch, got '
      f'{tuple(out.shape)}; squeeze the last axis of the logits (out[:, 0]).'
    )
  return out, vjp


def _split_logits_fns(d_logits_fn: LogitsFns) -> tuple[LogitsFn, LogitsFn]:
  if isinstance(d_logits_fn, tuple | list):
    if len(d_logits_fn) != 2 or not all(callable(f) for f in d_logits_fn):
      raise ValueError(
        'DAT: d_logits_fn must be a function x -> logits [B] or a pair (real_logits_fn, '
        f'fake_logits_fn) of such functions, got a sequence of {len(d_logits_fn)} items.'
      )
    return d_logits_fn[0], d_logits_fn[1]
  return d_logits_fn, d_logits_fn


def pgd_perturbation(
  d_logits_fn: LogitsFns,
  real: Array,
  fake: Array,
  config: DATConfig | None = None,
  key: Array | None = None,
) -> tuple[Array, Array]:
  """DAT's attack on a real and a fake batch (the reference with default config).

  Reals aim at the clean mean logit of the fakes and fakes at that of the
  reals. Both targets are computed once from the clean inputs and held
  fixed over the ``steps`` iterations.

  Args:
    d_logits_fn: ``x [B, ...] -> logits [B]``, D with frozen statistics, or
      a pair ``(for_real, for_fake)`` of such functions (conditional D: each
      closes over its batch's labels).
    real: real batch ``[B, H, W, C]`` in ``config.value_range``.
    fake: fake batch ``[B', H, W, C]`` (any ``B'``).
    config: the attack; ``None`` is :class:`DATConfig` ``()``, the reference.
    key: PRNG key, used only by ``random_start``.

  Returns:
    ``(real_adv, fake_adv)``, shaped like the inputs, under ``stop_gradient``:
    no gradient flows through the attack to D's params or to the inputs.
  """
  cfg = DATConfig() if config is None else config
  if not isinstance(cfg, DATConfig):
    raise TypeError(f'DAT config must be a DATConfig, got {type(cfg).__name__}.')
  _check_batch(real, 'real')
  _check_batch(fake, 'fake')
  if cfg.random_start and key is None:
    raise ValueError('DAT random_start=True needs a PRNG key: pass key=jax.random.PRNGKey(...).')
  real_fn, fake_fn = _split_logits_fns(d_logits_fn)
  real = jax.lax.stop_gradient(real)
  fake = jax.lax.stop_gradient(fake)
  first_r = _clean_forward(real_fn, real, 'real')
  first_f = _clean_forward(fake_fn, fake, 'fake')
  m_r = jnp.mean(first_r[0])
  m_f = jnp.mean(first_f[0])
  k_real = k_fake = None
  if cfg.random_start:
    k_real, k_fake = jax.random.split(key)
  fake_adv = _attack(fake_fn, fake, first_f, m_r, cfg.clamp_fake, k_fake, cfg)
  real_adv = _attack(real_fn, real, first_r, m_f, cfg.clamp_real, k_real, cfg)
  return jax.lax.stop_gradient(real_adv), jax.lax.stop_gradient(fake_adv)


def reference_perturbation(
  d_logits_fn: LogitsFns,
  real: Array,
  fake: Array,
  *,
  t: float = 1.0,
  clamp_real: bool = False,
) -> tuple[Array, Array]:
  """The official ``advtrain_step`` attack: one raw step clipped at ``t``.

  ``fake' = clip(fake - clip(grad |mean D(fake) - m_r|, -t, t), -1, 1)`` and
  ``real' = real - clip(grad |mean D(real) - m_f|, -t, t)`` (clamped to
  [-1, 1] too if ``clamp_real``). Shapes and gradients as in
  :func:`pgd_perturbation`.
  """
  return pgd_perturbation(d_logits_fn, real, fake, DATConfig(clip=t, clamp_real=clamp_real))


def _as_config(config: DATConfig | None, kwargs: dict) -> DATConfig:
  if config is not None and kwargs:
    raise ValueError(
      f'pass either a DATConfig or keyword options, not both (got {sorted(kwargs)}).'
    )
  if config is None:
    return DATConfig(**kwargs)
  if not isinstance(config, DATConfig):
    raise TypeError(f'DAT config must be a DATConfig, got {type(config).__name__}.')
  return config


def make_dat_perturbation(config: DATConfig | None = None, **kwargs) -> DPerturbation:
  """DAT as the ``Game.d_perturbation`` hook.

  Args:
    config: a :class:`DATConfig`, or ``None`` to build one from ``kwargs``
      (the fields of :class:`DATConfig`; no arguments gives the reference).
    **kwargs: :class:`DATConfig` fields.

  Returns:
    ``(d_logits_fn, real, fake, key) -> (real_adv, fake_adv)``.
  """
  cfg = _as_config(config, kwargs)

  def perturb(d_logits_fn, real, fake, key):
    return pgd_perturbation(d_logits_fn, real, fake, cfg, key)

  return perturb


def _frozen_logits(d_apply: ApplyFn, d_variables: dict, label: Array | None = None) -> LogitsFn:
  """D with stop-gradient variables, batch statistics used but not stored."""
  frozen = jax.lax.stop_gradient(d_variables)
  kw = {} if label is None else {'label': label}

  def logits(x):
    out, _ = d_apply(frozen, x, train=True, **kw)
    return out

  return logits


def dat_d_loss(
  d_apply: ApplyFn,
  d_variables: dict,
  real: Array,
  fake: Array,
  loss: GANLoss,
  key: Array,
  config: DATConfig | None = None,
  *,
  mix: float = 0.0,
  detach_fake: bool = True,
  real_label: Array | None = None,
  fake_label: Array | None = None,
) -> tuple[Array, dict]:
  """D's GAN loss under DAT: the attack, then the final D forwards.

  ``L = (1 - mix) * loss.d_loss(D(real'), D(fake')) + mix * loss.d_loss(D(real),
  D(fake))``. The reference is ``mix = 0``. The attack runs with frozen
  statistics. The adversarial forwards (real, then fake, statistics
  threaded) alone update the model state. The clean forwards of ``mix > 0``
  use batch statistics without storing them. Auxiliary losses (SSGAN
  rotation, InfoMax) belong on the clean reals; add them outside.

  Args:
    d_apply: D in the apply convention of :mod:`jaxgan.game`.
    d_variables: ``{'params': ..., **model_state}``; differentiate with
      respect to ``d_variables['params']``.
    real: real batch ``[B, H, W, C]``.
    fake: fake batch ``[B, H, W, C]``.
    loss: the GAN loss.
    key: PRNG key (used by ``config.random_start``).
    config: the attack (``None``: the reference).
    mix: weight of the clean loss, in ``[0, 1]``.
    detach_fake: stop the gradient at ``fake`` (the reference). With
      ``False``, the gradient with respect to ``fake`` is D's loss gradient
      at the perturbed fakes, with the perturbation held constant: the
      look-ahead form of the module docstring, not what jaxgan's one-stage
      step gives G (G's clean-loss gradient).
    real_label: int labels ``[B]`` of the reals (conditional D only).
    fake_label: int labels ``[B]`` of the fakes (conditional D only).

  Returns:
    ``(loss, new_model_state)``: a scalar, and the non-param collections of
    ``d_variables`` after the adversarial forwards (``{}`` if none).
  """
  cfg = _as_config(config, {})
  if not (isinstance(mix, numbers.Real) and not isinstance(mix, bool) and 0.0 <= mix <= 1.0):
    raise ValueError(f'DAT mix must be a number in [0, 1], got {mix!r} (reference: 0.0).')
  if 'params' not in d_variables:
    raise ValueError(
      f"dat_d_loss: d_variables must be {{'params': ..., **model_state}}, got keys "
      f'{sorted(d_variables)}.'
    )
  real = jax.lax.stop_gradient(real)
  if detach_fake:
    fake = jax.lax.stop_gradient(fake)
  if (real_label is None) != (fake_label is None):
    raise ValueError(
      'dat_d_loss: pass both real_label and fake_label (conditional D) or neither, got '
      f'real_label={"None" if real_label is None else "given"}, '
      f'fake_label={"None" if fake_label is None else "given"}.'
    )
  kw_r = {} if real_label is None else {'label': real_label}
  kw_f = {} if fake_label is None else {'label': fake_label}
  logits_fns = _frozen_logits(d_apply, d_variables)
  if real_label is not None:
    logits_fns = (
      _frozen_logits(d_apply, d_variables, real_label),
      _frozen_logits(d_apply, d_variables, fake_label),
    )
  real_adv, fake_adv = pgd_perturbation(logits_fns, real, fake, cfg, key)
  real_in = real + jax.lax.stop_gradient(real_adv - real)
  fake_in = fake + jax.lax.stop_gradient(fake_adv - fake)

  params = d_variables['params']
  state = {k: v for k, v in d_variables.items() if k != 'params'}
  q, new = d_apply({'params': params, **state}, real_in, train=True, **kw_r)
  state = {**state, **new}
  p, new = d_apply({'params': params, **state}, fake_in, train=True, **kw_f)
  state = {**state, **new}
  total = loss.d_loss(q, p)
  if mix > 0.0:
    q_clean, _ = d_apply(d_variables, real, train=True, **kw_r)
    p_clean, _ = d_apply(d_variables, fake, train=True, **kw_f)
    total = (1.0 - mix) * total + mix * loss.d_loss(q_clean, p_clean)
  return total, state
