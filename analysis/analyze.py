"""``scaling analyze``: every fit a sweep supports, written as fits.json, figures and a report.

A sweep rarely supports every law (a single budget has no IsoFLOP power law,
a handful of sizes no envelope winners), so each fit is attempted on its own
and a fit that cannot be made is recorded with its reason instead of aborting
the rest.  Which N each law uses follows the papers: Kaplan's laws use
non-embedding N, Chinchilla's approaches total N.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from analysis import plots, report
from analysis.bootstrap import DEFAULT_BOOTSTRAP, Bootstrap
from analysis.chinchilla import fit_chinchilla
from analysis.errors import FitError
from analysis.extrapolate import holdout_check, holdout_mask
from analysis.frontier import envelope, fit_approach1, fit_frontier, make_curves
from analysis.headline import headline
from analysis.isoflop import fit_isoflop, snap_budgets
from analysis.kaplan import converged_minimum, fit_kaplan_d, fit_kaplan_n, fit_kaplan_nd, flag_confounded
from analysis.load import Sweep, load_runs
from analysis.noise import measurement_noise
from analysis.results import to_jsonable

SCHEMA = "scaling-analysis/1"


def _token_envelope(sweep: Sweep):
    """Lowest loss any run reached after each number of tokens: the data-limited proxy for L(D)."""
    curves = [(t, t, l) for _, t, l in (r.curve() for r in sweep.runs)]
    tok = make_curves(curves, sweep.column("n_params_non_embedding"))
    best, _ = envelope(tok, np.ones((1, len(tok.n))))
    ok = np.isfinite(best[0])
    return tok.grid[ok], best[0, ok]


def _progress(message: str) -> None:
    """One line per fit stage on stderr, so a long bootstrap is visibly working (stdout stays for results)."""
    print(f"analyze: {message}", file=sys.stderr, flush=True)


def run_fits(sweep: Sweep, *, bootstrap: Bootstrap, drop_top: int = 0, holdout: dict | None = None,
             keep_unbracketed: bool = False, progress=_progress) -> dict:
    """All fits for a sweep: ``{"fits": {name: FitResult}, "skipped": {name: reason}, "extrapolation": ...}``.

    ``holdout`` is one of ``{"compute_above": C}``, ``{"largest_sizes": K}``,
    ``{"n_above": N}``, or ``{"runs_dir": path}`` (runs trained apart, each predicted by the law
    fitted to all of ``sweep``); without it the largest budget is held out when the sweep has
    budgets (else the points of the largest compute).
    """
    N, Nne, D, C = (sweep.column(k) for k in ("n_params", "n_params_non_embedding", "tokens", "compute"))
    loss = sweep.column("final_loss")
    targets = [r.compute_target for r in sweep.runs]
    budgets = snap_budgets(np.array(targets, dtype=np.float64)) if all(t is not None for t in targets) else None
    flop_curves = [r.curve() for r in sweep.runs]
    common = {"bootstrap": bootstrap}

    def per_n():
        idx = converged_minimum(Nne, loss)
        fit = fit_kaplan_n(Nne[idx], loss[idx], drop_top=drop_top, **common)
        flag_confounded(fit, Nne[idx], D[idx])
        return fit

    attempts = {
        "kaplan_n": per_n,
        "kaplan_d": lambda: fit_kaplan_d(*_token_envelope(sweep), **common),
        "kaplan_compute": lambda: fit_frontier(make_curves(flop_curves, N, groups=budgets), **common),
        "kaplan_nd": lambda: fit_kaplan_nd(Nne, D, loss, drop_top=drop_top, **common),
        "approach1": lambda: fit_approach1(make_curves(flop_curves, N, groups=budgets), **common),
        "isoflop": lambda: fit_isoflop(N, D, loss, C, budgets=budgets, drop_top=drop_top,
                                       keep_unbracketed=keep_unbracketed, check_compute=False, **common),
        "chinchilla": lambda: fit_chinchilla(N, D, loss, drop_top=drop_top, flops_per_token=C / D, **common),
    }
    fits, skipped = {}, {}
    for i, (name, attempt) in enumerate(attempts.items(), start=1):
        progress(f"[{i}/{len(attempts) + 1}] fitting {name} ({bootstrap.resamples} bootstrap resamples)")
        try:
            fits[name] = attempt()
            progress(f"      {name}: {fits[name].status}")
        except FitError as exc:
            skipped[name] = str(exc)
            progress(f"      {name}: not fitted ({exc})")
    if holdout is None:
        if budgets is not None and np.any(budgets < budgets.max()):
            holdout = {"compute_above": float(C[budgets < budgets.max()].max())}  # exactly the largest budget
        else:
            holdout = {"compute_above": float(C.max() / 1.1)}
    progress(f"[{len(attempts) + 1}/{len(attempts) + 1}] hold-out check")
    extrapolation = None
    try:
        if "runs_dir" in holdout:
            # Runs trained apart (a larger budget) are predicted by the laws fitted to every run above.
            extra = load_runs(holdout["runs_dir"])
            N, D, loss, C = (np.concatenate([a, extra.column(k)]) for a, k in
                             ((N, "n_params"), (D, "tokens"), (loss, "final_loss"), (C, "compute")))
            held = np.arange(len(N)) >= len(sweep.runs)
            rule = f"the {len(extra.runs)} run(s) in {holdout['runs_dir']}"
        else:
            held, rule = holdout_mask(N, C, **holdout)
        extrapolation = holdout_check(N, D, loss, C, held, rule=rule, flops_per_token=C / D, **common)
    except FitError as exc:
        skipped["extrapolation"] = str(exc)
    return {"fits": fits, "skipped": skipped, "extrapolation": extrapolation}


def analyze(runs_dir, out_dir=None, *, bootstrap: Bootstrap = DEFAULT_BOOTSTRAP, drop_top: int = 0,
            holdout: dict | None = None, keep_unbracketed: bool = False, seed_runs=None) -> tuple[Path, dict]:
    """Load, fit, draw and report; returns the output directory (default RUNS_DIR/analysis) and fits.json's content.

    ``seed_runs``: a directory of runs repeating one run of ``runs_dir`` with other seeds, whose spread the
    report gives as the seed-to-seed noise (``analysis.noise``). Raises FitError when nothing can be fitted.
    """
    sweep = load_runs(runs_dir)
    seeds = load_runs(seed_runs) if seed_runs is not None else None
    out = Path(out_dir) if out_dir is not None else Path(runs_dir) / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    _progress(f"{len(sweep.runs)} finished runs from {runs_dir}")
    result = run_fits(sweep, bootstrap=bootstrap, drop_top=drop_top, holdout=holdout,
                      keep_unbracketed=keep_unbracketed)
    if not result["fits"]:
        reasons = "; ".join(f"{k}: {v}" for k, v in result["skipped"].items())
        raise FitError(f"no law could be fitted to the {len(sweep.runs)} runs in {runs_dir} ({reasons})")
    doc = {
        "schema": SCHEMA,
        "source": {"runs_dir": str(runs_dir), "runs": len(sweep.runs), "loss_unit": sweep.loss_unit},
        "bootstrap": {"resamples": bootstrap.resamples, "seed": bootstrap.seed, "level": bootstrap.level},
        "notes": sweep.notes,
        "runs": sweep.table(),
        "fits": {k: v.to_json() for k, v in result["fits"].items()},
        "skipped": result["skipped"],
        "extrapolation": result["extrapolation"],
        "noise": measurement_noise(sweep, seeds),
    }
    doc["headline"] = headline(result["fits"])
    (out / "fits.json").write_text(json.dumps(to_jsonable(doc), indent=1, allow_nan=False))
    _progress("drawing figures and the report")
    figures, left_out = plots.draw_all(sweep, result["fits"], out, holdout=result["extrapolation"])
    report.write_report(out / "report.html", doc, figures, left_out)
    return out, doc
