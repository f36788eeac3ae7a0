"""The jitted train and eval steps: pure functions of (state, batch).

Gradient accumulation is token-weighted: each microbatch contributes the *sum* of its per-token
losses and gradients, and the total is divided once by the number of target tokens, so the update
equals the one a single big batch would give however the batch is split.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from analysis import run_format as rf
from scaling import model, optim
from scaling.config import ModelConfig

TrainState = dict[str, Any]  # {"params", "opt_state", "step"}: a plain pytree orbax saves as is


def init_state(model_cfg: ModelConfig, tx: optax.GradientTransformation, key: jax.Array) -> TrainState:
    """Step-0 state: parameters drawn from PRNG ``key``, ``tx``'s fresh optimizer state, step 0 (int32)."""
    params = model.init(model_cfg, key)
    return {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32)}


def nll_sum(model_cfg: ModelConfig, params, tokens_BT1: jax.Array, dropout_key=None) -> tuple[jax.Array, jax.Array]:
    """Summed next-token negative log-likelihood in nats (float32) and the number of predicted tokens.

    ``tokens_BT1`` is int [B, T+1]: inputs ``[:, :-1]``, targets ``[:, 1:]``; the count is B x T
    (float32). Their ratio is the mean loss in nats/token.
    """
    logits_BTV = model.apply(model_cfg, params, tokens_BT1[:, :-1], dropout_key)
    targets_BT = tokens_BT1[:, 1:]
    logz_BT = jax.nn.logsumexp(logits_BTV, axis=-1)
    target_logit_BT = jnp.take_along_axis(logits_BTV, targets_BT[..., None], axis=-1)[..., 0]
    return jnp.sum(logz_BT - target_logit_BT), jnp.asarray(targets_BT.size, jnp.float32)


def _global_norm(tree) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


class TrainStep:
    """``train_step(state, tokens_ABT1) -> (state, metrics)``: the jitted step with its schedule's numbers
    passed as arguments (``optim.Schedule.args``); ``lower`` as on a jitted function, for benchmarks."""

    def __init__(self, jitted, lr_schedule: optim.Schedule):
        self.jitted, self.lr_args = jitted, lr_schedule.args

    def __call__(self, state: TrainState, tokens_ABT1: jax.Array):
        return self.jitted(state, tokens_ABT1, self.lr_args)

    def lower(self, state: TrainState, tokens_ABT1: jax.Array):
        """The lowered step for these arguments (``.compile()``, ``.as_text()``), as ``jax.jit(...).lower``."""
        return self.jitted.lower(state, tokens_ABT1, self.lr_args)


def make_train_step(model_cfg: ModelConfig, tx: optax.GradientTransformation, lr_schedule: optim.Schedule,
                    seed: int, state_sharding=None, tokens_sharding=None) -> TrainStep:
    """train_step(state, tokens_ABT1) -> (state, metrics); A = microbatches per optimizer step.

    ``tx`` is ``optim.make``'s unit-rate transformation; the update is scaled here by the schedule's
    rate at ``state["step"]``, from numbers passed in at every call, so one compiled step serves runs of
    any length and peak rate. ``tokens_ABT1`` is int [A, B/A, T+1]; the update uses the token-mean
    gradient over all A microbatches (see the module docstring). ``metrics``: ``train_loss``
    (nats/token, before the update), ``grad_norm`` (global L2 norm of that gradient, before clipping)
    and ``lr`` (the rate this update used). Dropout keys derive from ``seed`` and the step, so a
    resumed run draws the same masks. The state argument is donated. With shardings given, the state
    keeps its layout across steps and metrics come back replicated.
    """
    use_dropout = model_cfg.dropout > 0
    grad_fn = jax.value_and_grad(lambda p, t, k: nll_sum(model_cfg, p, t, k), has_aux=True)

    def train_step(state: TrainState, tokens_ABT1: jax.Array, lr_args: dict[str, jax.Array]):
        params = state["params"]
        step_key = jax.random.fold_in(jax.random.key(seed), state["step"])

        def micro(carry, xs):
            loss_acc, count_acc, grads_acc = carry
            index, tokens_BT1 = xs
            key = jax.random.fold_in(step_key, index) if use_dropout else None
            (loss, count), grads = grad_fn(params, tokens_BT1, key)
            return (loss_acc + loss, count_acc + count, jax.tree.map(jnp.add, grads_acc, grads)), None

        zeros = jax.tree.map(jnp.zeros_like, params)
        n_micro = tokens_ABT1.shape[0]
        if n_micro == 1:
            (loss_sum, count, grads_sum), _ = micro((0.0, 0.0, zeros), (0, tokens_ABT1[0]))
        else:
            (loss_sum, count, grads_sum), _ = jax.lax.scan(micro, (0.0, 0.0, zeros), (jnp.arange(n_micro), tokens_ABT1))
        grads = jax.tree.map(lambda g: g / count, grads_sum)
        direction, opt_state = tx.update(grads, state["opt_state"], params)
        # The rate of this update: the schedule at the optimizer's update count, which is state["step"].
        lr = lr_schedule.rate_from(lr_args, state["step"])
        updates = jax.tree.map(lambda u: lr.astype(u.dtype) * u, direction)
        new_state = {"params": optax.apply_updates(params, updates), "opt_state": opt_state, "step": state["step"] + 1}
        metrics = {rf.TRAIN_LOSS: loss_sum / count, rf.GRAD_NORM: _global_norm(grads), rf.LR: lr}
        return new_state, metrics

    if state_sharding is None:
        return TrainStep(jax.jit(train_step, donate_argnums=(0,)), lr_schedule)
    replicated = jax.sharding.NamedSharding(tokens_sharding.mesh, jax.sharding.PartitionSpec())
    jitted = jax.jit(train_step, donate_argnums=(0,), in_shardings=(state_sharding, tokens_sharding, replicated),
                     out_shardings=(state_sharding, replicated))
    return TrainStep(jitted, lr_schedule)


def make_eval_step(model_cfg: ModelConfig):
    """eval_step(params, tokens_BT1) -> (summed loss in nats, token count); compiled once per run.

    ``tokens_BT1`` is int [B, T+1]; dropout is off.
    """
    return jax.jit(lambda params, tokens_BT1: nll_sum(model_cfg, params, tokens_BT1))
