"""Chinchilla Approach 3: L(N, D) = E + A / N^alpha + B / D^beta, and what follows from it.

Hoffmann et al. (2022) fit this to final losses with the Huber loss on
log-loss residuals and L-BFGS from a grid; Besiroglu et al. (2024) showed the
printed fit had stopped early (the loss was averaged, not summed) and that its
intervals were far too narrow.  See ``analysis.parametric`` for how the fit
avoids both.  N is the total parameter count, as in Hoffmann et al.

The compute-optimal allocation uses their closed form when C = 6 N D is all
that is known (a CSV): N_opt = G (C/6)^a, D_opt = (C/6)^b / G with
a = beta/(alpha+beta), b = alpha/(alpha+beta),
G = (alpha A / (beta B))^(1/(alpha+beta)).  When the runs record their exact
FLOPs per token (run directories do), C = F(N) D with F interpolated from the
runs, and the allocation minimises L(N, C / F(N)) over N numerically: for the
small models of a CPU sweep F(N) is several times 6N, and the closed form
would then disagree with Approaches 1 and 2, which use the exact count.
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np

from analysis.bootstrap import DEFAULT_BOOTSTRAP, Bootstrap
from analysis import identify
from analysis.errors import FitError, as_positive, require_distinct
from analysis.parametric import fit_huber_grid, huber
from analysis.points import prepare
from analysis.results import FitResult
from analysis.verdict import diagnostic

FORMULA = "L(N, D) = E + A / N^alpha + B / D^beta"

# Hoffmann et al.'s grid, as Besiroglu et al. re-used it: 6 x 6 x 5 x 5 x 5 = 4,500 starts
# over (a = log A, b = log B, e = log E, alpha, beta).
GRID = np.array(list(itertools.product(
    np.arange(0.0, 30.0, 5.0), np.arange(0.0, 30.0, 5.0), np.arange(-1.0, 1.5, 0.5),
    np.arange(0.0, 2.5, 0.5), np.arange(0.0, 2.5, 0.5))))


def objective(x, w, logN, logD, logL, scale):
    """Huber loss of log L_hat - log L with log L_hat = LSE(a - alpha log N, b - beta log D, e).

    Hoffmann et al. 2022 §3.3 eq. 3. ``x`` = [log A, log B, log E, alpha, beta] (shape [5]);
    ``w``, ``logN``, ``logD``, ``logL`` are per point ([n]: weights, natural logs of parameters,
    tokens and loss); ``scale[0]`` is 1 for the summed objective or 1/sum(w) for the mean.
    Returns a scalar. The log-sum-exp is written out without the max-shift: in float64 it cannot
    overflow for any start on the grid, an overflowing trial step gives +inf,
    which the line search rejects, and it saves a third of the exponentials.
    """
    a, b, e, alpha, beta = x[0], x[1], x[2], x[3], x[4]
    pred = jnp.log(jnp.exp(a - alpha * logN) + jnp.exp(b - beta * logD) + jnp.exp(e))
    return scale[0] * jnp.sum(w * huber(pred - logL))


def derived(p: dict) -> dict:
    """a, b and G from (E, A, B, alpha, beta); works on scalars and on bootstrap arrays alike.

    a = beta/(alpha+beta), b = alpha/(alpha+beta), G = (alpha A / (beta B))^(1/(alpha+beta)),
    the exponents and coefficient of N_opt = G (C/6)^a, D_opt = G^-1 (C/6)^b (Hoffmann et al.
    2022 §3.3 eq. 4). Returns float64 arrays shaped like the inputs (NaN where undefined).
    """
    alpha, beta, A, B = (np.asarray(p[k], dtype=np.float64) for k in ("alpha", "beta", "A", "B"))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        s = alpha + beta
        return {"a": beta / s, "b": alpha / s, "G": (alpha * A / (beta * B)) ** (1.0 / s)}


def loss(p: dict, N, D):
    """L(N, D) = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022 §3.3 eq. 2), in the fitted losses' unit.

    N in parameters (total), D in tokens; broadcasts bootstrap arrays in ``p`` against N and D
    (e.g. samples [R, 1] against N [1, k] gives [R, k]).
    """
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):  # failed resamples are NaN
        return p["E"] + p["A"] / np.power(N, p["alpha"]) + p["B"] / np.power(D, p["beta"])


def flop_model(N, flops_per_token) -> dict:
    """Exact FLOPs per token as a function of N, from runs: ``{"N": [...], "ratio_to_6N": [...]}``.

    ``N`` (total parameters) and ``flops_per_token`` (training FLOPs per token) are per run, [n]
    each; the result lists the distinct N, ascending, and the dimensionless ratio; the ratio
    F(N) / 6N is averaged per distinct N.  ``flops_per_token_at`` interpolates
    it in log N and holds the nearest end value beyond the sampled sizes
    (the ratio falls towards 1 as models grow, so this overstates F there, a little).
    """
    N = np.asarray(N, dtype=np.float64)
    ratio = np.asarray(flops_per_token, dtype=np.float64) / (6.0 * N)
    sizes = np.unique(N)
    return {"N": sizes.tolist(), "ratio_to_6N": [float(ratio[N == n].mean()) for n in sizes]}


def flops_per_token_at(model: dict, N):
    """F(N), training FLOPs per token at N parameters, from a ``flop_model``; broadcasts over N."""
    logn = np.log(np.asarray(model["N"], dtype=np.float64))
    r = np.log(np.asarray(model["ratio_to_6N"], dtype=np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        return 6.0 * N * np.exp(np.interp(np.log(N), logn, r))


def _golden_log_n(f, lo, hi, iterations: int = 60):
    """Minimiser over log N in [lo, hi] of a unimodal ``f(log N)``, elementwise (golden-section search)."""
    g = (np.sqrt(5.0) - 1) / 2
    a, b = lo, hi
    for _ in range(iterations):
        c, d = b - g * (b - a), a + g * (b - a)
        left = f(c) < f(d)
        a, b = np.where(left, a, c), np.where(left, d, b)
    return (a + b) / 2


def compute_optimal(p: dict, C, flops: dict | None = None) -> dict:
    """N_opt (parameters), D_opt (tokens), tokens per parameter and the loss there, at compute C (FLOPs).

    Returns ``{"N_opt", "D_opt", "tokens_per_param", "loss"}``, each shaped like C broadcast
    against the arrays in ``p``. Without ``flops`` (a ``flop_model``), C = 6 N D and the closed form of
    Hoffmann et al. (2022, eq. 4) is used; with it, C = F(N) D and
    L(N, C / F(N)) is minimised over log N within 1e-5 of the closed-form
    answer's neighbourhood (a factor e^8 either way).  Broadcasts bootstrap
    arrays in ``p`` against C.
    """
    d = derived(p)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        n = d["G"] * np.power(C / 6.0, d["a"])
        if flops is None:
            dd = np.power(C / 6.0, d["b"]) / d["G"]
        else:
            guess = np.log(n)
            logn = _golden_log_n(lambda u: loss(p, np.exp(u), C / flops_per_token_at(flops, np.exp(u))),
                                 guess - 8.0, guess + 8.0)
            n = np.exp(logn)
            dd = C / flops_per_token_at(flops, n)
        return {"N_opt": n, "D_opt": dd, "tokens_per_param": dd / n, "loss": loss(p, n, dd)}


def allocation_rule(fit_extra: dict) -> str:
    """How a fit's compute-optimal allocation counts FLOPs, in words."""
    if fit_extra.get("flop_model"):
        return "C = exact FLOPs per token (from the runs) x D"
    return "C = 6ND (no per-token FLOP count given)"


