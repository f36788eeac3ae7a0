"""Predictions from fitted laws, each with a bootstrap interval.

Every prediction is computed once from the point estimate and once per stored
bootstrap sample; the interval is the percentile range of the latter.  That is
why fits keep their samples: an interval at a compute budget nobody asked for
at fit time is still exact with respect to the bootstrap.
"""

from __future__ import annotations

import numpy as np

from analysis import chinchilla, kaplan
from analysis.bootstrap import interval
from analysis.errors import FitError
from analysis.results import FitResult

OPTIMUM_LAWS = ("approach1", "isoflop", "isoflop_optima")


def _with_interval(fit: FitResult, fn) -> dict:
    point = fn({k: np.float64(v) for k, v in fit.params.items()})
    boot = fn(fit.samples) if fit.samples else {}
    return {k: {"value": float(v), "ci": interval(boot[k], fit.level) if k in boot else [np.nan, np.nan]}
            for k, v in point.items()}


def _power_law_optimum(p: dict, C) -> dict:
    with np.errstate(over="ignore", invalid="ignore"):
        n = p["N_coef"] * np.power(C, p["a"])
        d = p["D_coef"] * np.power(C, p["b"])
        return {"N_opt": n, "D_opt": d, "tokens_per_param": d / n}


def at_compute(fit: FitResult, C: float) -> dict:
    """Compute-optimal N, D, tokens per parameter (and loss, where the law gives one) at compute C."""
    if not (np.isfinite(C) and C > 0):
        raise FitError(f"compute must be a positive number, got {C}")
    if fit.law == "chinchilla":
        return _with_interval(fit, lambda p: chinchilla.compute_optimal(p, C))
    if fit.law in OPTIMUM_LAWS:
        return _with_interval(fit, lambda p: _power_law_optimum(p, C))
    if fit.law == "kaplan_compute":
        return _with_interval(fit, lambda p: {"loss": np.power(p["C_c"] / C, p["alpha_C"])})
    raise FitError(f"a {fit.law} fit does not say anything about compute-optimal allocation")


def at_size(fit: FitResult, N: float, D: float) -> dict:
    """Predicted loss at (N, D) from a two-variable law."""
    if not (np.isfinite(N) and N > 0 and np.isfinite(D) and D > 0):
        raise FitError(f"N and D must be positive numbers, got N={N}, D={D}")
    if fit.law == "chinchilla":
        return _with_interval(fit, lambda p: {"loss": chinchilla.loss(p, N, D)})
    if fit.law == "kaplan_nd":
        return _with_interval(fit, lambda p: {"loss": kaplan.nd_loss(p, N, D)})
    raise FitError(f"a {fit.law} fit does not predict loss at given (N, D)")


def from_fits_file(fits: dict, *, compute: float | None = None, n: float | None = None,
                   d: float | None = None) -> dict:
    """Everything ``scaling predict`` prints, from a parsed fits.json."""
    entries = fits.get("fits")
    if not isinstance(entries, dict) or not entries:
        raise FitError("fits file has no 'fits' object; was it written by 'scaling analyze'?")
    out: dict = {}
    for name, obj in entries.items():
        try:
            fit = FitResult.from_json(obj)
        except (KeyError, TypeError, ValueError) as exc:
            raise FitError(f"fits file entry {name!r} is malformed ({exc})") from None
        row = {}
        if compute is not None and fit.law in ("chinchilla", "kaplan_compute", *OPTIMUM_LAWS):
            row.update(at_compute(fit, compute))
        if n is not None and d is not None and fit.law in ("chinchilla", "kaplan_nd"):
            row["loss_at_N_D"] = at_size(fit, n, d)["loss"]
        if row:
            out[name] = {"law": fit.law, "n_kind": fit.n_kind, "level": fit.level, **row}
    if not out:
        raise FitError("no fit in the file can answer this question (need chinchilla, approach1, isoflop, "
                       "kaplan_compute or kaplan_nd fits)")
    return out
