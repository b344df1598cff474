"""Data-free adversarial distillation (DFAD), two-stage and one-stage.

Fang, Song, Shen, Wang, Chen and Song, "Data-Free Adversarial Distillation" (arXiv 1912.11006,
2019). A frozen teacher ``T`` is distilled into a student ``S`` with no data: a generator ``G``
proposes ``x = G(z)``, the student minimizes ``L = mean |S(x) - T(x)|`` (:func:`dfad_loss`) and G
maximizes it. G's loss is exactly ``-L``, so the one-stage rule of OSGAN (Shen et al., CVPR 2021)
is a plain gradient reversal:

* :func:`two_stage_distill_step`: ``k`` student updates on detached samples, then one G update
  through the updated student (the reference schedule);
* :func:`one_stage_distill_step`: one G forward, teacher and student on the same ``x``, one
  backward of ``L`` whose image cotangent is negated before it enters G.

The state is a :class:`jaxgan.state.GANState` with ``g`` the generator and ``d`` the student.
The teacher's variables are a frozen argument of the builders, applied with ``train=False``.
Steps are ``step(state) -> (state, metrics)``: there is no data batch. ``docs/TECHNIQUES.md``
(DFAD) gives the reference's settings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxgan.game import ApplyFn, gaussian_latents
from jaxgan.state import GANState, Player
from jaxgan.steps import apply_gradients, cross_replica_mean, merge_model_state, step_key

Array = jax.Array
DistillStep = Callable[[GANState], tuple[GANState, dict]]


def dfad_loss(teacher_logits: Array, student_logits: Array) -> Array:
  """The DFAD discrepancy: mean absolute logit difference.

  The mean runs over every element, batch and classes alike, as PyTorch's
  ``F.l1_loss`` with its default ``reduction='mean'`` in the reference code; with
  a fixed number of classes this is the batch mean of the per-sample mean over
  classes.

  Args:
    teacher_logits: ``[B, K]``.
    student_logits: ``[B, K]``.

  Returns:
    Scalar ``mean |student - teacher|``.
  """
  if teacher_logits.shape != student_logits.shape:
    raise ValueError(
      f'dfad_loss: teacher logits {tuple(teacher_logits.shape)} and student logits '
      f'{tuple(student_logits.shape)} differ in shape; the student must predict the '
      "teacher's classes (same num_classes) for the same batch."
    )
  return jnp.mean(jnp.abs(student_logits - teacher_logits))


class DFADGenerator(nn.Module):
  """The DFAD reference generator ("GeneratorA"), for small grayscale images.

  Dense ``nz -> 2*ngf`` maps at ``size/4``, BatchNorm, nearest x2, 3x3 conv
  (``2*ngf``) + BN + LeakyReLU(0.2), nearest x2, 3x3 conv (``ngf``) + BN +
  LeakyReLU(0.2), 3x3 conv to ``channels``, tanh, and, as in the reference, a
  BatchNorm without scale or bias on the output.

  With ``output_norm=True`` (the reference) the images are standardized per
  channel over the batch (zero mean, unit variance), not confined to [-1, 1]:
  they are probes for the teacher, not samples to look at. ``output_norm=False``
  stops at the tanh, giving images in [-1, 1] like the rest of the library.

  Attributes:
    ngf: base width (reference: 64).
    channels: output channels.
    image_size: output height and width; a multiple of 4 (28 for MNIST).
    output_norm: the affine-free output BatchNorm of the reference.
  """

  ngf: int = 64
  channels: int = 1
  image_size: int = 28
  output_norm: bool = True

  @nn.compact
  def __call__(self, z: Array, train: bool = True) -> Array:
    """Images ``[B, image_size, image_size, channels]`` from latents ``z [B, nz]``."""
    if self.image_size % 4:
      raise ValueError(
        f'DFADGenerator.image_size must be a multiple of 4 (two x2 upsamplings), got '
        f'{self.image_size}; use 28 for MNIST or 32 for CIFAR.'
      )
    if z.ndim != 2:
      raise ValueError(f'DFADGenerator takes latents [B, nz], got shape {tuple(z.shape)}.')
    # PyTorch BatchNorm2d defaults: running-average momentum 0.1, eps 1e-5.
    norm = lambda **kw: nn.BatchNorm(
      use_running_average=not train, momentum=0.9, epsilon=1e-5, **kw
    )
    s = self.image_size // 4
    h = nn.Dense(2 * self.ngf * s * s)(z).reshape(z.shape[0], s, s, 2 * self.ngf)
    h = norm()(h)
    h = _upsample2(h)
    h = nn.leaky_relu(norm()(nn.Conv(2 * self.ngf, (3, 3), padding='SAME')(h)), 0.2)
    h = _upsample2(h)
    h = nn.leaky_relu(norm()(nn.Conv(self.ngf, (3, 3), padding='SAME')(h)), 0.2)
    x = jnp.tanh(nn.Conv(self.channels, (3, 3), padding='SAME')(h))
    if self.output_norm:
      x = norm(use_scale=False, use_bias=False)(x)
    return x


def _upsample2(x: Array) -> Array:
  """Nearest-neighbour x2 upsampling, ``[B, H, W, C] -> [B, 2H, 2W, C]``."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def _validate(
  teacher_variables, student_steps: int, batch_size: int, latent_dim: int, where: str
) -> None:
  if not isinstance(teacher_variables, Mapping) or 'params' not in teacher_variables:
    raise ValueError(
      f"{where}: teacher_variables must be the teacher's Flax variables, a mapping with "
      f"'params' (e.g. {{'params': params, **model_state}}), got {type(teacher_variables).__name__}."
    )
  for name, value in (
    ('student_steps', student_steps),
    ('batch_size', batch_size),
    ('latent_dim', latent_dim),
  ):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(
        f'{where}: {name} must be a positive int, got {value!r} '
        '(DFAD reference: student_steps=5, batch_size=512, latent_dim=100).'
      )


