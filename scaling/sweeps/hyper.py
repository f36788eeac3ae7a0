"""Hyperparameters as functions of the parameter count N, written as data.

A sweep file may come from anywhere, so a rule like "learning rate falls as N^-0.33" is a small
declarative mapping (parsed and checked by ``spec``), never a string that is evaluated:

    optim.lr: {power_law: {coef: 3.0e-3, ref: 1.0e8, exponent: -0.33}, min: 1.0e-4}
    train.batch_size: {power_law: {coef: 256, ref: 1.0e8, exponent: 0.25}, multiple_of: 8}

``min``/``max`` clamp; ``multiple_of`` rounds to the nearest multiple inside them (at least one
multiple), which integer settings such as the batch size need.
"""

from __future__ import annotations

import dataclasses
import math

FORMS = ("power_law",)
LIMITS = ("min", "max", "multiple_of")


@dataclasses.dataclass(frozen=True)
class PowerLaw:
    """coef * (N / ref) ** exponent, the form OLMo-style ladders use for learning rate and batch size."""

    coef: float
    ref: float
    exponent: float
    minimum: float | None = None
    maximum: float | None = None
    multiple_of: float | None = None

    def __call__(self, n: float) -> float | int:
        value = self.coef * (n / self.ref) ** self.exponent
        if self.minimum is not None:
            value = max(value, self.minimum)
        if self.maximum is not None:
            value = min(value, self.maximum)
        if self.multiple_of is None:
            return value
        m = self.multiple_of
        k = round(value / m)
        if self.maximum is not None:
            k = min(k, math.floor(self.maximum / m))
        if self.minimum is not None:
            k = max(k, math.ceil(self.minimum / m))
        value = max(k, 1) * m
        return int(value) if float(value).is_integer() else value
