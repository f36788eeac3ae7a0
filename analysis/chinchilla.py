"""Chinchilla Approach 3: L(N, D) = E + A / N^alpha + B / D^beta, and what follows from it.

Hoffmann et al. (2022) fit this to final losses with the Huber loss on
log-loss residuals and L-BFGS from a grid; Besiroglu et al. (2024) showed the
printed fit had stopped early (the loss was averaged, not summed) and that its
intervals were far too narrow.  See ``analysis.parametric`` for how the fit
avoids both.  N is the total parameter count, as in Hoffmann et al.

The compute-optimal allocation uses their closed form, which assumes
C = 6 N D: N_opt = G (C/6)^a, D_opt = (C/6)^b / G with a = beta/(alpha+beta),
b = alpha/(alpha+beta), G = (alpha A / (beta B))^(1/(alpha+beta)).
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np

from analysis.bootstrap import DEFAULT_BOOTSTRAP, Bootstrap
from analysis.errors import FitError, require_distinct
from analysis.parametric import fit_huber_grid, huber
from analysis.points import prepare
from analysis.results import FitResult

FORMULA = "L(N, D) = E + A / N^alpha + B / D^beta"
FITTED = ("E", "A", "B", "alpha", "beta")

# Hoffmann et al.'s grid, as Besiroglu et al. re-used it: 6 x 6 x 5 x 5 x 5 = 4,500 starts
# over (a = log A, b = log B, e = log E, alpha, beta).
GRID = np.array(list(itertools.product(
    np.arange(0.0, 30.0, 5.0), np.arange(0.0, 30.0, 5.0), np.arange(-1.0, 1.5, 0.5),
    np.arange(0.0, 2.5, 0.5), np.arange(0.0, 2.5, 0.5))))


def objective(x, w, logN, logD, logL, scale):
    """Huber loss of log L_hat - log L with log L_hat = LSE(a - alpha log N, b - beta log D, e).

    The log-sum-exp is written out without the max-shift: in float64 it cannot
    overflow for any start on the grid, an overflowing trial step gives +inf,
    which the line search rejects, and it saves a third of the exponentials.
    """
    a, b, e, alpha, beta = x[0], x[1], x[2], x[3], x[4]
    pred = jnp.log(jnp.exp(a - alpha * logN) + jnp.exp(b - beta * logD) + jnp.exp(e))
    return scale[0] * jnp.sum(w * huber(pred - logL))


def derived(p: dict) -> dict:
    """a, b and G from (E, A, B, alpha, beta); works on scalars and on bootstrap arrays alike."""
    alpha, beta, A, B = (np.asarray(p[k], dtype=np.float64) for k in ("alpha", "beta", "A", "B"))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        s = alpha + beta
        return {"a": beta / s, "b": alpha / s, "G": (alpha * A / (beta * B)) ** (1.0 / s)}


def loss(p: dict, N, D):
    """Predicted loss at (N, D); broadcasts bootstrap arrays in ``p`` against N and D."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):  # failed resamples are NaN
        return p["E"] + p["A"] / np.power(N, p["alpha"]) + p["B"] / np.power(D, p["beta"])


def compute_optimal(p: dict, C) -> dict:
    """N_opt, D_opt, tokens per parameter and the loss there, at compute C (in 6ND FLOPs)."""
    d = derived(p)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        n = d["G"] * np.power(C / 6.0, d["a"])
        dd = np.power(C / 6.0, d["b"]) / d["G"]
        return {"N_opt": n, "D_opt": dd, "tokens_per_param": dd / n, "loss": loss(p, n, dd)}


def fit_chinchilla(N, D, loss_values, *, weights=None, drop_top: int = 0, bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
                   reduction: str = "sum", grid: np.ndarray | None = None, **optimizer) -> FitResult:
    """Approach 3 on final losses; N must count all parameters (Hoffmann et al.'s convention)."""
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
    if not fit.convergence["converged"]:
        notes.append(f"best start did not converge: {fit.convergence['reason']}")
    return FitResult(law="chinchilla", formula=FORMULA, params=params, samples=samples, level=bootstrap.level,
                     seed=bootstrap.seed, data={"N": pts["N"].tolist(), "D": pts["D"].tolist(),
                                                "loss": pts["loss"].tolist(), "weight": pts.weights.tolist()},
                     residuals=resid.tolist(), n_kind="total", notes=notes, convergence=fit.convergence)
