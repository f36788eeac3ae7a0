"""The lower envelope of training curves over FLOPs, and the two laws read off it.

Kaplan's L(C_min) is the envelope's loss as a power law in compute.
Chinchilla Approach 1 asks, at each compute C, which run reached the lowest
loss, and fits that run's N and its tokens so far as power laws in C.

Curves are interpolated in log-log space onto a shared grid of compute values,
giving a (runs x grid) loss matrix; a bootstrap resample over runs is then just
a mask on its rows, so a thousand resampled envelopes are one masked minimum.
When the runs come from a designed grid (an IsoFLOP sweep's budgets), the
resample is drawn within each budget, as the IsoFLOP fit's is: the design
fixed how many runs each budget has, and an unstratified draw invents designs
in which a budget lost most of its sizes, whose envelopes the experiment could
not produce (Davison & Hinkley 1997, section 3.7, on stratified bootstraps).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.bootstrap import DEFAULT_BOOTSTRAP, Bootstrap
from analysis.errors import FitError
from analysis.kaplan import fit_kaplan_compute
from analysis.powerlaw import fit_lines
from analysis.results import FitResult
from analysis.verdict import diagnostic

GRID_POINTS = 200


@dataclass(frozen=True)
class Curves:
    """Training curves resampled on a common compute grid (NaN where a run has no data).

    ``grid`` [G] in FLOPs; ``loss`` and ``tokens`` [runs, G]; ``n`` [runs] parameters; ``groups``
    [runs] each run's stratum for the bootstrap (its compute budget), or None to resample runs freely.
    """

    grid: np.ndarray
    loss: np.ndarray
    tokens: np.ndarray
    n: np.ndarray
    groups: np.ndarray | None = None

    def resample(self, bootstrap: Bootstrap) -> np.ndarray:
        """[resamples, runs] draw counts: within each group when the runs have groups."""
        return bootstrap.counts(len(self.n), groups=self.groups)

    def resampling(self) -> str:
        """How the bootstrap draws runs, in words for a fit's notes."""
        if self.groups is None:
            return "bootstrap resamples runs"
        return f"bootstrap resamples runs within each of {len(np.unique(self.groups))} compute budgets"


def _interp_loglog(x_new, x, y):
    out = np.full(len(x_new), np.nan)
    inside = (x_new >= x[0]) & (x_new <= x[-1])
    out[inside] = np.exp(np.interp(np.log(x_new[inside]), np.log(x), np.log(y)))
    return out


def make_curves(curves: list[tuple[np.ndarray, np.ndarray, np.ndarray]], n, points: int = GRID_POINTS,
                groups=None) -> Curves:
    """Put (flops, tokens, loss) curves of runs with parameter counts ``n`` on one compute grid.

    The grid runs from the smallest final compute of any run to the largest:
    below that point the small end of the envelope is decided by whichever run
    logged first, not by which is best. ``points`` log-spaced grid values; runs with fewer than two
    logged points are left out. ``groups`` (one label per run, e.g. its compute budget) makes the
    bootstrap resample within groups. Raises FitError when fewer than two runs remain.
    """
    usable = [(i, c) for i, c in enumerate(curves) if len(c[0]) >= 2]
    if len(usable) < 2:
        raise FitError("an envelope of training curves needs at least 2 runs with 2 or more logged points")
    finals = np.array([c[0][-1] for _, c in usable])
    grid = np.geomspace(finals.min(), finals.max(), points)
    loss = np.full((len(usable), points), np.nan)
    tokens = np.full((len(usable), points), np.nan)
    for row, (_, (f, t, l)) in enumerate(usable):
        order = np.argsort(f, kind="stable")
        f, t, l = f[order], t[order], l[order]
        loss[row] = _interp_loglog(grid, f, l)
        tokens[row] = _interp_loglog(grid, f, t)
    kept = [i for i, _ in usable]
    return Curves(grid=grid, loss=loss, tokens=tokens, n=np.asarray(n, dtype=np.float64)[kept],
                  groups=None if groups is None else np.asarray(groups)[kept])