def fit_chinchilla(N, D, loss_values, *, weights=None, drop_top: int = 0, bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
                   reduction: str = "sum", grid: np.ndarray | None = None, flops_per_token=None,
                   **optimizer) -> FitResult:
    """Approach 3 on final losses; N must count all parameters (Hoffmann et al.'s convention).

    ``N`` (parameters), ``D`` (tokens) and ``loss_values`` (final loss, e.g. nats/token) are one
    value per run, at least 6 runs with 2 or more distinct N and D. The fit minimises the summed
    Huber loss (delta 1e-3) of log-loss residuals with L-BFGS from ``GRID`` (Hoffmann et al. 2022
    §3.3, with the sum rather than the mean as Besiroglu et al. 2024 showed it must be);
    ``reduction="mean"`` reproduces the early-stopping flaw. Params: E, A, B, alpha, beta and
    the derived a, b, G. ``weights`` weigh points; ``drop_top`` drops that many highest losses.
    ``flops_per_token`` (optional, one per point) is each run's exact training
    FLOPs per token; with it the compute-optimal allocation uses C = F(N) D
    instead of 6ND.  The result carries the verdict of ``analysis.identify``
    and of the bootstrap-health checks; the objective's profiles along E and
    the exponents are in ``extra["profiles"]``.

    Raises FitError for too few points or distinct N/D, non-positive or non-finite values,
    lengths that differ, a fit that diverged from every start, or alpha or beta <= 0.
    """
    pts = prepare("chinchilla fit", 6, loss=loss_values, N=N, D=D, drop_top=drop_top, weights=weights)
    require_distinct("N", pts["N"], 2, "chinchilla fit")
    require_distinct("D", pts["D"], 2, "chinchilla fit")
    logs = (np.log(pts["N"]), np.log(pts["D"]), np.log(pts["loss"]))
    fit = fit_huber_grid(objective, GRID if grid is None else np.asarray(grid, dtype=np.float64), logs,
                         pts.weights, bootstrap, reduction=reduction, **optimizer)

    def named(x):
        x = np.asarray(x, dtype=np.float64)
        with np.errstate(over="ignore"):  # a wild bootstrap refit may overflow to inf; intervals skip it
            p = {"E": np.exp(x[..., 2]), "A": np.exp(x[..., 0]), "B": np.exp(x[..., 1]),
                 "alpha": x[..., 3], "beta": x[..., 4]}
        return {**p, **derived(p)}

    params = {k: float(v) for k, v in named(fit.x).items()}
    if not (params["alpha"] > 0 and params["beta"] > 0):
        raise FitError(f"chinchilla fit: loss does not fall with both N and D (alpha={params['alpha']:.3g}, "
                       f"beta={params['beta']:.3g}); the data cannot identify this law")
    samples = named(fit.samples) if len(fit.samples) else {}
    resid = np.log(loss(params, pts["N"], pts["D"])) - np.log(pts["loss"])
    notes = pts.notes()
    diagnostics = [*pts.diagnostics, *identify.design(pts["N"], pts["D"])]
    if not fit.convergence["converged"]:
        diagnostics.append(diagnostic("not_converged",
                                               f"the best start did not converge ({fit.convergence['reason']})"))
    found, profiles = identify.optimum(fit, objective, loss=pts["loss"], exponents={"alpha": 3, "beta": 4}, log_e=2)
    extra = {"profiles": profiles}
    if flops_per_token is not None:
        fpt = as_positive("chinchilla fit: flops_per_token", flops_per_token)
        if len(fpt) != len(np.atleast_1d(N)):
            raise FitError("chinchilla fit: flops_per_token needs one value per point")
        extra["flop_model"] = flop_model(np.asarray(N, dtype=np.float64), fpt)
    extra["allocation"] = allocation_rule(extra)
    result = FitResult(law="chinchilla", formula=FORMULA, params=params, samples=samples, level=bootstrap.level,
                       seed=bootstrap.seed, data={"N": pts["N"].tolist(), "D": pts["D"].tolist(),
                                                  "loss": pts["loss"].tolist(), "weight": pts.weights.tolist()},
                       residuals=resid.tolist(), n_kind="total", notes=notes, convergence=fit.convergence,
                       extra=extra, diagnostics=diagnostics)
    result.flag(found)
    result.check_bootstrap(fitted=("E", "alpha", "beta", "a", "b"))
    return result
