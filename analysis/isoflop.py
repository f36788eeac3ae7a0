"""Chinchilla Approach 2: IsoFLOP profiles, a parabola per budget, power laws through the minima.

Points are grouped into compute budgets (a sweep's ``compute_target``, or
exact C snapped to budgets by clustering log C).  Within a budget the loss is
fitted as a parabola in log N; its vertex is N*, the loss there is L*, and D*
comes from a straight line of log D on log N within the budget, evaluated at
N*, which needs no 6ND assumption.  Budgets whose parabola opens downwards or
whose vertex falls outside the sampled sizes are left out, with a note.  So,
by default, is a budget whose lowest *observed* loss is at its smallest or
largest sampled size even when the parabola's vertex lands inside: its
minimum is not bracketed, and the vertex is then set by the parabola's
curvature, not by data (Hoffmann et al. 2022 and Porian et al. 2024 use a
budget only when smaller and larger sizes both lose).  ``keep_unbracketed``
keeps such budgets with a warning.  Every budget's bracketing is recorded in
``extra["budgets"]``.

Then log N* and log D* are fitted as straight lines in log C.  With
``weighted=True`` each budget's minimum is weighted by the inverse of its
bootstrap variance (var of log N* for the N law, of log D* for the D law):
the scheme of Porian et al. (2024), whose "weighted" exponents 0.497
(RefinedWeb) and 0.518 (OpenWebText2) ``fit_optima`` reproduces from their
published optima and standard deviations.

The bootstrap resamples points within each budget (so no budget disappears)
and repeats the whole chain, parabolas included.
"""

from __future__ import annotations

import numpy as np

from analysis.bootstrap import DEFAULT_BOOTSTRAP, Bootstrap
from analysis.errors import FitError
from analysis.points import compute_consistency, prepare
from analysis.powerlaw import fit_lines
from analysis.results import FitResult
from analysis.verdict import diagnostic

FORMULA = "N_opt(C) = N_coef C^a, D_opt(C) = D_coef C^b (IsoFLOP minima)"
SNAP_TOLERANCE = 0.05  # in log10 C: points within ~12% of each other's compute share a budget


def snap_budgets(C, tolerance: float = SNAP_TOLERANCE) -> np.ndarray:
    """Budget label (the group's geometric-mean compute) for each point.

    Points are sorted by log10 C and a new budget starts wherever the gap to the
    previous point exceeds ``tolerance``; real runs miss their target compute by
    a little (whole steps, exact FLOP counts), budgets are usually 2x or more apart.
    """
    logc = np.log10(np.asarray(C, dtype=np.float64))
    order = np.argsort(logc, kind="stable")
    group = np.cumsum(np.concatenate([[0], np.diff(logc[order]) > tolerance]))
    labels = np.empty(len(logc))
    for g in np.unique(group):
        members = order[group == g]
        labels[members] = 10 ** logc[members].mean()
    return labels


