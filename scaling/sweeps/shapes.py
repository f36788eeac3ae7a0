"""The shape rule: a target parameter count becomes n_layer, d_model, n_head and d_ff.

Kaplan et al. 2020 found loss nearly flat over depth/width aspect ratios of about 20 to 200, so a
ladder may pick any reasonable shape; what matters is that the rule is written down and the
same for every rung. The rule:

1. Candidates are every (n_layer, d_model) with 1 <= n_layer <= ``max_layers``, d_model a multiple
   of both ``multiple`` and ``head_dim`` (or of ``n_head`` when the head count is fixed), and
   d_model / n_layer inside ``aspect_ratio``. n_head = d_model / head_dim, or the fixed ``n_head``; d_ff = ``ff_ratio`` * d_model rounded to ``multiple``, or the
   model's own default when ``ff_ratio`` is unset.
2. N is counted exactly (``scaling.accounting``) with everything else from the base model
   (vocabulary, sequence length, MLP kind, biases, tying), as total or non-embedding parameters,
   whichever the sweep says its targets mean.
3. Among the candidates within ``tolerance`` of the target (default 5%), the aspect ratio nearest
   ``prefer_aspect_ratio`` (default: the geometric middle of the range) wins, then the smaller
   miss. The fits use each run's real N, so a well-proportioned model a few percent off its target
   serves a ladder better than an exact count at an extreme shape.
4. When no candidate is within ``tolerance``, the closest one is used and the planner warns: small
   models on a 64-wide grid cannot hit every target.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from scaling import accounting
from scaling.config import ConfigError, ModelConfig
from scaling.typed_load import Range, checked, low_high

Count = Literal["total", "non_embedding"]  # which N a sweep's targets mean
_POSITIVE_INT, _POSITIVE = Range(1), Range(0.0, low_open=True)


@dataclasses.dataclass(frozen=True)
class ShapeRule:
    """How a target parameter count becomes a shape (the module docstring gives the rule)."""

    head_dim: int = checked(64, range=_POSITIVE_INT)
    """Width of every attention head; n_head = d_model / head_dim (unless ``n_head`` is set)."""
    n_head: int | None = checked(None, range=_POSITIVE_INT)
    """A fixed number of heads at every width (head width d_model / n_head, d_model a multiple of it),
    instead of a fixed head width. Tiny ladders use it: on a CPU a step of many 8-wide heads took
    1.3-1.7x as long as the same model with one or two heads (benchmarks/RESULTS.md)."""
    multiple: int = checked(64, range=_POSITIVE_INT)
    """d_model is a multiple of this (and of head_dim); so is d_ff when ff_ratio is set."""
    aspect_ratio: tuple[float, float] = checked((32.0, 256.0), range=_POSITIVE, check=low_high)
    """[low, high]: the d_model / n_layer ratios allowed."""
    prefer_aspect_ratio: float | None = checked(None, range=_POSITIVE)
    """The ratio preferred among close candidates; None: the geometric middle of aspect_ratio."""
    ff_ratio: float | None = checked(None, range=_POSITIVE)
    """d_ff / d_model, rounded to ``multiple``; None: the model's own default."""
    max_layers: int = checked(128, range=_POSITIVE_INT)
    """The deepest candidate."""
    tolerance: float = checked(0.05, range=_POSITIVE)
    """A candidate within this relative miss of the target counts as hitting it."""

    @property
    def preferred_aspect(self) -> float:
        """The aspect ratio that wins among candidates within ``tolerance``."""
        return self.prefer_aspect_ratio or math.sqrt(self.aspect_ratio[0] * self.aspect_ratio[1])

    @property
    def width_step(self) -> int:
        """d_model's step: a multiple of both ``multiple`` and ``head_dim`` (or ``n_head`` when fixed)."""
        return math.lcm(self.multiple, self.n_head or self.head_dim)

    def heads(self, d_model: int) -> int:
        """The number of heads at width ``d_model``."""
        return self.n_head or d_model // self.head_dim


