"""Joining a multi-process run through JAX's own distributed runtime (``jax.distributed``).

Under SLURM with more than one task, ``jax.distributed.initialize()`` finds the coordinator, the
process count and this process's id itself. Elsewhere they come from the config or from
SCALING_COORDINATOR / SCALING_NUM_PROCESSES / SCALING_PROCESS_ID, so any launcher (a shell loop,
a test) can start the processes.
"""

from __future__ import annotations

import os

import jax

from scaling.config import DistributedConfig

_initialized = False


def _from_env(value, name: str, cast=str):
    if value is not None:
        return value
    raw = os.environ.get(name)
    return cast(raw) if raw else None


def initialize(cfg: DistributedConfig) -> None:
    """Join the run's process group, once; a single-process run does nothing."""
    global _initialized
    if _initialized:
        return
    coordinator = _from_env(cfg.coordinator, "SCALING_COORDINATOR")
    num_processes = _from_env(cfg.num_processes, "SCALING_NUM_PROCESSES", int)
    process_id = _from_env(cfg.process_id, "SCALING_PROCESS_ID", int)
    slurm_tasks = int(os.environ.get("SLURM_NTASKS", "1"))
    if coordinator is None and (num_processes or 1) == 1 and slurm_tasks == 1:
        return
    if jax.config.jax_platforms in (None, "", "cpu") or os.environ.get("JAX_PLATFORMS") == "cpu":
        jax.config.update("jax_cpu_collectives_implementation", cfg.cpu_collectives)
    if coordinator is None:
        jax.distributed.initialize()  # SLURM: everything from the environment
    else:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                   process_id=process_id)
    _initialized = True


def is_main() -> bool:
    """Only process 0 writes run.json, metrics and TensorBoard; all processes write checkpoints."""
    return jax.process_index() == 0
