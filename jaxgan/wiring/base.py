"""How a technique enters a training run: the :class:`Technique` base and its config helpers.

The program builds a run from a config in a fixed order and, at each point, asks every
technique that is on for its part, in the order of :data:`jaxgan.wiring.TECHNIQUES`:
:meth:`Technique.optimizers`, :meth:`~Technique.game`, :meth:`~Technique.step_options`,
:meth:`~Technique.setup`, :meth:`~Technique.init_state`, :meth:`~Technique.wrap_step`, and
after every step :meth:`~Technique.after_step`. The base methods change nothing, so a
technique overrides only what it uses. This module imports no JAX: a technique's
:meth:`~Technique.validate` runs before the heavy imports, and a technique module imports its
technique inside the methods that build things.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

TOY_DATASETS = ('8ring', '25grid')


class ConfigError(ValueError):
  """A config value, an input or the work directory cannot be used as given."""


def fail(field: str, value, fix: str):
  """Raises :class:`ConfigError` for ``config.<field>=<value>`` with ``fix``."""
  raise ConfigError(f'config.{field}={value!r} is invalid: {fix}')


def refuse_labels(section: str, game) -> None:
  """Refuses, in a class-conditional game, a technique that takes no class labels."""
  if game.conditional:
    fail(
      f'{section}.enabled',
      True,
      f'{section} does not take class labels yet, and the models are class-conditional '
      f'(num_classes={game.num_classes}). Set {section}.enabled=False, or '
      'model_kwargs.num_classes=0.',
    )


def is_int(x) -> bool:
  return isinstance(x, int) and not isinstance(x, bool)


def is_number(x) -> bool:
  return isinstance(x, int | float) and not isinstance(x, bool)


def get(config, dotted: str, default=None):
  """``config.a.b`` for ``'a.b'``, or ``default`` when a part is missing."""
  node = config
  for part in dotted.split('.'):
    if not hasattr(node, 'keys') or part not in node:
      return default
    node = node[part]
  return node


class StepInfo(NamedTuple):
  """What :meth:`Technique.after_step` learns about the step just taken.

  Attributes:
    step: its 0-based index (``state.step`` is ``step + 1`` after it).
    batch: its host batch (``'image'`` ``[n_dis * B, ...]``, ``'label'``).
    metrics: its metrics, on the host.
    adversarial: False while a technique's warm-up phase (CoopInit's cooperative steps)
      runs instead of the adversarial step.
  """

  step: int
  batch: dict
  metrics: dict
  adversarial: bool


class Technique:
  """One technique's way into a training run; every method's default changes nothing.

  The class methods read the config only. For a run, the program makes one instance
  (``cls(config)``) of each technique whose :meth:`enabled` is true and calls its methods in
  the order of the module docstring. ``run`` is the :class:`jaxgan.run_setup.Run` being
  built (its ``config``, ``game``, ``g_tx``, ``d_tx``, ``g_module``, ``d_module``,
  ``image_shape``).
  """

  section: ClassVar[str] = ''  # its config section, ``config.<section>``
  # Its config fields a resumed run may change (they steer no training, e.g. a monitor).
  free_on_resume: ClassVar[tuple[str, ...]] = ()
  # Whether its schedule spans ``num_steps``, which a resumed run then may not change.
  schedule_spans_num_steps: ClassVar[bool] = False

  @classmethod
  def enabled(cls, config) -> bool:
    """Whether the run uses it: ``config.<section>.enabled`` unless overridden."""
    return bool(get(config, f'{cls.section}.enabled', False))

  @classmethod
  def validate(cls, config) -> None:
    """Refuses bad values of its config with :class:`ConfigError`; needs no JAX."""

  @classmethod
  def d_heads(cls, config) -> tuple[str, ...]:
    """The auxiliary heads its D needs (``model_kwargs.aux_head``), e.g. ``('rotation',)``."""
    del config
    return ()

  def __init__(self, config):
    self.config = config

  def optimizers(self, g_tx, d_tx) -> tuple[Any, Any]:
    """G's and D's optax transformations, wrapped (sparse masks)."""
    return g_tx, d_tx

  def game(self, game, g_module, d_module, image_shape: tuple):
    """The :class:`jaxgan.game.Game` with this technique's entries added."""
    del g_module, d_module, image_shape
    return game

  def step_options(self) -> dict:
    """Keyword arguments for the adversarial step builder (``measure_balance``)."""
    return {}

  def setup(self, run) -> None:
    """Builds what needs the whole run (its game and optimizers); config errors raise here."""

  def init_state(self, state):
    """The run's initial :class:`jaxgan.state.GANState` with this technique's state."""
    return state

  def warmup_steps(self) -> int:
    """Steps at the start of the run that are not adversarial ones (CoopInit: ``t_init``)."""
    return 0

  def wrap_step(self, step, mesh):
    """The compiled step the loop calls, wrapped (CoopInit's phases); ``mesh``: the devices."""
    del mesh
    return step

  def after_step(self, state, info: StepInfo) -> tuple[Any, dict]:
    """Per-step side work after the step (prune/regrow, monitors): ``(state, logs)``."""
    del info
    return state, {}