class _Parts:
  """The pure pieces both step builders share (closures over the models)."""

  def __init__(
    self, g_apply, student_apply, teacher_apply, teacher_variables, s_tx, axis_name, sample
  ):
    self.g_apply = g_apply
    self.student_apply = student_apply
    self.s_tx = s_tx
    self.axis_name = axis_name
    self.sample = sample
    frozen = jax.tree.map(jnp.asarray, dict(teacher_variables))

    def teacher_logits(x):
      out, _ = teacher_apply(jax.lax.stop_gradient(frozen), x, train=False)
      return out

    self.teacher_logits = teacher_logits

  def discrepancy(self, s_params, s_model_state, x):
    """``L`` at images ``x`` and the student's updated model state."""
    s_logits, new_ms = self.student_apply({'params': s_params, **s_model_state}, x, train=True)
    return dfad_loss(self.teacher_logits(x), s_logits), merge_model_state(s_model_state, new_ms)

  def student_updates(self, student: Player, g_params, g_model_state, keys):
    """``len(keys)`` student updates on detached G samples (fresh ``z`` each).

    Returns ``(student, g_model_state, losses [n])``; G's batch statistics are
    updated by its forwards, as in the reference (G in train mode).
    """

    def update(carry, key):
      s, g_ms = carry
      fake, g_new = self.g_apply({'params': g_params, **g_ms}, self.sample(key), train=True)
      fake = jax.lax.stop_gradient(fake)
      (loss, s_ms), grads = jax.value_and_grad(self.discrepancy, has_aux=True)(
        s.params, s.model_state, fake
      )
      grads, s_ms, g_new, loss = cross_replica_mean((grads, s_ms, g_new, loss), self.axis_name)
      s = apply_gradients(s, self.s_tx, grads, s_ms)
      return (s, merge_model_state(g_ms, g_new)), loss

    (student, g_model_state), losses = jax.lax.scan(update, (student, g_model_state), keys)
    return student, g_model_state, losses

  def g_objective(self, g_params, g_model_state, student: Player, z):
    """G's loss ``-L`` through ``student``, with G's and the student's new model states."""
    fake, g_new = self.g_apply({'params': g_params, **g_model_state}, z, train=True)
    loss, s_ms = self.discrepancy(student.params, student.model_state, fake)
    return -loss, (merge_model_state(g_model_state, g_new), s_ms)


