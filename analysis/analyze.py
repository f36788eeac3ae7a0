"""``scaling analyze``: every fit a sweep supports, written as fits.json, figures and a report.

A sweep rarely supports every law (a single budget has no IsoFLOP power law,
a handful of sizes no envelope winners), so each fit is attempted on its own
and a fit that cannot be made is recorded with its reason instead of aborting
the rest.  Which N each law uses follows the papers: Kaplan's laws use
non-embedding N, Chinchilla's approaches total N.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from analysis import plots, report
from analysis.bootstrap import DEFAULT_BOOTSTRAP, Bootstrap
from analysis.chinchilla import fit_chinchilla
from analysis.errors import FitError
from analysis.extrapolate import extrapolation_check
from analysis.frontier import envelope, fit_approach1, fit_frontier, make_curves
from analysis.isoflop import fit_isoflop, snap_budgets
from analysis.kaplan import converged_minimum, fit_kaplan_d, fit_kaplan_n, fit_kaplan_nd
from analysis.load import Sweep, load_runs
from analysis.results import to_jsonable

SCHEMA = "scaling-analysis/1"


def _token_envelope(sweep: Sweep):
    """Lowest loss any run reached after each number of tokens: the data-limited proxy for L(D)."""
    curves = [(t, t, l) for _, t, l in (r.curve() for r in sweep.runs)]
    tok = make_curves(curves, sweep.column("n_params_non_embedding"))
    best, _ = envelope(tok, np.ones((1, len(tok.n))))
    ok = np.isfinite(best[0])
    return tok.grid[ok], best[0, ok]


def run_fits(sweep: Sweep, *, bootstrap: Bootstrap, drop_top: int = 0, holdout_above: float | None = None) -> dict:
    """All fits for a sweep: ``{"fits": {name: FitResult}, "skipped": {name: reason}, "extrapolation": ...}``."""
    N, Nne, D, C = (sweep.column(k) for k in ("n_params", "n_params_non_embedding", "tokens", "compute"))
    loss = sweep.column("final_loss")
    targets = [r.compute_target for r in sweep.runs]
    budgets = snap_budgets(np.array(targets, dtype=np.float64)) if all(t is not None for t in targets) else None
    flop_curves = [r.curve() for r in sweep.runs]
    common = {"bootstrap": bootstrap}

    def per_n():
        idx = converged_minimum(Nne, loss)
        return fit_kaplan_n(Nne[idx], loss[idx], drop_top=drop_top, **common)

    attempts = {
        "kaplan_n": per_n,
        "kaplan_d": lambda: fit_kaplan_d(*_token_envelope(sweep), **common),
        "kaplan_compute": lambda: fit_frontier(make_curves(flop_curves, N), **common),
        "kaplan_nd": lambda: fit_kaplan_nd(Nne, D, loss, drop_top=drop_top, **common),
        "approach1": lambda: fit_approach1(make_curves(flop_curves, N), **common),
        "isoflop": lambda: fit_isoflop(N, D, loss, C, budgets=budgets, drop_top=drop_top, **common),
        "chinchilla": lambda: fit_chinchilla(N, D, loss, drop_top=drop_top, **common),
    }
    fits, skipped = {}, {}
    for name, attempt in attempts.items():
        try:
            fits[name] = attempt()
        except FitError as exc:
            skipped[name] = str(exc)
    if holdout_above is None and budgets is not None and np.any(budgets < budgets.max()):
        holdout_above = float(C[budgets < budgets.max()].max())  # hold out exactly the largest budget
    extrapolation = None
    try:
        extrapolation = extrapolation_check(N, D, loss, C, threshold=holdout_above, **common)
    except FitError as exc:
        skipped["extrapolation"] = str(exc)
    return {"fits": fits, "skipped": skipped, "extrapolation": extrapolation}


def analyze(runs_dir, out_dir=None, *, bootstrap: Bootstrap = DEFAULT_BOOTSTRAP, drop_top: int = 0,
            holdout_above: float | None = None) -> Path:
    """Load, fit, draw and report; returns the output directory (default RUNS_DIR/analysis)."""
    sweep = load_runs(runs_dir)
    out = Path(out_dir) if out_dir is not None else Path(runs_dir) / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    result = run_fits(sweep, bootstrap=bootstrap, drop_top=drop_top, holdout_above=holdout_above)
    if not result["fits"]:
        reasons = "; ".join(f"{k}: {v}" for k, v in result["skipped"].items())
        raise FitError(f"no law could be fitted to the {len(sweep.runs)} runs in {runs_dir} ({reasons})")
    doc = {
        "schema": SCHEMA,
        "source": {"runs_dir": str(runs_dir), "runs": len(sweep.runs)},
        "bootstrap": {"resamples": bootstrap.resamples, "seed": bootstrap.seed, "level": bootstrap.level},
        "notes": sweep.notes,
        "runs": sweep.table(),
        "fits": {k: v.to_json() for k, v in result["fits"].items()},
        "skipped": result["skipped"],
        "extrapolation": result["extrapolation"],
    }
    (out / "fits.json").write_text(json.dumps(to_jsonable(doc), indent=1, allow_nan=False))
    figures = plots.draw_all(sweep, result["fits"], out)
    report.write_report(out / "report.html", doc, figures)
    return out
