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
from analysis.errors import FitError
from analysis.verdict import UNIDENTIFIED, bootstrap_health, interval_is_usable, status_of


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
    diagnostics: list[dict] = field(default_factory=list)

    @property
    def status(self) -> str:
        """``ok``, ``warning`` or ``unidentified``: the worst of ``diagnostics`` (see ``analysis.verdict``)."""
        return status_of(self.diagnostics)

    def flag(self, diagnostics) -> None:
        """Add diagnostics, skipping any whose code is already present."""
        have = {d["code"] for d in self.diagnostics}
        self.diagnostics.extend(d for d in diagnostics if d["code"] not in have)

    def check_bootstrap(self, fitted: tuple | None = None) -> None:
        """Add the bootstrap-health diagnostics of ``analysis.verdict`` for this fit's samples."""
        self.flag(bootstrap_health(self.params, self.samples, self.level, fitted=fitted))

    @property
    def resamples(self) -> int:
        """Bootstrap resamples drawn (usable or not; see ``usable_resamples``); 0 without a bootstrap."""
        return len(next(iter(self.samples.values()))) if self.samples else 0

    @property
    def usable_resamples(self) -> int:
        """Resamples whose every parameter is finite: the ones the intervals are built from."""
        if not self.samples:
            return 0
        return int(np.all(np.isfinite(np.stack([np.asarray(v, dtype=np.float64)
                                                 for v in self.samples.values()])), axis=0).sum())

    @property
    def intervals(self) -> dict[str, list[float]]:
        """Percentile intervals; [nan, nan] where too few resamples were usable or the width is zero."""
        return {k: interval(v, self.level) if interval_is_usable(v, self.level) else [math.nan, math.nan]
                for k, v in self.samples.items()}

    def to_json(self) -> dict:
        """The fit as a JSON-ready dict (one entry of fits.json): law, formula, n_kind, verdict and
        diagnostics, params and intervals, the bootstrap samples, data, residuals, notes,
        convergence and extra. Non-finite floats stay NaN/inf here: pass it through ``to_jsonable``
        for strict JSON. ``from_json`` reads it back."""
        return {
            "law": self.law, "formula": self.formula, "n_kind": self.n_kind,
            "status": self.status, "diagnostics": self.diagnostics,
            "usable_resamples": self.usable_resamples,
            "params": self.params, "intervals": self.intervals, "level": self.level,
            "bootstrap": {"resamples": self.resamples, "seed": self.seed,
                          "samples": {k: np.asarray(v).tolist() for k, v in self.samples.items()}},
            "data": self.data, "residuals": self.residuals, "notes": self.notes,
            "convergence": self.convergence, "extra": self.extra,
        }

    @classmethod
    def from_json(cls, obj: dict) -> FitResult:
        """The inverse of ``to_json``; a FitError (never a KeyError) says what is missing or inconsistent."""
        if not isinstance(obj, dict):
            raise FitError("entry is not a JSON object")
        missing = [k for k in ("law", "params", "status", "diagnostics") if k not in obj]
        if missing:
            raise FitError(f"entry lacks {', '.join(missing)} (written by an older version? re-run the fit)")
        try:
            boot = obj.get("bootstrap") or {}
            samples = {k: np.array([_number(s) for s in v], dtype=np.float64)
                       for k, v in (boot.get("samples") or {}).items()}
            fit = cls(law=str(obj["law"]), formula=obj.get("formula", ""),
                      params={k: _number(v) for k, v in obj["params"].items()}, samples=samples,
                      level=float(obj.get("level", 0.95)), seed=int(boot.get("seed", 0)),
                      data=dict(obj.get("data") or {}), residuals=list(obj.get("residuals") or []),
                      n_kind=obj.get("n_kind", ""), notes=list(obj.get("notes") or []),
                      convergence=obj.get("convergence"), extra=dict(obj.get("extra") or {}),
                      diagnostics=[dict(code=str(d["code"]), message=str(d["message"]),
                                        severity=str(d.get("severity", "warning"))) for d in obj["diagnostics"]])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise FitError(f"entry is malformed ({type(exc).__name__}: {exc})") from None
        if len({len(v) for v in samples.values()}) > 1:
            raise FitError("entry's bootstrap samples differ in length between parameters")
        if set(samples) - set(fit.params):
            raise FitError("entry has bootstrap samples for parameters it does not list")
        if fit.status != obj["status"]:
            raise FitError(f"entry says status {obj['status']!r} but its diagnostics give {fit.status!r}")
        return fit

    @property
    def usable(self) -> bool:
        """False for unidentified fits: kept for inspection, not to be used as results."""
        return self.status != UNIDENTIFIED


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