def _sampler(sample_latents, latent_dim: int, batch_size: int) -> Callable[[Array], Array]:
  """``key -> z [batch_size, nz]``: ``sample_latents`` or a standard normal."""
  sampler = sample_latents or gaussian_latents(latent_dim)
  return lambda key: sampler(key, batch_size)


def two_stage_distill_step(
  g_apply: ApplyFn,
  student_apply: ApplyFn,
  teacher_apply: ApplyFn,
  teacher_variables: Mapping,
  g_tx: optax.GradientTransformation,
  s_tx: optax.GradientTransformation,
  *,
  student_steps: int = 5,
  batch_size: int,
  latent_dim: int,
  axis_name: str | None = None,
  sample_latents: Callable[[Array, int], Array] | None = None,
) -> DistillStep:
  """Builds the DFAD reference step: ``k`` student updates, then one G update.

  Each student update draws fresh latents, detaches ``G(z)`` and descends ``L``;
  then G draws fresh latents and descends ``-L`` through the updated student
  (the order of ``DFAD_mnist.py``). All of it is one jit-able function (the
  student updates are a ``lax.scan``).

  Args:
    g_apply: generator, ``z [B, nz] -> images [B, H, W, C]``, run in train mode.
    student_apply: student, images -> logits ``[B, K]``, run in train mode.
    teacher_apply: teacher, images -> logits ``[B, K]``, run in eval mode.
    teacher_variables: the teacher's frozen Flax variables.
    g_tx: G's optimizer (reference: Adam 1e-3).
    s_tx: the student's optimizer (reference MNIST: SGD 0.01, momentum 0.9,
      weight decay 1e-4).
    student_steps: student updates per G update (reference: 5).
    batch_size: latents per update (per device under ``axis_name``).
    latent_dim: ``nz``.
    axis_name: data axis under ``pmap``/``shard_map``; each device draws its
      own latents, and gradients, statistics and metrics are averaged.
    sample_latents: ``(key, n) -> z [n, nz]``; default standard normal.

  Returns:
    ``step(state) -> (state, metrics)`` with metrics ``distill/student_loss``
    (``L`` of the last student update, before it), ``distill/g_loss`` (``-L``
    at G's update) and ``distill/student_updates`` (``k``).
  """
  _validate(teacher_variables, student_steps, batch_size, latent_dim, 'two_stage_distill_step')
  models = (g_apply, student_apply, teacher_apply, teacher_variables)
  parts = _Parts(*models, s_tx, axis_name, _sampler(sample_latents, latent_dim, batch_size))

  def step(state: GANState) -> tuple[GANState, dict]:
    return _two_stage_distill_iteration(parts, g_tx, student_steps, state)

  return step


def _two_stage_distill_iteration(parts: _Parts, g_tx, student_steps: int, state: GANState):
  """The body of :func:`two_stage_distill_step`."""
  axis_name = parts.axis_name
  k_s, k_g = jax.random.split(step_key(state, axis_name))
  student, g_ms, s_losses = parts.student_updates(
    state.d, state.g.params, state.g.model_state, jax.random.split(k_s, student_steps)
  )
  frozen_student = jax.lax.stop_gradient(student)
  (g_loss, (g_ms, s_ms)), grads = jax.value_and_grad(parts.g_objective, has_aux=True)(
    state.g.params, g_ms, frozen_student, parts.sample(k_g)
  )
  grads, g_ms, s_ms, g_loss = cross_replica_mean((grads, g_ms, s_ms, g_loss), axis_name)
  g_player = apply_gradients(state.g, g_tx, grads, g_ms)
  student = student.replace(model_state=s_ms)
  metrics = {
    'distill/student_loss': s_losses[-1],
    'distill/g_loss': g_loss,
    'distill/student_updates': jnp.asarray(s_losses.shape[0], jnp.float32),
  }
  return state.replace(step=state.step + 1, g=g_player, d=student), metrics


