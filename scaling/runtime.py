"""Everything one run compiles and feeds: mesh, optimizer, layouts, the jitted steps and the batches.

The training loop and the benchmarks build it the same way, so what a benchmark times is exactly
what `scaling train` runs.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding

from scaling import model, optim, sharding, step
from scaling.config import ConfigError
from scaling.planning import Plan


@dataclasses.dataclass
class Runtime:
    """A run's compiled machinery, built by ``build`` from a ``Plan``.

    ``train_step(state, tokens_ABT1) -> (state, metrics)`` and ``eval_step(params, tokens_BT1) ->
    (summed nats, token count)`` are jitted (``scaling.step``; the train step takes ``lr_schedule``'s
    numbers as arguments); ``lr_schedule`` maps an update index to a learning rate; ``abstract_state`` is the sharded restore target; ``tokens_sharding`` lays
    a [A, B/A, T+1] token array over the mesh.
    """

    plan: Plan
    mesh: Mesh
    tx: optax.GradientTransformation
    lr_schedule: optim.Schedule
    abstract_state: Any  # ShapeDtypeStructs carrying their shardings (a restore target)
    state_sharding: Any
    tokens_sharding: NamedSharding
    train_step: step.TrainStep
    eval_step: Callable

    def init_state(self) -> step.TrainState:
        """Fresh parameters and optimizer state, created directly in their sharded layout."""
        cfg = self.plan.cfg
        key = jax.random.key(cfg.seed)
        return jax.jit(lambda: step.init_state(cfg.model, self.tx, key), out_shardings=self.state_sharding)()

    def batch(self, s: int) -> jax.Array:
        """Step s's [A, B/A, T+1] tokens; each process reads only the rows its devices hold."""
        cfg = self.plan.cfg
        B, T, A = cfg.train.batch_size, cfg.model.seq_len, cfg.train.grad_accum

        def rows(index):
            per_micro = np.arange(B // A)[index[1]]
            flat = (np.arange(A)[index[0], None] * (B // A) + per_micro[None, :]).reshape(-1)
            tokens = self.plan.dataset.train_batch(cfg.seed, s, B, T, rows=flat)
            return tokens.reshape(-1, len(per_micro), T + 1)[:, :, index[2]]

        return jax.make_array_from_callback((A, B // A, T + 1), self.tokens_sharding, rows)

    def val_batches(self) -> list[jax.Array]:
        """The fixed evaluation batches as sharded int32 arrays [1, B, T+1] (at most ``data.eval_batches``).

        Raises DataError when the val split holds fewer than one batch of windows.
        """
        cfg = self.plan.cfg
        batches = self.plan.dataset.val_batches(cfg.train.batch_size, cfg.model.seq_len, cfg.data.eval_batches)
        return [jax.make_array_from_callback((1, *b.shape), self.tokens_sharding, lambda index, b=b: b[None][index])
                for b in batches]

    def evaluate(self, params, val: list[jax.Array]) -> tuple[float, float | None, list[float]]:
        """Mean validation loss over every token of ``val`` (nats per token), its standard error, and the
        mean loss of each batch (for paired comparisons between runs evaluated on the same batches).

        The error is the spread of the per-batch means over sqrt(batches): neighbouring tokens of one
        text are not independent, so a per-token error would understate it. None with one batch.
        """
        # Every batch is dispatched before any result is fetched: one wait for the device, not one per batch.
        sums = jax.device_get([self.eval_step(params, b[0]) for b in val])
        losses = np.array([s for s, _ in sums], dtype=np.float64)
        counts = np.array([c for _, c in sums], dtype=np.float64)
        per_batch = losses / counts
        se = float(per_batch.std(ddof=1) / math.sqrt(len(per_batch))) if len(per_batch) > 1 else None
        return float(losses.sum() / counts.sum()), se, per_batch.tolist()


def _available_bytes(device) -> int | None:
    """Memory one device can still allocate: the accelerator's limit, or the host's available memory
    shared by its CPU devices. None where the platform does not say."""
    if device.platform == "cpu":
        try:
            with open("/proc/meminfo") as f:
                fields = dict(line.split(":", 1) for line in f)
            return int(fields["MemAvailable"].split()[0]) * 1024 // max(jax.local_device_count(), 1)
        except (OSError, KeyError, ValueError):
            return None
    try:
        stats = device.memory_stats() or {}
    except Exception:  # some backends do not implement it
        return None
    limit = stats.get("bytes_limit")
    return None if limit is None else limit - stats.get("bytes_in_use", 0)


def _human(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def state_bytes_per_device(abstract_state) -> int:
    """Bytes one device holds for parameters, optimizer state and one set of gradients (the
    gradients are shaped like the parameters). Activations come on top, so this is a lower bound."""
    def shard_bytes(a) -> int:
        return math.prod(a.sharding.shard_shape(a.shape)) * a.dtype.itemsize

    return (sum(shard_bytes(a) for a in jax.tree.leaves(abstract_state))
            + sum(shard_bytes(a) for a in jax.tree.leaves(abstract_state["params"])))


def memory_error(plan, needed: int, available: int | None) -> ConfigError:
    """The ConfigError (returned, not raised) for a state of ``needed`` bytes per device that does not fit
    in ``available`` bytes (None: the allocation failed); it names the remedies."""
    device = jax.devices()[0]
    have = f"{device.device_kind} has {_human(available)} available" if available is not None else \
        f"{device.device_kind} could not allocate it"
    return ConfigError(
        f"the model does not fit in memory: it needs at least {_human(needed)} ({needed:,} bytes) per device for "
        f"{plan.accounting.n_params:,} parameters, their gradients and AdamW state, before activations; {have}. "
        "Shrink the model (model.vocab_size, model.d_model, model.n_layer) or shard it (mesh.fsdp)")


def check_memory(plan, abstract_state) -> int:
    """Refuse, before anything is allocated, a state that cannot fit; returns the bytes it needs."""
    needed = state_bytes_per_device(abstract_state)
    available = _available_bytes(jax.devices()[0])
    if available is not None and needed > available:
        raise memory_error(plan, needed, available)
    return needed


def build(plan) -> Runtime:
    """Mesh, optimizer, shardings and jitted steps for ``plan``; nothing is allocated on the devices.

    Raises ConfigError when the mesh does not fit the visible devices, a microbatch
    (batch_size / grad_accum sequences) does not split evenly over them, or the parameters,
    gradients and AdamW state cannot fit in one device's memory.
    """
    cfg = plan.cfg
    mesh = sharding.make_mesh(cfg.mesh)
    micro = cfg.train.batch_size // cfg.train.grad_accum
    if micro % mesh.size:
        raise ConfigError(f"each microbatch ({micro} sequences) must split evenly over the {mesh.size} devices")
    lr_schedule = optim.schedule(cfg.optim, plan.total_steps)
    abstract_params = jax.eval_shape(lambda: model.init(cfg.model, jax.random.key(0)))
    tx = optim.make(cfg.optim, abstract_params)
    abstract_state = jax.eval_shape(lambda: step.init_state(cfg.model, tx, jax.random.key(0)))
    state_sharding = sharding.state_shardings(
        abstract_state, sharding.param_shardings(cfg.model, abstract_params, mesh), mesh)
    abstract_state = jax.tree.map(lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh),
                                  abstract_state, state_sharding)
    check_memory(plan, abstract_state)
    tokens_sharding = sharding.batch_sharding(mesh)
    return Runtime(
        plan=plan, mesh=mesh, tx=tx, lr_schedule=lr_schedule, abstract_state=abstract_state,
        state_sharding=state_sharding, tokens_sharding=tokens_sharding,
        train_step=step.make_train_step(cfg.model, tx, lr_schedule, cfg.seed, state_sharding, tokens_sharding),
        eval_step=step.make_eval_step(cfg.model),
    )
