"""The optimizer: optax AdamW with a weight-decay mask, global-norm clipping and the three schedules.

Schedules are functions of the optimizer step, so a resumed run gets the same learning rate at
the same step by construction, and the train step reports the rate by evaluating the same function.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import optax

from scaling.config import OptimConfig


def warmup_steps(cfg: OptimConfig, total_steps: int) -> int:
    """``warmup_steps`` if set, else ``warmup_fraction`` of the run, leaving at least one update after it."""
    if cfg.warmup_steps:
        return cfg.warmup_steps
    return min(int(round(cfg.warmup_fraction * total_steps)), max(total_steps - 1, 0))


def decay_steps(cfg: OptimConfig, total_steps: int) -> int:
    """How many of the run's updates decay the rate: all after warmup (cosine), the last
    ``round(cooldown_fraction * T)`` and at least one when the fraction is not 0 (wsd, never
    overlapping the warmup), none (constant)."""
    after_warmup = total_steps - min(warmup_steps(cfg, total_steps), total_steps)
    if cfg.schedule == "cosine":
        return after_warmup
    if cfg.schedule == "wsd" and cfg.cooldown_fraction > 0:
        return min(max(int(round(cfg.cooldown_fraction * total_steps)), 1), after_warmup)
    return 0


def _weight(shape: str, frac):
    """Share of (peak - floor) left at cooldown progress ``frac`` in [0, 1]: linear, cosine or
    1-sqrt (Hägele et al. 2024, section 3)."""
    if shape == "linear":
        return 1.0 - frac
    if shape == "cosine":
        return 0.5 * (1.0 + jnp.cos(math.pi * frac))
    return 1.0 - jnp.sqrt(frac)


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The learning rate of update k, for k = 0 .. total_steps - 1 (optax's update count).

    Update k is the (k+1)-th of T = ``total``; its rate is the schedule at the end of it:
    - warmup over the first W = ``warmup`` updates: ``peak * (k+1) / W``, so the first update moves
      (rate peak/W) and update W-1 reaches the peak;
    - decay over the last D = ``decay`` updates: ``floor + (peak - floor) * w((k+1 - (T-D)) / D)``
      with the cooldown shape ``w`` (``_weight``), so update T-1 uses exactly the floor and the first
      decayed update is already below the peak;
    - the peak in between. ``constant`` never decays (min_lr_ratio does not apply to it).
    A resumed run evaluates the same function at the same k, so its rates match an unbroken run's.

    ``shape`` is static; the numbers are ``args``, which the train step takes as arguments rather than
    compiling them in, so runs of one model shape share one compiled step whatever their length and
    peak rate (an IsoFLOP grid trains each shape at several lengths).

    ``wsd`` is warmup-stable-decay (Hägele et al. 2024); ``cosine`` is the half-cosine decay of
    Loshchilov & Hutter 2017 (SGDR) without restarts.
    """

    shape: str  # "cosine", "linear" or "1-sqrt": how the decay falls
    total: int
    warmup: int
    decay: int
    peak: float
    floor: float

    @property
    def args(self) -> dict[str, jax.Array]:
        """The numbers as arrays: int32 step counts, float32 rates."""
        ints = {k: jnp.asarray(getattr(self, k), jnp.int32) for k in ("total", "warmup", "decay")}
        return {**ints, "peak": jnp.asarray(self.peak, jnp.float32), "floor": jnp.asarray(self.floor, jnp.float32)}

    def rate_from(self, args: dict[str, jax.Array], k) -> jax.Array:
        """The rate of update ``k`` (int array of any shape) with the numbers in ``args`` (traced or not)."""
        u = jnp.asarray(k, jnp.int32) + 1  # updates done once this one is applied; integer, so exact
        T, W, D, peak, floor = (args[name] for name in ("total", "warmup", "decay", "peak", "floor"))
        lr = jnp.broadcast_to(peak, u.shape)
        lr = jnp.where(u <= W, peak * u.astype(jnp.float32) / jnp.maximum(W, 1).astype(jnp.float32), lr)
        frac = jnp.clip((u - (T - D)).astype(jnp.float32) / jnp.maximum(D, 1).astype(jnp.float32), 0.0, 1.0)
        return jnp.where((D > 0) & (u > T - D), floor + (peak - floor) * _weight(self.shape, frac), lr)

    def __call__(self, k) -> jax.Array:
        return self.rate_from(self.args, k)


def schedule(cfg: OptimConfig, total_steps: int) -> Schedule:
    """The run's learning-rate schedule over ``total_steps`` updates (see ``Schedule``)."""
    W = min(warmup_steps(cfg, total_steps), total_steps)
    return Schedule(shape="cosine" if cfg.schedule == "cosine" else cfg.cooldown_shape, total=total_steps,
                    warmup=W, decay=decay_steps(cfg, total_steps), peak=cfg.lr, floor=cfg.lr * cfg.min_lr_ratio)


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


def make(cfg: OptimConfig, params) -> optax.GradientTransformation:
    """AdamW's update direction (decoupled weight decay, Loshchilov & Hutter 2019) behind optional
    global-norm clipping, at unit rate: the train step multiplies it by its ``Schedule``'s rate.

    ``params``: the parameter tree (arrays or ShapeDtypeStructs), for the weight-decay mask. The rate
    is a schedule that always returns 1 rather than a plain 1.0 so that optax keeps its update
    counter in the state, which earlier checkpoints hold. Update = -rate * (adam + wd * param), which
    is exactly what ``optax.adamw`` with the schedule computes.
    """
    parts = []
    if cfg.grad_clip > 0:
        parts.append(optax.clip_by_global_norm(cfg.grad_clip))
    parts.append(optax.adamw(lambda count: 1.0, b1=cfg.beta1, b2=cfg.beta2, eps=cfg.eps,
                             weight_decay=cfg.weight_decay, mask=decay_mask(params, cfg)))
    return optax.chain(*parts)