def envelope(curves: Curves, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per resample (row of ``counts`` over runs): the envelope loss and the winning run, NaN/-1 if none.

    ``counts`` is [R, runs] (a run is present where its count is > 0); returns loss [R, G] and
    winner index [R, G].
    """
    present = counts[:, :, None] > 0
    masked = np.where(present & np.isfinite(curves.loss)[None], curves.loss[None], np.inf)
    winner = np.argmin(masked, axis=1)
    best = np.take_along_axis(masked, winner[:, None, :], axis=1)[:, 0, :]
    return np.where(np.isfinite(best), best, np.nan), np.where(np.isfinite(best), winner, -1)


def fit_frontier(curves: Curves, *, bootstrap: Bootstrap = DEFAULT_BOOTSTRAP) -> FitResult:
    """Kaplan's L(C_min) = (C_c/C_min)^alpha_C (Kaplan et al. 2020 eq. 1.3): a power law through the envelope.

    C in FLOPs; the bootstrap resamples runs (within their groups, if ``curves`` has them) and
    rebuilds the envelope each time.
    """
    ones = np.ones((1, len(curves.n)))
    best, _ = envelope(curves, ones)
    ok = np.isfinite(best[0])
    result = fit_kaplan_compute(curves.grid[ok], best[0, ok], bootstrap=Bootstrap(0, bootstrap.seed, bootstrap.level))
    if bootstrap.resamples:
        env, _ = envelope(curves, curves.resample(bootstrap))
        slope, intercept = fit_lines(np.log(curves.grid), np.log(env), np.ones_like(env))
        with np.errstate(invalid="ignore", divide="ignore"):
            result.samples = {"alpha_C": -slope, "C_c": np.exp(intercept / -slope)}
    result.notes.append(f"envelope of {len(curves.n)} training curves on {len(curves.grid)} compute values; "
                        + curves.resampling())
    result.check_bootstrap(fitted=("alpha_C",))
    return result


def _approach1_points(curves: Curves, counts: np.ndarray):
    """Envelope winners' log N and log D per grid point, NaN where the winner is an edge.

    A run that wins while being the smallest (or largest) model whose curve
    reaches that compute only bounds the optimum from one side, so those grid
    points are left out.
    """
    _, winner = envelope(curves, counts)
    has = winner >= 0
    w = np.where(has, winner, 0)
    logn = np.log(curves.n)[w]
    logd = np.log(np.take_along_axis(np.broadcast_to(curves.tokens, (len(counts),) + curves.tokens.shape),
                                     w[:, None, :], axis=1)[:, 0, :])
    covering = (counts[:, :, None] > 0) & np.isfinite(curves.loss)[None]
    sizes = curves.n[None, :, None]
    lo = np.min(np.where(covering, sizes, np.inf), axis=1)
    hi = np.max(np.where(covering, sizes, -np.inf), axis=1)
    n_w = curves.n[w]
    interior = has & (n_w > lo) & (n_w < hi)
    return np.where(interior, logn, np.nan), np.where(interior, logd, np.nan), interior


def fit_approach1(curves: Curves, *, bootstrap: Bootstrap = DEFAULT_BOOTSTRAP) -> FitResult:
    """Chinchilla Approach 1 (Hoffmann et al. 2022 §3.1): N_opt(C) = N_coef C^a and D_opt(C) = D_coef C^b.

    At each grid compute C (FLOPs) the envelope's winning run gives N (parameters) and its tokens
    so far D; winners that are the smallest or largest run reaching that C are left out, being
    bounds, not optima. Raises FitError when fewer than 2 distinct sizes win away from the edges.
    """
    logc = np.log(curves.grid)
    logn, logd, interior = _approach1_points(curves, np.ones((1, len(curves.n))))
    winners = np.unique(logn[0][interior[0]])
    if len(winners) < 2:
        raise FitError("approach 1 needs at least 2 distinct model sizes that win the envelope away from the "
                       "smallest and largest model; the sweep has too few sizes or budgets")

    def named(logn, logd):
        a, ia = fit_lines(logc, logn, np.ones_like(logn))
        b, ib = fit_lines(logc, logd, np.ones_like(logd))
        return {"a": a, "N_coef": np.exp(ia), "b": b, "D_coef": np.exp(ib)}

    params = {k: float(v[0]) for k, v in named(logn, logd).items()}
    samples = named(*_approach1_points(curves, curves.resample(bootstrap))[:2]) if bootstrap.resamples else {}
    ok = interior[0]
    resid = params["a"] * logc[ok] + np.log(params["N_coef"]) - logn[0][ok]
    result = FitResult(law="approach1",
                       formula="N_opt(C) = N_coef C^a, D_opt(C) = D_coef C^b (training-curve envelope)",
                       params=params, samples=samples, level=bootstrap.level, seed=bootstrap.seed,
                       data={"C": curves.grid[ok].tolist(), "N_opt": np.exp(logn[0][ok]).tolist(),
                             "D_opt": np.exp(logd[0][ok]).tolist()},
                       residuals=resid.tolist(), n_kind="total",
                       notes=[(f"{int(ok.sum())} of {len(logc)} compute values have an interior winner "
                               f"({len(winners)} distinct model sizes); " + curves.resampling())])
    if len(winners) < 3:
        result.flag([diagnostic("few_winners", f"only {len(winners)} model sizes win the envelope away from the "
                                "smallest and largest model: the exponent is a step between them, not a trend; "
                                "more sizes per budget would help")])
    result.check_bootstrap(fitted=("a", "b"))
    return result
