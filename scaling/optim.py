"""The optimizer: optax AdamW with a weight-decay mask, global-norm clipping and the three schedules.

Schedules are functions of the optimizer step, so a resumed run gets the same learning rate at
the same step by construction, and the train step reports the rate by evaluating the same function.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from scaling import parameterization
from scaling.config import ModelConfig, OptimConfig


def warmup_steps(cfg: OptimConfig, total_steps: int) -> int:
    return cfg.warmup_steps if cfg.warmup_steps else int(round(cfg.warmup_fraction * total_steps))


def _cooldown(shape: str, peak: float, floor: float, steps: int) -> optax.Schedule:
    """Decay from peak to floor over ``steps``: linear, cosine, or 1-sqrt (Hägele et al. 2024)."""
    steps = max(steps, 1)

    def schedule(count):
        frac = jnp.clip(count / steps, 0.0, 1.0)
        if shape == "linear":
            weight = 1.0 - frac
        elif shape == "cosine":
            weight = 0.5 * (1.0 + jnp.cos(math.pi * frac))
        else:
            weight = 1.0 - jnp.sqrt(frac)
        return floor + (peak - floor) * weight

    return schedule


def schedule(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
    """Learning rate as a function of the optimizer step, for ``total_steps`` steps in all."""
    warm = min(warmup_steps(cfg, total_steps), total_steps)
    peak, floor = cfg.lr, cfg.lr * cfg.min_lr_ratio
    warmup = optax.linear_schedule(0.0, peak, warm) if warm else None
    rest = total_steps - warm
    if cfg.schedule == "constant":
        main = optax.constant_schedule(peak)
    elif cfg.schedule == "cosine":
        main = _cooldown("cosine", peak, floor, rest)
    else:
        decay = int(round(cfg.cooldown_fraction * total_steps))
        stable = max(rest - decay, 0)
        main = optax.join_schedules(
            [optax.constant_schedule(peak), _cooldown(cfg.cooldown_shape, peak, floor, decay)], [stable]
        )
    if warmup is None:
        return main
    return optax.join_schedules([warmup, main], [warm])


def _path_names(path) -> tuple[str, ...]:
    return tuple(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def decay_mask(params, cfg: OptimConfig):
    """True where weight decay applies: matrices always; embeddings, norms and biases only if asked."""

    def decays(path, leaf) -> bool:
        names = _path_names(path)
        if names[0] in ("embed", "pos_embed"):
            return cfg.decay_embeddings
        if names[-1] == "bias" or leaf.ndim <= 1 or any(n.startswith("norm") for n in names):
            return cfg.decay_norms_and_biases
        return True

    return jax.tree_util.tree_map_with_path(decays, params)


def lr_multipliers(params, model_cfg: ModelConfig):
    p = parameterization.make(model_cfg)
    return jax.tree_util.tree_map_with_path(lambda path, _: p.lr_multiplier(_path_names(path)), params)


def make(cfg: OptimConfig, model_cfg: ModelConfig, params, lr_schedule: optax.Schedule) -> optax.GradientTransformation:
    multipliers = lr_multipliers(params, model_cfg)
    uniform = all(m == 1.0 for m in jax.tree.leaves(multipliers))

    parts = []
    if cfg.grad_clip > 0:
        parts.append(optax.clip_by_global_norm(cfg.grad_clip))
    parts.append(optax.adamw(lr_schedule, b1=cfg.beta1, b2=cfg.beta2, eps=cfg.eps,
                             weight_decay=cfg.weight_decay, mask=decay_mask(params, cfg)))
    if not uniform:
        parts.append(_scale_by_tree(multipliers))
    return optax.chain(*parts)


def _scale_by_tree(factors) -> optax.GradientTransformation:
    """Multiply each parameter's update by its own factor (per-layer learning rates)."""

    def update(updates, state, params=None):
        del params
        return jax.tree.map(lambda u, f: u * f, updates, factors), state

    return optax.GradientTransformation(lambda _: optax.EmptyState(), update)