@dataclasses.dataclass(frozen=True)
class Shape:
    """The shape the rule chose for one target: its dimensions and its real parameter count."""

    n_layer: int
    d_model: int
    n_head: int
    d_ff: int
    n: int  # the parameter count of the sweep's kind
    target: float

    @property
    def miss(self) -> float:
        """Relative miss of the target: n / target - 1 (+0.03 is 3% above)."""
        return self.n / self.target - 1.0

    def model_overrides(self) -> dict:
        """The ``model.*`` config values that give this shape."""
        # The preset is cleared so config.yaml never names a preset the shape no longer matches.
        return {"preset": None, "n_layer": self.n_layer, "d_model": self.d_model, "n_head": self.n_head,
                "d_head": None, "d_ff": self.d_ff}


def describe(model: ModelConfig) -> str:
    """A model's shape in one short word: ``4x256 h4 ff1024`` (layers x width, heads, MLP width)."""
    return f"{model.n_layer}x{model.d_model} h{model.n_head} ff{model.ff_dim}"


def count_params(model: ModelConfig, count: str) -> int:
    """The model's parameter count N of the kind ``count`` names: ``total`` or ``non_embedding``."""
    acct = accounting.count(model)
    return acct.n_params if count == "total" else acct.n_params_non_embedding


def _build(rule: ShapeRule, base: ModelConfig, n_layer: int, d_model: int) -> ModelConfig:
    if rule.ff_ratio is None:
        d_ff = dataclasses.replace(base, d_model=d_model, d_ff=None).ff_dim
    else:
        d_ff = max(rule.multiple, round(rule.ff_ratio * d_model / rule.multiple) * rule.multiple)
    return dataclasses.replace(base, preset=None, n_layer=n_layer, d_model=d_model,
                               n_head=rule.heads(d_model), d_head=None, d_ff=d_ff)


def _nearest_widths(rule: ShapeRule, base: ModelConfig, n_layer: int, target: float, count: str) -> list[int]:
    """The widths just below and just above the target for this depth (N grows with d_model)."""
    step = rule.width_step
    low, high = rule.aspect_ratio
    k_min, k_max = max(1, math.ceil(low * n_layer / step)), math.floor(high * n_layer / step)
    if k_min > k_max:
        return []
    lo, hi = k_min, k_max
    while lo < hi:  # smallest k whose model reaches the target
        mid = (lo + hi) // 2
        if count_params(_build(rule, base, n_layer, mid * step), count) >= target:
            hi = mid
        else:
            lo = mid + 1
    return [k * step for k in {max(lo - 1, k_min), lo}]


def fit(rule: ShapeRule, base: ModelConfig, target: float, count: str) -> Shape:
    """The rule's shape for ``target`` parameters; ``base`` must have its vocabulary set.

    ``count`` is "total" or "non_embedding" (what the target means). Raises ConfigError when no
    candidate satisfies the aspect-ratio range within ``max_layers`` layers.
    """
    candidates = []
    for n_layer in range(1, rule.max_layers + 1):
        for d_model in _nearest_widths(rule, base, n_layer, target, count):
            model = _build(rule, base, n_layer, d_model)
            n = count_params(model, count)
            candidates.append((abs(math.log(n / target)), n_layer, d_model, model.ff_dim, n))
    if not candidates:
        raise ConfigError(f"shape: no shape satisfies aspect_ratio {rule.aspect_ratio} with widths in steps of "
                          f"{rule.width_step} and at most {rule.max_layers} layers")
    close = [c for c in candidates if c[0] <= math.log1p(rule.tolerance)] or [min(candidates)]
    prefer = math.log(rule.preferred_aspect)
    _, n_layer, d_model, d_ff, n = min(close, key=lambda c: (abs(math.log(c[2] / c[1]) - prefer), c[0]))
    return Shape(n_layer, d_model, rule.heads(d_model), d_ff, n, target)
