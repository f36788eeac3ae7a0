"""Hyperparameters as functions of the parameter count N, written as data.

A sweep file may come from anywhere, so a rule like "learning rate falls as N^-0.33" is a small
declarative mapping (loaded and checked by ``scaling.typed_load``), never a string that is evaluated:

    optim.lr: {power_law: {coef: 3.0e-3, ref: 1.0e8, exponent: -0.33}, min: 1.0e-4}
    train.batch_size: {power_law: {coef: 256, ref: 1.0e8, exponent: 0.25}, multiple_of: 8}

``min``/``max`` clamp; ``multiple_of`` rounds to the nearest multiple inside them (at least one
multiple), which integer settings such as the batch size need.
"""

from __future__ import annotations

import dataclasses
import math

from scaling.typed_load import Invalid, Range, checked

_POSITIVE = Range(0.0, low_open=True)


@dataclasses.dataclass(frozen=True)
class PowerLaw:
    """``coef * (N / ref) ** exponent``, the form OLMo-style ladders use for learning rate and batch size."""

    coef: float = checked(range=_POSITIVE)
    """The value at N = ref."""
    ref: float = checked(range=_POSITIVE)
    """The reference parameter count."""
    exponent: float = checked(range=Range())
    """How fast the value changes with N: negative falls, positive grows."""

    def __call__(self, n: float) -> float:
        """The law at ``n`` parameters."""
        return self.coef * (n / self.ref) ** self.exponent


@dataclasses.dataclass(frozen=True, kw_only=True)
class Rule:
    """One hyperparameter as a function of N: a power law, clamped, then rounded to a multiple."""

    power_law: PowerLaw
    """The law before clamping and rounding."""
    min: float | None = checked(None, range=_POSITIVE)
    """The smallest value the rule gives; None: no lower clamp."""
    max: float | None = checked(None, range=_POSITIVE)
    """The largest value the rule gives; None: no upper clamp."""
    multiple_of: float | None = checked(None, range=_POSITIVE)
    """Round to the nearest multiple of this inside [min, max] (at least one multiple); an integer
    result is returned as an int."""

    def __post_init__(self) -> None:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise Invalid(f"min={self.min:g} is above max={self.max:g}")

    def __call__(self, n: float) -> float | int:
        """The setting for a model of ``n`` parameters (an int when ``multiple_of`` makes it whole)."""
        value = self.power_law(n)
        if self.min is not None:
            value = max(value, self.min)
        if self.max is not None:
            value = min(value, self.max)
        if self.multiple_of is None:
            return value
        m = self.multiple_of
        k = round(value / m)
        if self.max is not None:
            k = min(k, math.floor(self.max / m))
        if self.min is not None:
            k = max(k, math.ceil(self.min / m))
        value = max(k, 1) * m
        return int(value) if float(value).is_integer() else value
