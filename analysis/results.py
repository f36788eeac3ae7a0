"""The result object every fit returns, and its JSON form.

One shape for every law means ``fits.json``, the report table, ``scaling fit
--json`` and ``scaling predict`` all read fits the same way.  Bootstrap
samples travel with the result so that intervals for quantities nobody asked
for at fit time (say N_opt at a new compute budget) can still be computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from analysis.bootstrap import interval


@dataclass
class FitResult:
    """A fitted law: point estimates, bootstrap samples and intervals, and the data behind it.

    ``params`` holds both the fitted parameters and scalars derived from them
    (e.g. Chinchilla's a and b); ``samples`` has one bootstrap array per entry.
    ``n_kind`` says which parameter count was used ("non_embedding" for the
    Kaplan laws, "total" for Chinchilla), because the two differ most exactly
    where small sweeps live.
    """

    law: str
    formula: str
    params: dict[str, float]
    samples: dict[str, np.ndarray]
    level: float
    seed: int
    data: dict[str, list]
    residuals: list[float]
    n_kind: str
    notes: list[str] = field(default_factory=list)
    convergence: dict | None = None
    extra: dict = field(default_factory=dict)

    @property
    def resamples(self) -> int:
        return len(next(iter(self.samples.values()))) if self.samples else 0

    @property
    def intervals(self) -> dict[str, list[float]]:
        return {k: interval(v, self.level) for k, v in self.samples.items()}

    def flat(self) -> dict:
        """``{name: value, name_ci: [lo, hi]}`` for every parameter: the ``scaling fit --json`` shape."""
        out: dict = {"law": self.law, "formula": self.formula, "n_kind": self.n_kind}
        cis = self.intervals
        for k, v in self.params.items():
            out[k] = v
            out[f"{k}_ci"] = cis.get(k, [math.nan, math.nan])
        out.update(level=self.level, resamples=self.resamples, n_points=len(self.residuals),
                   notes=self.notes)
        if self.convergence is not None:
            out["convergence"] = self.convergence
        return out

    def to_json(self) -> dict:
        return {
            "law": self.law, "formula": self.formula, "n_kind": self.n_kind,
            "params": self.params, "intervals": self.intervals, "level": self.level,
            "bootstrap": {"resamples": self.resamples, "seed": self.seed,
                          "samples": {k: np.asarray(v).tolist() for k, v in self.samples.items()}},
            "data": self.data, "residuals": self.residuals, "notes": self.notes,
            "convergence": self.convergence, "extra": self.extra,
        }

    @classmethod
    def from_json(cls, obj: dict) -> FitResult:
        boot = obj.get("bootstrap", {})
        return cls(law=obj["law"], formula=obj.get("formula", ""),
                   params={k: _number(v) for k, v in obj["params"].items()},
                   samples={k: np.array([_number(s) for s in v], dtype=np.float64)
                            for k, v in boot.get("samples", {}).items()},
                   level=float(obj.get("level", 0.95)), seed=int(boot.get("seed", 0)),
                   data=obj.get("data", {}), residuals=list(obj.get("residuals", [])),
                   n_kind=obj.get("n_kind", ""), notes=list(obj.get("notes", [])),
                   convergence=obj.get("convergence"), extra=obj.get("extra", {}))


def to_jsonable(value):
    """NaN and infinities become None so the output is strict JSON that any reader accepts."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _number(value) -> float:
    """JSON null (how NaN is written) back to NaN."""
    return math.nan if value is None else float(value)
