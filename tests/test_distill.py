"""DFAD steps against separately computed gradients and a hand-written schedule (float64)."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tiny_models as tm

from jaxgan import distill
from jaxgan.game import gaussian_latents, make_apply
from jaxgan.state import GANState, Player

NZ = 3
B = 6
IMAGE_SHAPE = (4, 4, 1)
CLASSES = 3


class TinyTeacher(nn.Module):
  """A classifier with BatchNorm, so eval mode (running stats) is observable."""

  @nn.compact
  def __call__(self, x, train: bool):
    h = nn.Dense(6)(x.reshape(x.shape[0], -1))
    h = nn.BatchNorm(use_running_average=not train, momentum=0.9)(h)
    return nn.Dense(CLASSES)(jnp.tanh(h))


class TinyStudent(nn.Module):
  batchnorm: bool = False

  @nn.compact
  def __call__(self, x, train: bool):
    h = nn.Dense(5)(x.reshape(x.shape[0], -1))
    if self.batchnorm:
      h = nn.BatchNorm(use_running_average=not train, momentum=0.9)(h)
    return nn.Dense(CLASSES)(jnp.tanh(h))


class TinyBNG(nn.Module):
  """A dense generator with BatchNorm (batch statistics in train mode, running stats stored)."""

  @nn.compact
  def __call__(self, z, train: bool):
    h = nn.BatchNorm(use_running_average=not train, momentum=0.9)(nn.Dense(16)(z))
    return jnp.tanh(h).reshape(z.shape[0], *IMAGE_SHAPE)


class TinyPlainG(nn.Module):
  """A per-sample generator (no BatchNorm), for the cross-replica test."""

  @nn.compact
  def __call__(self, z, train: bool):
    return jnp.tanh(nn.Dense(16)(jnp.tanh(nn.Dense(5)(z)))).reshape(z.shape[0], *IMAGE_SHAPE)


def numpy_variables(module, example, seed, dtype=np.float64):
  """Variables of ``module`` drawn with numpy (no traced init: its compile is slow on CPU).

  Params ~ N(0, 0.5^2); BatchNorm running means ~ N(0, 1), variances ~ U(0.3, 3), far
  from the init, so eval mode is observable.
  """
  shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), example, train=False))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = jax.tree_util.keystr(path)
    if name.endswith("['var']"):
      return jnp.asarray(rng.uniform(0.3, 3.0, leaf.shape).astype(dtype))
    scale = 1.0 if name.endswith("['mean']") else 0.5
    return jnp.asarray((scale * rng.standard_normal(leaf.shape)).astype(dtype))

  return dict(jax.tree_util.tree_map_with_path(draw, shapes))


def setup(g_module=None, student=None, g_tx=None, s_tx=None, f64=True):
  """Applies, frozen teacher variables and a fresh GANState (g: G, d: the student)."""
  g_module = g_module or distill.DFADGenerator(ngf=2, channels=1, image_size=4)
  student = student or TinyStudent()
  dtype = np.float64 if f64 else np.float32
  players = []
  for module, example, tx, seed in (
    (g_module, jnp.zeros((2, NZ)), g_tx, 1),
    (student, jnp.zeros((2, *IMAGE_SHAPE)), s_tx, 2),
  ):
    variables = numpy_variables(module, example, seed, dtype)
    params = variables.pop('params')
    tx = tx or optax.identity()
    players.append(Player(params=params, model_state=variables, opt_state=tx.init(params)))
  state = GANState(
    step=jnp.zeros((), jnp.int32),
    rng=jax.random.PRNGKey(0),
    g=players[0],
    d=players[1],
    ema_params=None,
    extra={},
  )
  t_vars = numpy_variables(TinyTeacher(), jnp.zeros((2, *IMAGE_SHAPE)), 3, dtype)
  return make_apply(g_module), make_apply(student), make_apply(TinyTeacher()), t_vars, state


def ref_discrepancy(g_apply, s_apply, t_apply, t_vars, g_params, g_ms, s_params, s_ms, z):
  """L written out: G and the student in train mode, the teacher in eval mode."""
  fake, g_new = g_apply({'params': g_params, **g_ms}, z, train=True)
  t_logits, _ = t_apply(t_vars, fake, train=False)
  s_logits, s_new = s_apply({'params': s_params, **s_ms}, fake, train=True)
  return jnp.mean(jnp.abs(s_logits - t_logits)), ({**g_ms, **g_new}, {**s_ms, **s_new})


def test_dfad_loss_is_mean_absolute_difference_over_all_elements():
  t = np.random.default_rng(0).normal(size=(5, 7))
  s = np.random.default_rng(1).normal(size=(5, 7))
  expected = np.mean([np.sum(np.abs(s[i] - t[i])) / 7 for i in range(5)])
  np.testing.assert_allclose(
    float(distill.dfad_loss(jnp.asarray(t), jnp.asarray(s))), expected, rtol=1e-6
  )
  with pytest.raises(ValueError, match=r'differ in shape.*num_classes'):
    distill.dfad_loss(jnp.zeros((5, 7)), jnp.zeros((5, 10)))


def test_generator_matches_a_hand_written_forward():
  with jax.enable_x64(True):
    module = distill.DFADGenerator(ngf=2, channels=1, image_size=8)
    z = jnp.asarray(np.random.default_rng(1).standard_normal((4, NZ)))
    variables = numpy_variables(module, z, seed=4)
    out, new_state = jax.jit(lambda v, z: module.apply(v, z, train=True, mutable=['batch_stats']))(
      variables, z
    )
    p = variables['params']

    def bn(h, scale=None, bias=None):
      mean, var = h.mean(axis=(0, 1, 2)), h.var(axis=(0, 1, 2))
      h = (h - mean) / np.sqrt(var + 1e-5)
      return h if scale is None else h * scale + bias

    def conv(h, layer):
      w = np.asarray(layer['kernel'])  # [3, 3, Cin, Cout]
      hp = np.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0)))
      n, hh, ww, _ = h.shape
      out = np.zeros((n, hh, ww, w.shape[-1]))
      for dy in range(3):
        for dx in range(3):
          out += np.einsum('nhwc,cd->nhwd', hp[:, dy : dy + hh, dx : dx + ww], w[dy, dx])
      return out + np.asarray(layer['bias'])

    up = lambda h: h.repeat(2, axis=1).repeat(2, axis=2)
    lrelu = lambda h: np.where(h > 0, h, 0.2 * h)
    h = np.asarray(z) @ np.asarray(p['Dense_0']['kernel']) + np.asarray(p['Dense_0']['bias'])
    h = bn(h.reshape(4, 2, 2, 4), *(np.asarray(p['BatchNorm_0'][k]) for k in ('scale', 'bias')))
    h = lrelu(
      bn(conv(up(h), p['Conv_0']), *(np.asarray(p['BatchNorm_1'][k]) for k in ('scale', 'bias')))
    )
    h = lrelu(
      bn(conv(up(h), p['Conv_1']), *(np.asarray(p['BatchNorm_2'][k]) for k in ('scale', 'bias')))
    )
    expected = bn(np.tanh(conv(h, p['Conv_2'])))
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-9, atol=1e-10)
    assert out.shape == (4, 8, 8, 1)
    assert 'BatchNorm_3' in new_state['batch_stats']  # the affine-free output norm
    assert 'BatchNorm_3' not in p

    plain = distill.DFADGenerator(ngf=2, image_size=8, output_norm=False)
    x = jax.jit(lambda v, z: plain.apply(v, z, train=False))(numpy_variables(plain, z, seed=5), z)
    assert float(jnp.max(jnp.abs(x))) < 1.0
  with pytest.raises(ValueError, match='multiple of 4'):
    distill.DFADGenerator(image_size=30).init(jax.random.PRNGKey(0), jnp.zeros((2, NZ)))


def test_one_stage_gradients_equal_separate_gradients():
  """Student: grad L; G: grad(-L); same params and z; teacher frozen in eval mode."""
  with jax.enable_x64(True):
    z = jnp.asarray(np.random.default_rng(3).standard_normal((B, NZ)))
    g_apply, s_apply, t_apply, t_vars, state = setup(
      g_module=TinyBNG(), student=TinyStudent(batchnorm=True)
    )
    step = distill.one_stage_distill_step(
      g_apply,
      s_apply,
      t_apply,
      t_vars,
      optax.identity(),
      optax.identity(),
      batch_size=B,
      latent_dim=NZ,
      sample_latents=tm.fixed_latents(z),
    )
    new, metrics = jax.jit(step)(state)

    def loss(gp, sp):
      return ref_discrepancy(
        g_apply, s_apply, t_apply, t_vars, gp, state.g.model_state, sp, state.d.model_state, z
      )

    def loss_train_mode_teacher(gp):
      fake, _ = g_apply({'params': gp, **state.g.model_state}, z, train=True)
      t_logits, _ = t_apply(t_vars, fake, train=True)
      s_logits, _ = s_apply(state.d.variables, fake, train=True)
      return jnp.mean(jnp.abs(s_logits - t_logits))

    @jax.jit
    def oracle(gp, sp):
      (value, aux), s_grad = jax.value_and_grad(lambda p: loss(gp, p), has_aux=True)(sp)
      neg_g_grad = jax.grad(lambda p: -loss(p, sp)[0])(gp)
      return value, aux, s_grad, neg_g_grad, jax.grad(loss_train_mode_teacher)(gp)

    value, (g_ms, s_ms), s_grad, neg_g_grad, g_grad_train_teacher = oracle(
      state.g.params, state.d.params
    )
    chex.assert_trees_all_close(
      tm.grads_from_identity_update(state.d.params, new.d.params), s_grad, rtol=1e-10, atol=1e-13
    )
    chex.assert_trees_all_close(
      tm.grads_from_identity_update(state.g.params, new.g.params),
      neg_g_grad,
      rtol=1e-10,
      atol=1e-13,
    )
    chex.assert_trees_all_close(new.g.model_state, g_ms, rtol=1e-12)
    chex.assert_trees_all_close(new.d.model_state, s_ms, rtol=1e-12)
    np.testing.assert_allclose(float(metrics['distill/student_loss']), float(value), rtol=1e-12)
    np.testing.assert_allclose(float(metrics['distill/g_loss']), -float(value), rtol=1e-12)
    assert int(new.step) == 1
    # The oracle is sensitive to the teacher's mode: G's gradient goes through the teacher,
    # and batch statistics instead of the running ones would change it.
    diff = jax.tree.map(lambda a, b: jnp.max(jnp.abs(a + b)), neg_g_grad, g_grad_train_teacher)
    assert max(jax.tree.leaves(diff)) > 1e-3


def counting_sgd(lr):
  """SGD whose state counts its updates (``state[1].count``)."""
  return optax.chain(optax.sgd(lr), optax.scale_by_schedule(lambda count: 1.0))


def manual_schedule(g_apply, s_apply, t_apply, t_vars, state, k, one_stage, lr_s, lr_g):
  """The DFAD schedule written out with jax.grad and plain SGD, same keys as the step."""
  sample = gaussian_latents(NZ)
  k_s, k_g = jax.random.split(jax.random.fold_in(state.rng, state.step))
  n_detached = k - 1 if one_stage else k
  s_params, s_ms = state.d.params, state.d.model_state
  g_params, g_ms = state.g.params, state.g.model_state
  keys = jax.random.split(k_s, n_detached) if n_detached else []
  for key in keys:
    z = sample(key, B)
    fake, g_new = g_apply({'params': g_params, **g_ms}, z, train=True)
    g_ms = {**g_ms, **g_new}
    fake = jax.lax.stop_gradient(fake)

    def s_loss(sp, fake=fake, s_ms=s_ms):
      t_logits, _ = t_apply(t_vars, fake, train=False)
      s_logits, new = s_apply({'params': sp, **s_ms}, fake, train=True)
      return jnp.mean(jnp.abs(s_logits - t_logits)), {**s_ms, **new}

    grads, s_ms = jax.grad(s_loss, has_aux=True)(s_params)
    s_params = jax.tree.map(lambda p, g: p - lr_s * g, s_params, grads)
  z = sample(k_g, B)

  def loss(gp, sp):
    return ref_discrepancy(g_apply, s_apply, t_apply, t_vars, gp, g_ms, sp, s_ms, z)

  (_, (g_ms, s_ms)), (g_grad, s_grad) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
    g_params, s_params
  )
  g_params = jax.tree.map(lambda p, g: p + lr_g * g, g_params, g_grad)  # G ascends L
  if one_stage:
    s_params = jax.tree.map(lambda p, g: p - lr_s * g, s_params, s_grad)
  return g_params, g_ms, s_params, s_ms


@pytest.mark.parametrize('one_stage', [False, True])
def test_schedule_equals_hand_written_schedule(one_stage):
  """k student updates per G update (counted by the optimizer state), in the reference order.

  Also: the step compiles once, and the frozen teacher is neither changed nor copied into
  the state.
  """
  k = 3
  lr_s, lr_g = 0.3, 0.2
  with jax.enable_x64(True):
    g_apply, s_apply, t_apply, t_vars, state = setup(
      g_module=TinyBNG(),
      student=TinyStudent(batchnorm=True),
      g_tx=counting_sgd(lr_g),
      s_tx=counting_sgd(lr_s),
    )
    builder = distill.one_stage_distill_step if one_stage else distill.two_stage_distill_step
    step = builder(
      g_apply,
      s_apply,
      t_apply,
      t_vars,
      counting_sgd(lr_g),
      counting_sgd(lr_s),
      student_steps=k,
      batch_size=B,
      latent_dim=NZ,
    )
    state = state.replace(step=jnp.asarray(4, jnp.int32))  # keys depend on the step
    teacher_before = jax.tree.map(np.array, t_vars)
    jitted = jax.jit(chex.assert_max_traces(step, n=1))
    new, metrics = jitted(state)
    manual = jax.jit(
      lambda st: manual_schedule(g_apply, s_apply, t_apply, t_vars, st, k, one_stage, lr_s, lr_g)
    )
    g_params, g_ms, s_params, s_ms = manual(state)
    chex.assert_trees_all_close(new.d.params, s_params, rtol=1e-10, atol=1e-13)
    chex.assert_trees_all_close(new.g.params, g_params, rtol=1e-10, atol=1e-13)
    chex.assert_trees_all_close(new.g.model_state, g_ms, rtol=1e-10, atol=1e-13)
    chex.assert_trees_all_close(new.d.model_state, s_ms, rtol=1e-10, atol=1e-13)
    assert int(new.d.opt_state[1].count) == k
    assert int(new.g.opt_state[1].count) == 1
    assert float(metrics['distill/student_updates']) == k
    assert int(new.step) == 5
    again, metrics = jitted(new)  # no retrace
    assert int(again.step) == 6 and int(again.d.opt_state[1].count) == 2 * k
    assert all(np.isfinite(float(v)) for v in metrics.values())
    chex.assert_trees_all_equal(t_vars, teacher_before)
    assert jax.tree.structure(again) == jax.tree.structure(state)


def test_axis_name_averages_over_replicas():
  """Two replicas (vmap with an axis name) give the gradient of the 2B batch."""
  with jax.enable_x64(True):
    g_apply, s_apply, t_apply, t_vars, state = setup(g_module=TinyPlainG())
    step = distill.one_stage_distill_step(
      g_apply,
      s_apply,
      t_apply,
      t_vars,
      optax.identity(),
      optax.identity(),
      batch_size=B,
      latent_dim=NZ,
      axis_name='data',
    )
    new, _ = jax.jit(jax.vmap(step, in_axes=None, axis_size=2, axis_name='data'))(state)
    chex.assert_trees_all_close(
      jax.tree.map(lambda a: a[0], new.d.params), jax.tree.map(lambda a: a[1], new.d.params)
    )

    @jax.jit
    def oracle(st):
      # Replica i draws its latents from fold_in(fold_in(rng, step), i), as step_key does.
      base = jax.random.fold_in(st.rng, st.step)
      keys = [jax.random.split(jax.random.fold_in(base, i))[1] for i in range(2)]
      z = jnp.concatenate([gaussian_latents(NZ)(key, B) for key in keys])
      loss = lambda gp, sp: ref_discrepancy(g_apply, s_apply, t_apply, t_vars, gp, {}, sp, {}, z)[0]
      return jax.grad(loss, argnums=(0, 1))(st.g.params, st.d.params)

    g_grad, s_grad = oracle(state)
    first = lambda tree: jax.tree.map(lambda a: a[0], tree)
    chex.assert_trees_all_close(
      tm.grads_from_identity_update(state.d.params, first(new.d.params)), s_grad, rtol=1e-10
    )
    chex.assert_trees_all_close(
      tm.grads_from_identity_update(state.g.params, first(new.g.params)),
      jax.tree.map(jnp.negative, g_grad),
      rtol=1e-10,
    )


@pytest.mark.parametrize(
  'kwargs,match',
  [
    ({'student_steps': 0}, 'student_steps must be a positive int, got 0'),
    ({'batch_size': -2}, 'batch_size must be a positive int, got -2'),
    ({'latent_dim': 2.5}, 'latent_dim must be a positive int, got 2.5'),
    ({'teacher_variables': {'batch_stats': {}}}, "mapping with 'params'"),
  ],
)
@pytest.mark.parametrize('one_stage', [False, True])
def test_bad_arguments_are_refused_before_tracing(kwargs, match, one_stage):
  apply = make_apply(TinyStudent())
  g_apply, s_apply, t_apply = apply, apply, apply
  args = {
    'student_steps': 2,
    'batch_size': B,
    'latent_dim': NZ,
    'teacher_variables': {'params': {}},
  }
  args.update(kwargs)
  t_vars = args.pop('teacher_variables')
  builder = distill.one_stage_distill_step if one_stage else distill.two_stage_distill_step
  with pytest.raises(ValueError, match=match):
    builder(g_apply, s_apply, t_apply, t_vars, optax.identity(), optax.identity(), **args)


def test_dfad_script_resumes_from_its_checkpoint(tmp_path, monkeypatch, capsys):
  from experiments import dfad_mnist
  from jaxgan.models.classifier import LeNet5Half

  argv = '--iters 6 --eval-every 2 --batch-size 4 --nz 8 --ngf 4 --schedules two_stage:2'.split()
  args = dfad_mnist.parse_args([*argv, '--workdir', str(tmp_path / 'ckpt')])
  teacher = LeNet5Half()
  teacher_params = teacher.init(jax.random.PRNGKey(3), jnp.zeros((1, 28, 28, 1)))['params']
  rng = np.random.default_rng(0)
  test = {'image': rng.uniform(-1, 1, (16, 28, 28, 1)).astype(np.float32)}
  test['label'] = rng.integers(0, 10, 16)
  accuracy = dfad_mnist.classifier_accuracy
  calls = []

  def scored(module, params, images, labels):
    calls.append(1)
    if len(calls) == crash_at:
      raise KeyboardInterrupt('killed')
    # a function of every student parameter, so equal values mean equal students
    return accuracy(module, params, images, labels) + float(
      sum(jnp.abs(x).sum() for x in jax.tree.leaves(params))
    )

  monkeypatch.setattr(dfad_mnist, 'classifier_accuracy', scored)

  def run():
    return dfad_mnist.train(args, 'two_stage:2', 'two_stage', 2, teacher, teacher_params, test)[0]

  crash_at = None
  straight = run()
  assert not any((tmp_path / 'ckpt').iterdir())  # a finished run leaves no checkpoint
  calls.clear()
  crash_at = 2  # killed at iteration 4, after the checkpoint at iteration 2
  with pytest.raises(KeyboardInterrupt):
    run()
  calls.clear()
  crash_at = None
  resumed = run()
  assert 'resumed at iteration 2' in capsys.readouterr().out
  assert len(calls) == 2  # iterations 4 and 6
  assert resumed['curve'] == straight['curve']