def _vertices(logn, logd, loss, budget_index, n_budgets, counts):
    """Per resample and budget: log N*, log D*, L* (NaN where the parabola has no usable minimum)."""
    R = counts.shape[0]
    out = np.full((3, R, n_budgets), np.nan)
    for b in range(n_budgets):
        idx = np.flatnonzero(budget_index == b)
        u = logn[idx]
        centre = u.mean()
        x = u - centre
        X = np.stack([np.ones_like(x), x, x * x], axis=1)
        w = counts[:, idx]
        # weighted normal equations for every resample at once
        XtWX = np.einsum("rn,ni,nj->rij", w, X, X)
        XtWy = np.einsum("rn,ni,n->ri", w, X, loss[idx])
        ok = np.linalg.matrix_rank(XtWX, hermitian=True) == 3
        coef = np.full((R, 3), np.nan)
        coef[ok] = np.linalg.solve(XtWX[ok], XtWy[ok][..., None])[..., 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            vx = -coef[:, 1] / (2 * coef[:, 2])
            good = (coef[:, 2] > 0) & (vx >= x.min()) & (vx <= x.max())
            slope, intercept = fit_lines(x, logd[idx], w)
        out[0, :, b] = np.where(good, vx + centre, np.nan)
        out[1, :, b] = np.where(good, intercept + slope * vx, np.nan)
        out[2, :, b] = np.where(good, coef[:, 0] + coef[:, 1] * vx + coef[:, 2] * vx * vx, np.nan)
    return out


def _spread(samples: np.ndarray) -> np.ndarray:
    """Standard deviation over resamples of each column, ignoring NaN (NaN if under two values)."""
    finite = np.isfinite(samples)
    n = finite.sum(axis=0)
    x = np.where(finite, samples, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = x.sum(axis=0) / n
        var = (np.where(finite, samples - mean, 0.0) ** 2).sum(axis=0) / (n - 1)
    return np.where(n >= 2, np.sqrt(var), np.nan)


def _laws(logc, logn_star, logd_star, wn, wd):
    a, ia = fit_lines(logc, logn_star, wn)
    b, ib = fit_lines(logc, logd_star, wd)
    return {"a": a, "N_coef": np.exp(ia), "b": b, "D_coef": np.exp(ib)}


def fit_isoflop(N, D, loss_values, C, *, budgets=None, weights=None, drop_top: int = 0,
                bootstrap: Bootstrap = DEFAULT_BOOTSTRAP, weighted: bool = False, min_points_per_budget: int = 3,
                keep_unbracketed: bool = False, check_compute: bool = True) -> FitResult:
    """Approach 2 on final losses; N is the total parameter count, C the compute of each point.

    ``budgets`` gives each point's nominal budget (e.g. the sweep's compute
    targets, which differ slightly from run to run with the exact FLOP count);
    either it or C is grouped into budgets with ``snap_budgets``.
    ``check_compute`` compares C with 6ND (for given C of unknown provenance;
    a sweep's exact counts legitimately differ from 6ND for tiny models).

    Units: N in parameters, D in tokens, C in FLOPs, one of each per run. Params: a, N_coef, b,
    D_coef (Hoffmann et al. 2022 §3.2); ``extra["minima"]`` the per-budget optima. ``weighted``
    needs a bootstrap. Raises FitError for bad or too few points, or fewer than 2 budgets with a
    bracketed minimum inside the sampled sizes.
    """
    cols = {"N": N, "D": D, "C": C} if budgets is None else {"N": N, "D": D, "C": C, "budget": budgets}
    pts = prepare("isoflop fit", 2 * min_points_per_budget, loss=loss_values, drop_top=drop_top, weights=weights,
                  **cols)
    labels = snap_budgets(pts["C"] if budgets is None else pts["budget"])
    notes = pts.notes()
    diagnostics = list(pts.diagnostics)
    if check_compute:
        diagnostics += compute_consistency(pts["N"], pts["D"], pts["C"])
    keep = np.zeros(len(pts), dtype=bool)
    record, unbracketed = [], []
    for lab in np.unique(labels):
        members = labels == lab
        n_b, l_b = pts["N"][members], pts["loss"][members]
        sizes = len(np.unique(np.round(np.log(n_b), 9)))
        best_n = float(n_b[np.argmin(l_b)])
        bracketed = bool(n_b.min() < best_n < n_b.max())
        entry = {"C": float(lab), "sizes": sizes, "N_min": float(n_b.min()), "N_max": float(n_b.max()),
                 "N_lowest_loss": best_n, "bracketed": bracketed, "used": False}
        record.append(entry)
        if sizes < min_points_per_budget:
            notes.append(f"budget {lab:.3g}: fewer than {min_points_per_budget} model sizes, left out")
            entry["why_not"] = f"fewer than {min_points_per_budget} sizes"
            continue
        if not bracketed:
            end = "smallest" if best_n == n_b.min() else "largest"
            unbracketed.append(f"{lab:.3g} (lowest loss at its {end} N, {best_n:.3g})")
            if not keep_unbracketed:
                entry["why_not"] = f"lowest loss at the {end} sampled size"
                continue
        keep |= members
    if unbracketed:
        action = "kept as asked (their N* comes from the parabola's shape, not from data)" if keep_unbracketed \
            else "left out"
        diagnostics.append(diagnostic("unbracketed_budget",
                                      f"budget(s) {', '.join(unbracketed)} do not bracket their minimum: {action}; "
                                      "sample sizes on the other side of the minimum to use them"))
    budget_values = np.unique(labels[keep])
    if len(budget_values) < 2:
        raise FitError(f"isoflop fit needs at least 2 compute budgets with {min_points_per_budget} or more model "
                       f"sizes each that bracket their minimum, got {len(budget_values)}"
                       + (f" (unbracketed: {', '.join(unbracketed)}; --keep-unbracketed uses them with a warning)"
                          if unbracketed and not keep_unbracketed else ""))
    budget_index = np.searchsorted(budget_values, labels[keep])
    logn, logd, loss = np.log(pts["N"][keep]), np.log(pts["D"][keep]), pts["loss"][keep]
    w = pts.weights[keep]

    point = _vertices(logn, logd, loss, budget_index, len(budget_values), w[None, :])[:, 0, :]
    usable = np.isfinite(point[0])
    for bv, ok in zip(budget_values, usable):
        entry = next(e for e in record if e["C"] == float(bv))
        entry["vertex_inside"] = bool(ok)
        entry["used"] = bool(ok)
        if not ok:
            entry["why_not"] = "parabola has no minimum inside the sampled sizes"
            notes.append(f"budget {bv:.3g}: parabola has no minimum inside the sampled sizes, left out")
    if usable.sum() < 2:
        raise FitError("isoflop fit: fewer than 2 budgets have a parabola with a minimum inside the sampled sizes"
                       + ("" if keep_unbracketed or not unbracketed else
                          f" (left out as unbracketed: {', '.join(unbracketed)})"))
    logc = np.log(budget_values)

    boot = None
    if bootstrap.resamples:
        counts = bootstrap.counts(len(loss), groups=budget_index) * w[None, :]
        boot = _vertices(logn, logd, loss, budget_index, len(budget_values), counts)
    if weighted:
        if boot is None:
            raise FitError("the weighted isoflop fit needs bootstrap resamples to estimate each budget's variance")
        with np.errstate(invalid="ignore", divide="ignore"):
            wn = np.where(usable, 1.0 / _spread(boot[0]) ** 2, 0.0)
            wd = np.where(usable, 1.0 / _spread(boot[1]) ** 2, 0.0)
        wn, wd = np.nan_to_num(wn, posinf=0.0), np.nan_to_num(wd, posinf=0.0)
    else:
        wn = wd = usable.astype(float)
    params = {k: float(v[0]) for k, v in _laws(logc, point[0][None], point[1][None], wn[None], wd[None]).items()}
    samples = _laws(logc, boot[0], boot[1], wn[None], wd[None]) if boot is not None else {}

    minima = {"C": budget_values[usable].tolist(), "N_opt": np.exp(point[0][usable]).tolist(),
              "D_opt": np.exp(point[1][usable]).tolist(), "loss_opt": point[2][usable].tolist()}
    if boot is not None:
        minima["log_N_opt_sd"] = _spread(boot[0])[usable].tolist()
        minima["log_D_opt_sd"] = _spread(boot[1])[usable].tolist()
    resid = params["a"] * logc[usable] + np.log(params["N_coef"]) - point[0][usable]
    if usable.sum() == 2:
        diagnostics.append(diagnostic("two_budgets", "only 2 budgets have a usable minimum: the exponent is a line "
                                      "through two points, with no check that the optima follow a power law; "
                                      "add budgets"))
    result = FitResult(law="isoflop", formula=FORMULA, params=params, samples=samples, level=bootstrap.level,
                       seed=bootstrap.seed,
                       data={"N": np.exp(logn).tolist(), "D": np.exp(logd).tolist(), "loss": loss.tolist(),
                             "budget": budget_values[budget_index].tolist(), "weight": w.tolist()},
                       residuals=resid.tolist(), n_kind="total", notes=notes,
                       extra={"minima": minima, "weighted": weighted, "budgets": record}, diagnostics=diagnostics)
    result.check_bootstrap(fitted=("a", "b"))
    return result


def fit_optima(C, n_opt, d_opt, *, n_sd=None, d_sd=None, bootstrap: Bootstrap = DEFAULT_BOOTSTRAP) -> FitResult:
    """Power laws through given per-budget optima (e.g. a paper's table), optionally inverse-variance weighted.

    ``n_sd``/``d_sd`` are standard deviations of log N*/log D*; each budget then
    gets weight 1/sd^2, which is what ``numpy.polyfit(log C, log N*, 1, w=1/sd)``
    does and what reproduces Porian et al.'s "weighted" fits.  The bootstrap
    resamples budgets. C in FLOPs, n_opt in parameters, d_opt in tokens, one per budget (at
    least 3). Raises FitError for bad or too few values or non-finite weights.
    """
    cols = {"C": C, "N_opt": n_opt, "D_opt": d_opt}
    pts = prepare("optima fit", 3, loss=np.ones(len(np.atleast_1d(C))), **cols)
    logc, logn, logd = np.log(pts["C"]), np.log(pts["N_opt"]), np.log(pts["D_opt"])
    wn = np.ones(len(logc)) if n_sd is None else 1.0 / np.square(np.asarray(n_sd, dtype=np.float64))
    wd = np.ones(len(logc)) if d_sd is None else 1.0 / np.square(np.asarray(d_sd, dtype=np.float64))
    if not (np.all(np.isfinite(wn)) and np.all(np.isfinite(wd))):
        raise FitError("optima fit: standard deviations must be finite and positive")
    params = {k: float(v[0]) for k, v in _laws(logc, logn, logd, wn[None], wd[None]).items()}
    samples = {}
    if bootstrap.resamples:
        counts = bootstrap.counts(len(logc))
        samples = _laws(logc, logn, logd, counts * wn[None], counts * wd[None])
    resid = params["a"] * logc + np.log(params["N_coef"]) - logn
    result = FitResult(law="isoflop_optima", formula=FORMULA, params=params, samples=samples,
                       level=bootstrap.level, seed=bootstrap.seed,
                       data={"C": pts["C"].tolist(), "N_opt": pts["N_opt"].tolist(), "D_opt": pts["D_opt"].tolist()},
                       residuals=resid.tolist(), n_kind="total", diagnostics=list(pts.diagnostics),
                       notes=["weighted by inverse variance of log N*/log D*" if n_sd is not None else "unweighted"])
    result.check_bootstrap(fitted=("a", "b"))
    return result