def one_stage_distill_step(
  g_apply: ApplyFn,
  student_apply: ApplyFn,
  teacher_apply: ApplyFn,
  teacher_variables: Mapping,
  g_tx: optax.GradientTransformation,
  s_tx: optax.GradientTransformation,
  *,
  student_steps: int = 1,
  batch_size: int,
  latent_dim: int,
  axis_name: str | None = None,
  sample_latents: Callable[[Array, int], Array] | None = None,
) -> DistillStep:
  """Builds the one-stage DFAD step: G and student updated from one pass.

  One G forward ``x = G(z)``, the teacher and the student on ``x``, and one
  backward of ``L`` (explicit :func:`jax.vjp`): the student gets ``grad L``;
  the cotangent at ``x``, which holds the teacher path and the student path, is
  negated (a gradient reversal) and pulled back through G, which so gets
  exactly ``grad(-L)``. The update is simultaneous: G's gradient goes through
  the student before its update, on the same ``z``.

  ``student_steps=k`` keeps DFAD's ``k:1`` ratio: ``k - 1`` two-stage student
  updates (detached samples, fresh latents), then the shared update. The
  default ``k = 1`` shares every step (OSGAN's one-stage rule on every update).

  Args:
    g_apply: generator, run in train mode.
    student_apply: student, images -> logits ``[B, K]``, run in train mode.
    teacher_apply: teacher, images -> logits ``[B, K]``, run in eval mode.
    teacher_variables: the teacher's frozen Flax variables.
    g_tx: G's optimizer; ``s_tx``: the student's. Both step from the pass.
    student_steps: student updates per G update, the last one shared.
    batch_size: latents per update (per device under ``axis_name``).
    latent_dim: ``nz``.
    axis_name: data axis under ``pmap``/``shard_map``.
    sample_latents: ``(key, n) -> z [n, nz]``; default standard normal.

  Returns:
    ``step(state) -> (state, metrics)`` with metrics ``distill/student_loss``
    (``L`` of the shared pass, before the updates), ``distill/g_loss``
    (``-L`` of the same pass) and ``distill/student_updates`` (``k``).
  """
  _validate(teacher_variables, student_steps, batch_size, latent_dim, 'one_stage_distill_step')
  models = (g_apply, student_apply, teacher_apply, teacher_variables)
  parts = _Parts(*models, s_tx, axis_name, _sampler(sample_latents, latent_dim, batch_size))

  def step(state: GANState) -> tuple[GANState, dict]:
    return _one_stage_distill_iteration(parts, g_tx, s_tx, student_steps, state)

  return step


def _one_stage_distill_iteration(parts: _Parts, g_tx, s_tx, student_steps: int, state: GANState):
  """The body of :func:`one_stage_distill_step`."""
  axis_name = parts.axis_name
  k_s, k_g = jax.random.split(step_key(state, axis_name))
  student, g_ms = state.d, state.g.model_state
  if student_steps > 1:
    student, g_ms, _ = parts.student_updates(
      student, state.g.params, g_ms, jax.random.split(k_s, student_steps - 1)
    )
  z = parts.sample(k_g)

  # One G forward.
  fake, g_vjp, g_new = jax.vjp(
    lambda gp: parts.g_apply({'params': gp, **g_ms}, z, train=True), state.g.params, has_aux=True
  )
  # Teacher and student on the same images; one backward of L.
  loss, l_vjp, s_ms = jax.vjp(
    lambda sp, x: parts.discrepancy(sp, student.model_state, x),
    student.params,
    fake,
    has_aux=True,
  )
  s_grads, ct_fake = l_vjp(jnp.ones_like(loss))
  # Gradient reversal at the images: G maximizes L.
  (g_grads,) = g_vjp(-ct_fake)

  g_ms = merge_model_state(g_ms, g_new)
  s_grads, g_grads, s_ms, g_ms, loss = cross_replica_mean(
    (s_grads, g_grads, s_ms, g_ms, loss), axis_name
  )
  g_player = apply_gradients(state.g, g_tx, g_grads, g_ms)
  student = apply_gradients(student, s_tx, s_grads, s_ms)
  metrics = {
    'distill/student_loss': loss,
    'distill/g_loss': -loss,
    'distill/student_updates': jnp.asarray(student_steps, jnp.float32),
  }
  return state.replace(step=state.step + 1, g=g_player, d=student), metrics
