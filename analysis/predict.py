"""Predictions from fitted laws, each with a bootstrap interval, how far it extrapolates, and refusals.

Every prediction is computed once from the point estimate and once per stored
bootstrap sample; the interval is the percentile range of the latter.  That is
why fits keep their samples: an interval at a compute budget nobody asked for
at fit time is still exact with respect to the bootstrap.

A prediction is only as good as the fit and the distance from the data, so
each answer says how far the query lies beyond the fitted range (a factor in
C, N and D); fits whose verdict is ``unidentified`` are refused unless forced,
and fits whose parameters are non-finite or non-physical (negative exponents,
E < 0) are always refused.  Published ladders predict 10-100x beyond their
largest run within about 1-3% of loss (Gadre et al. 2024; Bhagia et al. 2024),
hence the default warning above 10x.
"""

from __future__ import annotations

import math

import numpy as np

from analysis import chinchilla, kaplan
from analysis.bootstrap import interval
from analysis.errors import FitError
from analysis.results import FitResult

OPTIMUM_LAWS = ("approach1", "isoflop", "isoflop_optima")
LOSS_AT_SIZE = {"chinchilla": chinchilla.loss, "kaplan_nd": kaplan.nd_loss}  # laws that give L(N, D)
DEFAULT_MAX_EXTRAPOLATION = 10.0
_EXPONENTS = ("alpha", "beta", "a", "b", "alpha_N", "alpha_D", "alpha_C")


def intervals_withheld(fit: FitResult) -> bool:
    """Whether the fit withheld its intervals (too few usable resamples): then no prediction gets one either."""
    return any(not np.all(np.isfinite(ci)) for ci in fit.intervals.values())


def _with_interval(fit: FitResult, fn) -> dict:
    """``{name: {"value", "ci"}}``; no interval where the fit's own intervals were withheld (too few resamples)."""
    point = fn({k: np.float64(v) for k, v in fit.params.items()})
    boot = fn(fit.samples) if fit.samples and not intervals_withheld(fit) else {}
    return {k: {"value": float(v), "ci": interval(boot[k], fit.level) if k in boot else [math.nan, math.nan]}
            for k, v in point.items()}


def _power_law_optimum(p: dict, C) -> dict:
    with np.errstate(over="ignore", invalid="ignore"):
        n = p["N_coef"] * np.power(C, p["a"])
        d = p["D_coef"] * np.power(C, p["b"])
        return {"N_opt": n, "D_opt": d, "tokens_per_param": d / n}


def _positive(**values) -> None:
    bad = {k: v for k, v in values.items() if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0)}
    if bad:
        raise FitError("the query must be finite and positive: " + ", ".join(f"{k} = {v}" for k, v in bad.items()))


def at_compute(fit: FitResult, C: float) -> dict:
    """Compute-optimal N, D, tokens per parameter (and loss, where the law gives one) at compute C (FLOPs)."""
    _positive(compute=C)
    if fit.law == "chinchilla":
        flops = fit.extra.get("flop_model")
        return _with_interval(fit, lambda p: chinchilla.compute_optimal(p, C, flops))
    if fit.law in OPTIMUM_LAWS:
        return _with_interval(fit, lambda p: _power_law_optimum(p, C))
    if fit.law == "kaplan_compute":
        return _with_interval(fit, lambda p: {"loss": np.power(p["C_c"] / C, p["alpha_C"])})
    raise FitError(f"a {fit.law} fit does not say anything about compute-optimal allocation")


def at_size(fit: FitResult, N: float, D: float) -> dict:
    """Predicted loss at (N, D) from a two-variable law."""
    _positive(N=N, D=D)
    if fit.law not in LOSS_AT_SIZE:
        raise FitError(f"a {fit.law} fit does not predict loss at given (N, D)")
    return _with_interval(fit, lambda p: {"loss": LOSS_AT_SIZE[fit.law](p, N, D)})


def unphysical(fit: FitResult) -> str | None:
    """Why a fit's parameters cannot describe a loss curve (non-finite, a negative exponent, E < 0), or None."""
    bad = [k for k, v in fit.params.items() if not math.isfinite(v)]
    if bad:
        return f"its parameters {', '.join(bad)} are not finite numbers"
    neg = [f"{k} = {v:.3g}" for k, v in fit.params.items() if k in _EXPONENTS and v <= 0]
    if neg:
        return f"its exponents must be positive ({', '.join(neg)})"
    if "E" in fit.params and fit.params["E"] < 0:
        return f"its irreducible loss E = {fit.params['E']:.3g} is negative"
    return None


def fitted_range(fit: FitResult) -> dict:
    """``{"C"|"N"|"D": [lowest, highest]}`` of the data a fit saw (C in the law's own FLOP count)."""
    data = {k: np.asarray(v, dtype=np.float64) for k, v in fit.data.items() if k in ("N", "D", "C", "budget",
                                                                                      "N_opt", "D_opt")}
    out = {}
    for key, columns in (("N", ("N", "N_opt")), ("D", ("D", "D_opt")), ("C", ("C", "budget"))):
        column = next((c for c in columns if c in data), None)
        if column is not None:
            out[key] = data[column]
    if "C" not in out and "N" in data and "D" in data:
        flops = fit.extra.get("flop_model")
        per_token = chinchilla.flops_per_token_at(flops, data["N"]) if flops else 6.0 * data["N"]
        out["C"] = per_token * data["D"]
    return {k: [float(v.min()), float(v.max())] for k, v in out.items() if v.size}


