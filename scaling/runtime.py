"""Everything one run compiles and feeds: mesh, optimizer, layouts, the jitted steps and the batches.

The training loop and the benchmarks build it the same way, so what a benchmark times is exactly
what `scaling train` runs.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding

from scaling import model, optim, sharding, step
from scaling.config import ConfigError


@dataclasses.dataclass
class Runtime:
    plan: Any  # train.Plan
    mesh: Mesh
    tx: optax.GradientTransformation
    lr_schedule: optax.Schedule
    abstract_state: Any  # ShapeDtypeStructs carrying their shardings (a restore target)
    state_sharding: Any
    tokens_sharding: NamedSharding
    train_step: Callable
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
        cfg = self.plan.cfg
        batches = self.plan.dataset.val_batches(cfg.train.batch_size, cfg.model.seq_len, cfg.data.eval_batches)
        return [jax.make_array_from_callback((1, *b.shape), self.tokens_sharding, lambda index, b=b: b[None][index])
                for b in batches]

    def evaluate(self, params, val: list[jax.Array]) -> float:
        sums = [self.eval_step(params, b[0]) for b in val]
        return float(sum(s for s, _ in sums) / sum(c for _, c in sums))


def build(plan) -> Runtime:
    cfg = plan.cfg
    mesh = sharding.make_mesh(cfg.mesh)
    micro = cfg.train.batch_size // cfg.train.grad_accum
    if micro % mesh.size:
        raise ConfigError(f"each microbatch ({micro} sequences) must split evenly over the {mesh.size} devices")
    lr_schedule = optim.schedule(cfg.optim, plan.total_steps)
    abstract_params = jax.eval_shape(lambda: model.init(cfg.model, jax.random.key(0)))
    tx = optim.make(cfg.optim, cfg.model, abstract_params, lr_schedule)
    abstract_state = jax.eval_shape(lambda: step.init_state(cfg.model, tx, jax.random.key(0)))
    state_sharding = sharding.state_shardings(
        abstract_state, sharding.param_shardings(cfg.model, abstract_params, mesh), mesh)
    abstract_state = jax.tree.map(lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh),
                                  abstract_state, state_sharding)
    tokens_sharding = sharding.batch_sharding(mesh)
    return Runtime(
        plan=plan, mesh=mesh, tx=tx, lr_schedule=lr_schedule, abstract_state=abstract_state,
        state_sharding=state_sharding, tokens_sharding=tokens_sharding,
        train_step=step.make_train_step(cfg.model, tx, lr_schedule, cfg.seed, state_sharding, tokens_sharding),
        eval_step=step.make_eval_step(cfg.model),
    )
