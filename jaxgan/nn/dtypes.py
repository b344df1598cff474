"""Dtype helper for model outputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def at_least_float32(x: jax.Array) -> jax.Array:
  """Casts low-precision (bfloat16/float16) outputs to float32; float64 stays."""
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))