def distance(value: float, span: list[float]) -> float:
    """How many times beyond [lo, hi] a value lies (1.0 inside; e.g. 30.0 for 30x above hi or below lo)."""
    lo, hi = span
    return float(value / hi) if value > hi else float(lo / value) if value < lo else 1.0


def extrapolation(fit: FitResult, query: dict) -> dict:
    """For each of C, N, D in ``query`` (the asked-for or predicted values): the value, fitted range and factor."""
    span = fitted_range(fit)
    return {k: {"value": float(v), "fitted_range": span[k], "factor": distance(float(v), span[k])}
            for k, v in query.items() if k in span and math.isfinite(v) and v > 0}


def predict_fit(fit: FitResult, *, compute: float | None = None, n: float | None = None, d: float | None = None,
                max_extrapolation: float = DEFAULT_MAX_EXTRAPOLATION) -> dict | None:
    """One fit's answers, how far they extrapolate, and warnings; None if the law cannot answer."""
    row: dict = {}
    query: dict = {}
    if compute is not None and fit.law in ("chinchilla", "kaplan_compute", *OPTIMUM_LAWS):
        row.update(at_compute(fit, compute))
        query["C"] = compute
        query.update({k: row[f"{k}_opt"]["value"] for k in ("N", "D") if f"{k}_opt" in row})
    if n is not None and d is not None and fit.law in ("chinchilla", "kaplan_nd"):
        row["loss_at_N_D"] = at_size(fit, n, d)["loss"]
        flops = fit.extra.get("flop_model")
        query = {"N": n, "D": d, "C": (chinchilla.flops_per_token_at(flops, n) if flops else 6.0 * n) * d}
    if not row:
        return None
    ex = extrapolation(fit, query)
    warnings = [f"{k} = {v['value']:.3g} is {v['factor']:.3g}x beyond the fitted range "
                f"[{v['fitted_range'][0]:.3g}, {v['fitted_range'][1]:.3g}]; published scaling laws are checked to "
                f"about 10-100x at most, so treat this as a guess"
                for k, v in ex.items() if v["factor"] > max_extrapolation]
    if fit.status != "ok":
        warnings.insert(0, f"the fit's verdict is {fit.status}: "
                        + "; ".join(d["message"] for d in fit.diagnostics))
    out = {"law": fit.law, "n_kind": fit.n_kind, "level": fit.level, "status": fit.status, **row,
           "extrapolation": ex, "warnings": warnings}
    if fit.law == "chinchilla":
        out["allocation"] = chinchilla.allocation_rule(fit.extra)
    return out


def read_fits(doc) -> dict[str, FitResult]:
    """The fits of a fits document (``scaling analyze``'s fits.json or ``scaling fit --json``), validated."""
    entries = doc.get("fits") if isinstance(doc, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise FitError("the file has no 'fits' object; give fits.json from 'scaling analyze' or the output of "
                       "'scaling fit --json'")
    fits = {}
    for name, obj in entries.items():
        try:
            fits[name] = FitResult.from_json(obj)
        except FitError as exc:
            raise FitError(f"fits file entry {name!r}: {exc}") from None
    return fits


def from_fits_file(doc: dict, *, compute: float | None = None, n: float | None = None, d: float | None = None,
                   law: str | None = None, force: bool = False,
                   max_extrapolation: float = DEFAULT_MAX_EXTRAPOLATION) -> tuple[dict, list[str]]:
    """Everything ``scaling predict`` prints, and the fits it refused (one sentence each).

    Raises FitError when no fit can answer: none of the right law, or every
    candidate refused (the message gives the reasons).
    """
    if compute is not None:
        _positive(compute=compute)
    if n is not None or d is not None:
        _positive(N=n, D=d)
    fits = read_fits(doc)
    if law is not None:
        if law not in fits:
            raise FitError(f"the file has no fit named {law!r}; it has {', '.join(fits)}")
        fits = {law: fits[law]}
    out: dict = {}
    refused: list[str] = []
    for name, fit in fits.items():
        why = unphysical(fit)
        if why:
            refused.append(f"{name}: refused, {why}")
            continue
        if fit.status == "unidentified" and not force:
            reasons = "; ".join(d["message"] for d in fit.diagnostics if d["severity"] == "unidentified")
            refused.append(f"{name}: refused, the data do not identify it ({reasons}); --force to use it anyway")
            continue
        row = predict_fit(fit, compute=compute, n=n, d=d, max_extrapolation=max_extrapolation)
        if row is not None:
            out[name] = row
    if not out:
        if refused:
            raise FitError(" | ".join(refused))
        raise FitError("no fit in the file can answer this question (--compute needs chinchilla, approach1, "
                       "isoflop or kaplan_compute; --n with --d needs chinchilla or kaplan_nd)")
    return out, refused
