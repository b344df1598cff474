"""Data-parallel training over devices and hosts with ``jax.jit`` + ``NamedSharding``.

The state is replicated, the batch is sharded along its first axis over the
mesh axis ``'data'``; XLA inserts the gradient all-reduce. Steps also take an
``axis_name`` for users who call them under ``jax.pmap``/``jax.shard_map``.

Multi-host: call :func:`initialize_distributed` first in every process; each
process then feeds only its own rows (:func:`shard_batch` builds the global
array from process-local data).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = 'data'
PyTree = Any


def initialize_distributed(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
) -> None:
  """Starts multi-host JAX (``jax.distributed.initialize``).

  With no arguments, the environment variables ``JAXGAN_COORDINATOR_ADDRESS``,
  ``JAXGAN_NUM_PROCESSES`` and ``JAXGAN_PROCESS_ID`` are used when set (e.g. a
  local multi-process run); otherwise JAX reads the cluster environment
  (SLURM, TPU pods, ...; docs/CLUSTER.md). On CPU hosts the gloo collectives are selected so
  cross-process reductions work.
  """
  if os.environ.get('JAX_PLATFORMS', '') == 'cpu' or not os.environ.get('JAX_PLATFORMS'):
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  if coordinator_address is None and 'JAXGAN_COORDINATOR_ADDRESS' in os.environ:
    coordinator_address = os.environ['JAXGAN_COORDINATOR_ADDRESS']
    num_processes = int(os.environ['JAXGAN_NUM_PROCESSES'])
    process_id = int(os.environ['JAXGAN_PROCESS_ID'])
  kwargs = {}
  if coordinator_address is not None:
    kwargs.update(
      coordinator_address=coordinator_address,
      num_processes=num_processes,
      process_id=process_id,
    )
  jax.distributed.initialize(**kwargs)


def make_mesh(devices: list | None = None) -> Mesh:
  """A 1-D mesh over ``devices`` (default: all devices of all processes)."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def data_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_global_batch(batch_size: int, mesh: Mesh) -> None:
  """Raises if ``batch_size`` does not split evenly over the mesh's devices."""
  n = mesh.devices.size
  if batch_size % n:
    raise ValueError(
      f'global batch size {batch_size} does not divide over {n} devices; '
      f'use a multiple of {n} (e.g. {n * max(1, round(batch_size / n))}).'
    )


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
  """Places ``tree`` (e.g. a ``GANState``) replicated on every device of ``mesh``.

  With several processes every one passes the same values, which go through
  host memory: a state restored from a checkpoint sits on one local device,
  and JAX does not copy device to device across hosts.
  """
  if jax.process_count() > 1:
    tree = jax.device_get(tree)
  return jax.device_put(tree, replicated(mesh))


def shard_batch(local_batch: dict, mesh: Mesh) -> dict:
  """Builds the global, data-sharded batch from this process's rows."""
  sharding = data_sharded(mesh)
  if jax.process_count() == 1:
    return jax.device_put(local_batch, sharding)
  return jax.tree.map(
    lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch
  )


def jit_data_parallel(step: Callable, mesh: Mesh, *, donate: bool = True) -> Callable:
  """``jax.jit`` of ``step(state, batch)`` with a replicated state and a sharded batch."""
  rep, dat = replicated(mesh), data_sharded(mesh)
  return jax.jit(
    step,
    in_shardings=(rep, dat),
    out_shardings=(rep, rep),
    donate_argnums=(0,) if donate else (),
  )
