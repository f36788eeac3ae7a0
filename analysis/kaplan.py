"""Kaplan et al. (2020): L(N), L(D), L(C_min) and the joint L(N, D).

Kaplan count N without embeddings (vocabulary and position), so callers pass
non-embedding N; results record that in ``n_kind``.  The three one-variable
laws are pure power laws, L = (X_c / X)^alpha_X, i.e. straight lines in
log-log space.  The joint law
L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D is not, and is fitted
with the same summed-Huber, grid-started L-BFGS as Chinchilla Approach 3.
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np

from analysis import identify
from analysis.bootstrap import DEFAULT_BOOTSTRAP, Bootstrap
from analysis.errors import FitError, require_distinct
from analysis.parametric import fit_huber_grid, huber
from analysis.points import prepare
from analysis.powerlaw import fit_lines
from analysis.results import FitResult
from analysis.verdict import UNIDENTIFIED, diagnostic

_SINGLE = {
    # law: (variable, exponent name, scale name, formula, n_kind)
    "kaplan_n": ("N", "alpha_N", "N_c", "L(N) = (N_c / N)^alpha_N", "non_embedding"),
    "kaplan_d": ("D", "alpha_D", "D_c", "L(D) = (D_c / D)^alpha_D", "n/a"),
    "kaplan_compute": ("C", "alpha_C", "C_c", "L(C_min) = (C_c / C_min)^alpha_C", "n/a"),
}
CONFOUNDED_RATIO = 4.0  # L(N) points whose D/N varies more than this are on a grid, not at convergence
ND_FORMULA = "L(N, D) = [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D"

# Starts over (log N_c, log D_c, alpha_N, alpha_D); Kaplan's own values (log N_c = 32,
# log D_c = 31.6, 0.076, 0.095) sit inside, and so do the much smaller scales of tiny models.
ND_GRID = np.array(list(itertools.product(np.arange(5.0, 40.0, 5.0), np.arange(5.0, 40.0, 5.0),
                                          (0.05, 0.1, 0.2, 0.4), (0.05, 0.1, 0.2, 0.4))))


def fit_kaplan_single(law: str, x, loss_values, *, weights=None, drop_top: int = 0,
                      bootstrap: Bootstrap = DEFAULT_BOOTSTRAP, n_kind: str | None = None) -> FitResult:
    """Fit one of Kaplan's one-variable power laws (``law`` in kaplan_n, kaplan_d, kaplan_compute).

    L(X) = (X_c / X)^alpha_X (Kaplan et al. 2020 §1.2, eqs. 1.1-1.3), fitted as a weighted
    least-squares line of log loss on log X; ``x`` is N (parameters), D (tokens) or C (FLOPs), one
    per point (at least 3, 2 distinct), ``loss_values`` the losses (Kaplan: nats/token). Params:
    the exponent and the scale X_c in X's units. Fewer than 3 distinct X is flagged. Raises
    FitError for bad or too few points, or a loss that does not fall with X.
    """
    var, exp_name, scale_name, formula, default_kind = _SINGLE[law]
    pts = prepare(f"{law} fit", 3, loss=loss_values, drop_top=drop_top, weights=weights, **{var: x})
    require_distinct(var, pts[var], 2, f"{law} fit")
    u, v = np.log(pts[var]), np.log(pts["loss"])
    slope, intercept = fit_lines(u, v, pts.weights[None, :])
    if not slope[0] < 0:
        raise FitError(f"{law} fit: loss does not fall with {var} (log-log slope {slope[0]:.3g})")

    def named(slope, intercept):
        with np.errstate(invalid="ignore", divide="ignore"):
            alpha = -slope
            return {exp_name: alpha, scale_name: np.exp(intercept / alpha)}

    params = {k: float(v[0]) for k, v in named(slope, intercept).items()}
    samples = {}
    if bootstrap.resamples:
        samples = named(*fit_lines(u, v, bootstrap.counts(len(u)) * pts.weights[None, :]))
    resid = (intercept[0] + slope[0] * u) - v
    result = FitResult(law=law, formula=formula, params=params, samples=samples, level=bootstrap.level,
                       seed=bootstrap.seed, data={var: pts[var].tolist(), "loss": pts["loss"].tolist(),
                                                  "weight": pts.weights.tolist()},
                       residuals=resid.tolist(), n_kind=n_kind or default_kind, notes=pts.notes(),
                       diagnostics=list(pts.diagnostics))
    k = len(np.unique(np.round(u, 9)))
    if k < 3:
        result.flag([diagnostic(f"few_distinct_{var}", f"only {k} distinct {var}: a line through two points "
                                "fits exactly and tests nothing; need at least 3")])
    result.check_bootstrap(fitted=(exp_name,))
    return result


def flag_confounded(result: FitResult, N, D) -> None:
    """Mark an L(N) fit unidentified when its points' tokens per parameter vary widely.

    Kaplan et al. fit L(N) to models trained to convergence (or at one large
    D/N).  On an IsoFLOP grid each size's best run sits at a different
    tokens-per-parameter ratio, so the slope mixes the N and D effects: the
    fit is meaningless by design, not merely noisy.
    """
    ratio = np.asarray(D, dtype=np.float64) / np.asarray(N, dtype=np.float64)
    if ratio.max() / ratio.min() > CONFOUNDED_RATIO:
        result.flag([diagnostic("confounded_design",
                                f"L(N) needs each size trained to convergence or at one tokens-per-parameter ratio; "
                                f"here the points used range from {ratio.min():.3g} to {ratio.max():.3g} tokens per "
                                "parameter (an IsoFLOP-style grid, where N and D are not varied independently), so "
                                "the exponent mixes the effects of N and D and means nothing", UNIDENTIFIED)])


def fit_kaplan_n(N, loss_values, **kw) -> FitResult:
    """L(N) = (N_c/N)^alpha_N on converged losses; N should be the non-embedding count (parameters)."""
    return fit_kaplan_single("kaplan_n", N, loss_values, **kw)


def fit_kaplan_d(D, loss_values, **kw) -> FitResult:
    """L(D) = (D_c/D)^alpha_D (D in tokens) on losses of models large enough that data is the bottleneck."""
    return fit_kaplan_single("kaplan_d", D, loss_values, **kw)


def fit_kaplan_compute(C, loss_values, **kw) -> FitResult:
    """L(C_min) = (C_c/C_min)^alpha_C (C in FLOPs) on the lower envelope of training curves (``analysis.frontier``)."""
    return fit_kaplan_single("kaplan_compute", C, loss_values, **kw)


def nd_objective(x, w, logN, logD, logL, scale):
    """Huber loss of the joint law in log space: alpha_D * LSE(r (log N_c - log N), log D_c - log D).

    r = alpha_N / alpha_D; ``x`` = [log N_c, log D_c, alpha_N, alpha_D] (shape [4]);
    the other arguments as in ``chinchilla.objective``. Returns a scalar.
    """
    lnc, ldc, alpha_n, alpha_d = x[0], x[1], x[2], x[3]
    pred = alpha_d * jnp.logaddexp((alpha_n / alpha_d) * (lnc - logN), ldc - logD)
    return scale[0] * jnp.sum(w * huber(pred - logL))


def nd_loss(p: dict, N, D):
    """L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D (Kaplan et al. 2020 eq. 1.5) at N (non-embedding
    parameters) and D (tokens); broadcasts bootstrap arrays in ``p``."""
    return ((p["N_c"] / N) ** (p["alpha_N"] / p["alpha_D"]) + p["D_c"] / D) ** p["alpha_D"]


def fit_kaplan_nd(N, D, loss_values, *, weights=None, drop_top: int = 0, bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
                  **optimizer) -> FitResult:
    """Joint L(N, D) (Kaplan et al. 2020 eq. 1.5) with non-embedding N (parameters) and D (tokens).

    One loss per run, at least 5 runs with 2 or more distinct N and D; fitted like
    ``chinchilla.fit_chinchilla`` (summed Huber on log-loss residuals, L-BFGS from ``ND_GRID``).
    Raises FitError for bad or too few points, a divergent fit, or an exponent <= 0.
    """
    pts = prepare("kaplan_nd fit", 5, loss=loss_values, N=N, D=D, drop_top=drop_top, weights=weights)
    require_distinct("N", pts["N"], 2, "kaplan_nd fit")
    require_distinct("D", pts["D"], 2, "kaplan_nd fit")
    logs = (np.log(pts["N"]), np.log(pts["D"]), np.log(pts["loss"]))
    fit = fit_huber_grid(nd_objective, ND_GRID, logs, pts.weights, bootstrap, **optimizer)

    def named(x):
        x = np.asarray(x, dtype=np.float64)
        with np.errstate(over="ignore"):
            return {"alpha_N": x[..., 2], "alpha_D": x[..., 3], "N_c": np.exp(x[..., 0]), "D_c": np.exp(x[..., 1])}

    params = {k: float(v) for k, v in named(fit.x).items()}
    if not (params["alpha_N"] > 0 and params["alpha_D"] > 0):
        raise FitError("kaplan_nd fit: loss does not fall with both N and D; the data cannot identify this law")
    resid = np.log(nd_loss(params, pts["N"], pts["D"])) - np.log(pts["loss"])
    diagnostics = [*pts.diagnostics, *identify.design(pts["N"], pts["D"])]
    if not fit.convergence["converged"]:
        diagnostics.append(diagnostic("not_converged",
                                      f"the best start did not converge ({fit.convergence['reason']})"))
    found, profiles = identify.optimum(fit, nd_objective, loss=pts["loss"], exponents={"alpha_N": 2, "alpha_D": 3})
    result = FitResult(law="kaplan_nd", formula=ND_FORMULA, params=params,
                       samples=named(fit.samples) if len(fit.samples) else {}, level=bootstrap.level,
                       seed=bootstrap.seed, data={"N": pts["N"].tolist(), "D": pts["D"].tolist(),
                                                  "loss": pts["loss"].tolist(), "weight": pts.weights.tolist()},
                       residuals=resid.tolist(), n_kind="non_embedding", notes=pts.notes(),
                       convergence=fit.convergence, extra={"profiles": profiles}, diagnostics=diagnostics)
    result.flag(found)
    result.check_bootstrap(fitted=("alpha_N", "alpha_D"))
    return result


def converged_minimum(group, loss_values) -> np.ndarray:
    """Index of the lowest loss within each group (e.g. per model size for L(N)).

    Kaplan fit L(N) to models trained to convergence and L(D) to the largest
    models at each data size; from a sweep the best available proxy is the
    lowest loss each N (or each D) reached.
    """
    group = np.round(np.log(np.asarray(group, dtype=np.float64)), 6)
    loss_values = np.asarray(loss_values, dtype=np.float64)
    return np.array([np.flatnonzero(group == g)[np.argmin(loss_values[group == g])] for g in np.unique(group)])
